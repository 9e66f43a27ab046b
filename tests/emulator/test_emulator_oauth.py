"""OAuth: the token endpoint's two grants and its refusals, tokens that expire on the emulator's
clock and what Vertex answers to them, and the GCE metadata server's credential paths."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import httpx
import pytest

from tests.emulator.emulator_helpers import FLASH_31, FakeClock, body, config, emulator
from tests.emulator.routes_helpers import GLOBAL, stats

CLOUD = "https://www.googleapis.com/auth/cloud-platform"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
WALL = 1_800_000_000.0
METADATA = {"metadata-flavor": "Google"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(**claims: Any) -> str:
    """An RS256-shaped JWT (the emulator checks a signature's shape, not its key)."""
    header = {"alg": claims.pop("alg", "RS256"), "typ": "JWT", "kid": "k1"}
    payload = {
        "iss": "sa@proj.iam.gserviceaccount.com",
        "aud": "https://oauth2.googleapis.com/token",
        "scope": CLOUD,
        "iat": int(WALL),
        "exp": int(WALL) + 3600,
        **claims,
    }
    segments = [json.dumps(header).encode(), json.dumps(payload).encode(), os.urandom(256)]
    return ".".join(_b64(segment) for segment in segments)


def _refresh(**extra: str) -> dict[str, str]:
    form = {"grant_type": "refresh_token", "client_id": "c", "client_secret": "s"}
    return {**form, "refresh_token": "1//refresh", **extra}


async def _vertex(client: httpx.AsyncClient, token: str) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"}
    return await client.post(GLOBAL.format(model=FLASH_31), json=body(), headers=headers)


async def test_refresh_grant_issues_a_token_that_vertex_accepts() -> None:
    async with emulator(config(token_ttl_s=120, bearer="issued")) as (client, app):
        answer = await client.post("/token", data=_refresh())
        token = answer.json()["access_token"]
        generated = await _vertex(client, token)
    assert answer.status_code == 200
    assert answer.json()["expires_in"] == 120
    assert answer.json()["token_type"] == "Bearer"
    assert generated.status_code == 200
    assert stats(app)["tokens_issued"] == 1
    assert stats(app)["requests"] == 1  # the token request is not an API request


async def test_jwt_bearer_grant_issues_a_token() -> None:
    clock = 0.0
    async with emulator(config(wall_clock=lambda: WALL + clock)) as (client, _):
        answer = await client.post("/token", data={"grant_type": JWT_BEARER, "assertion": jwt()})
    assert answer.status_code == 200
    assert answer.json()["scope"] == CLOUD


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        (_refresh(client_id=""), 401, "invalid_client"),
        (_refresh(refresh_token="1//revoked-yesterday"), 400, "invalid_grant"),
        ({"grant_type": "password"}, 400, "unsupported_grant_type"),
        ({}, 400, "invalid_request"),
        ({"grant_type": JWT_BEARER, "assertion": "not.a.jwt"}, 400, "invalid_grant"),
        ({"grant_type": JWT_BEARER, "assertion": jwt(alg="HS256")}, 400, "invalid_grant"),
        ({"grant_type": JWT_BEARER, "assertion": jwt(exp=int(WALL) + 7200)}, 400, "invalid_grant"),
        ({"grant_type": JWT_BEARER, "assertion": jwt(iat=int(WALL) - 4000)}, 400, "invalid_grant"),
        (
            {"grant_type": JWT_BEARER, "assertion": jwt(aud="https://example.com/")},
            400,
            "invalid_grant",
        ),
        ({"grant_type": JWT_BEARER, "assertion": jwt(scope="")}, 400, "invalid_scope"),
    ],
    ids=[
        "no-client",
        "revoked",
        "unknown-grant",
        "no-grant",
        "not-a-jwt",
        "not-rs256",
        "lives-two-hours",
        "issued-long-ago",
        "wrong-audience",
        "no-scope",
    ],
)
async def test_token_endpoint_refuses_as_google_does(
    form: dict[str, str], status: int, error: str
) -> None:
    async with emulator(config(wall_clock=lambda: WALL)) as (client, app):
        answer = await client.post("/token", data=form)
    assert answer.status_code == status
    assert answer.json()["error"] == error
    assert answer.json()["error_description"]
    assert stats(app)["token_errors"] == 1
    assert stats(app)["tokens_issued"] == 0


async def test_token_endpoint_takes_json_too() -> None:
    async with emulator() as (client, _):
        answer = await client.post("/token", json=_refresh())
    assert answer.status_code == 200


async def test_an_expired_token_gets_vertex_401_even_with_bearer_any() -> None:
    clock = FakeClock()
    async with emulator(config(clock=clock, token_ttl_s=60)) as (client, app):
        token = (await client.post("/token", data=_refresh())).json()["access_token"]
        assert (await _vertex(client, token)).status_code == 200
        clock.advance(60)
        expired = await _vertex(client, token)
        fresh = (await client.post("/token", data=_refresh())).json()["access_token"]
        again = await _vertex(client, fresh)
    assert expired.status_code == 401
    error = expired.json()["error"]
    assert error["status"] == "UNAUTHENTICATED"
    assert error["details"][0]["reason"] == "ACCESS_TOKEN_EXPIRED"
    assert again.status_code == 200
    assert stats(app)["billed"] == 2


async def test_with_bearer_issued_an_unknown_token_is_401() -> None:
    async with emulator(config(bearer="issued")) as (client, _):
        unknown = await _vertex(client, "ya29.made-up")
    assert unknown.status_code == 401
    assert unknown.json()["error"]["status"] == "UNAUTHENTICATED"


async def test_a_token_without_cloud_platform_scope_is_403() -> None:
    narrow = "https://www.googleapis.com/auth/userinfo.email"
    async with emulator() as (client, _):
        token = (await client.post("/token", data=_refresh(scope=narrow))).json()["access_token"]
        denied = await _vertex(client, token)
    assert denied.status_code == 403
    assert denied.json()["error"]["details"][0]["reason"] == "ACCESS_TOKEN_SCOPE_INSUFFICIENT"


async def test_expire_tokens_control_expires_every_issued_token() -> None:
    async with emulator() as (client, _):
        token = (await client.post("/token", data=_refresh())).json()["access_token"]
        await client.post("/_emulator/expire-tokens")
        expired = await _vertex(client, token)
    assert expired.status_code == 401


async def test_tokens_survive_a_reset_of_the_counters() -> None:
    async with emulator(config(bearer="issued")) as (client, app):
        token = (await client.post("/token", data=_refresh())).json()["access_token"]
        await client.post("/_emulator/reset")
        generated = await _vertex(client, token)
    assert generated.status_code == 200
    assert stats(app)["tokens_issued"] == 0


async def test_metadata_server_needs_the_flavor_header() -> None:
    path = "/computeMetadata/v1/instance/service-accounts/default/token"
    async with emulator() as (client, app):
        refused = await client.get(path)
        answered = await client.get(path, headers=METADATA)
    assert refused.status_code == 403
    assert answered.status_code == 200
    assert answered.headers["metadata-flavor"] == "Google"
    assert set(answered.json()) == {"access_token", "expires_in", "token_type"}
    assert stats(app)["tokens_issued"] == 1


async def test_metadata_server_describes_the_default_account_and_project() -> None:
    root = "/computeMetadata/v1/"
    async with emulator(config(vertex_projects=frozenset({"acme-prod"}))) as (client, _):
        info = await client.get(
            root + "instance/service-accounts/default/",
            params={"recursive": "true"},
            headers=METADATA,
        )
        project = await client.get(root + "project/project-id", headers=METADATA)
        ping = await client.get("/", headers=METADATA)
        missing = await client.get(root + "instance/zone", headers=METADATA)
    assert info.json()["email"] == "emulator@acme-prod.iam.gserviceaccount.com"
    assert CLOUD in info.json()["scopes"]
    assert project.text == "acme-prod"
    assert ping.status_code == 200
    assert ping.headers["metadata-flavor"] == "Google"
    assert missing.status_code == 404


async def test_metadata_token_works_on_vertex() -> None:
    path = "/computeMetadata/v1/instance/service-accounts/default/token"
    async with emulator(config(bearer="issued")) as (client, _):
        token = (await client.get(path, headers=METADATA)).json()["access_token"]
        generated = await _vertex(client, token)
    assert generated.status_code == 200
