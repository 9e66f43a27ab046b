"""The Vertex route without a run: every URL form, how settings choose express mode or OAuth
(and which settings the route refuses), the tier headers, and its answers classified (error
arrays, Model Armor, trafficType)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.commands.validate import validate
from pipeline.core.config import GEMINI_BASE_URL, ApiKey, AuthStyle
from pipeline.core.errors import UsageError
from pipeline.core.prices import PriceTable
from pipeline.core.routes import Route
from pipeline.core.types import Job, OutcomeKind, RawResponse, Tier
from pipeline.plan.sources import SourceCache
from pipeline.providers.auth import ApiKeyAuth, TokenAuth
from pipeline.providers.vertex.classify import classify
from pipeline.providers.vertex.provider import VertexProvider
from pipeline.providers.vertex.urls import VertexRoute
from tests.helpers import write_csv
from tests.test_classify import blocked, candidate, generation, google_error, image, response
from tests.vertex_helpers import vertex_config

M = "gemini-3-pro-image"
TAIL = f"publishers/google/models/{M}:generateContent"


@pytest.mark.parametrize(
    ("route", "version", "url"),
    [
        (
            VertexRoute("us-central1", "p1"),
            "v1",
            f"https://us-central1-aiplatform.googleapis.com/v1/projects/p1/locations/us-central1/{TAIL}",
        ),
        (
            VertexRoute("europe-west4", "p1"),
            "v1beta1",
            f"https://europe-west4-aiplatform.googleapis.com/v1beta1/projects/p1/locations/europe-west4/{TAIL}",
        ),
        (
            VertexRoute("global", "p1"),
            "v1",
            f"https://aiplatform.googleapis.com/v1/projects/p1/locations/global/{TAIL}",
        ),
        (
            VertexRoute("us", "p1"),
            "v1",
            f"https://aiplatform.us.rep.googleapis.com/v1/projects/p1/locations/us/{TAIL}",
        ),
        (
            VertexRoute("eu", "p1"),
            "v1",
            f"https://aiplatform.eu.rep.googleapis.com/v1/projects/p1/locations/eu/{TAIL}",
        ),
        (VertexRoute(express=True), "v1", f"https://aiplatform.googleapis.com/v1/{TAIL}"),
        (
            VertexRoute(express=True),
            "v1beta1",
            f"https://aiplatform.googleapis.com/v1beta1/{TAIL}",
        ),
        (  # --base-url replaces the host, whatever the location; the path stays Vertex's
            VertexRoute("us-central1", "p1", base_url="http://gw.local:8080/"),
            "v1",
            f"http://gw.local:8080/v1/projects/p1/locations/us-central1/{TAIL}",
        ),
        (
            VertexRoute(express=True, base_url="http://gw.local"),
            "v1",
            f"http://gw.local/v1/{TAIL}",
        ),
    ],
)
def test_every_route_url_form(route: VertexRoute, version: str, url: str) -> None:
    assert route.generate_url(M, version) == url
    assert route.model_url(M, version) == url.removesuffix(":generateContent")


def test_the_api_version_follows_the_model_unless_chosen(tmp_path: Path) -> None:
    provider = VertexProvider.from_config(vertex_config(tmp_path / "m.csv", tmp_path))
    assert "/v1/projects/" in provider.route.generate_url(M, provider.version(M))
    preview = "gemini-3.1-flash-image-preview"
    assert "/v1beta1/projects/" in provider.route.generate_url(preview, provider.version(preview))
    chosen = VertexProvider.from_config(
        vertex_config(tmp_path / "m.csv", tmp_path, api_version="v1beta1")
    )
    assert chosen.version(M) == "v1beta1"


def _provider(tmp_path: Path, **overrides: Any) -> VertexProvider:
    overrides.setdefault("base_url", GEMINI_BASE_URL)  # not overridden: Vertex's own host
    return VertexProvider.from_config(vertex_config(tmp_path / "m.csv", tmp_path, **overrides))


def test_a_project_uses_oauth_and_the_location_s_host(tmp_path: Path) -> None:
    provider = _provider(tmp_path, location="us-central1")
    assert isinstance(provider.auth, TokenAuth)
    assert provider.route.generate_url(M, "v1").startswith(
        "https://us-central1-aiplatform.googleapis.com/v1/projects/acme/"
    )


@pytest.mark.parametrize(
    ("project", "source", "express"),
    [
        (None, "GOOGLE_API_KEY", True),  # a key and no project: express mode
        (None, "--api-key", True),
        ("acme", "--api-key", True),  # a key given on purpose wins, as in the SDK
        ("acme", "--emulate", True),
        ("acme", "GOOGLE_API_KEY", False),  # a key from the environment yields to a project
    ],
)
def test_express_mode_is_chosen_as_the_sdk_chooses_it(
    tmp_path: Path, project: str | None, source: str, express: bool
) -> None:
    provider = _provider(tmp_path, project=project, api_key=ApiKey("k", source))
    assert provider.route.express is express
    assert isinstance(provider.auth, ApiKeyAuth if express else TokenAuth)
    if express:
        assert (
            provider.route.generate_url(M, "v1") == f"https://aiplatform.googleapis.com/v1/{TAIL}"
        )


def test_a_project_route_before_its_check_names_no_project(tmp_path: Path) -> None:
    # The credentials' project is settled by the route check; a URL before it says so.
    provider = _provider(tmp_path, project=None)
    assert "/projects/-/locations/global/" in provider.route.generate_url(M, "v1")


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"location": "us-central1", "tier": Tier.FLEX},
         "Flex on Vertex AI is served at --location global"),
        ({"location": "us-central1", "project": None, "api_key": ApiKey("k", "GOOGLE_API_KEY")},
         "express mode (an API key, from GOOGLE_API_KEY) is served at global"),
        ({"auth": AuthStyle.QUERY}, "--auth query applies to API keys"),
        ({"auth": AuthStyle.BEARER, "project": None, "api_key": ApiKey("k", "--api-key")},
         "not as a Bearer token"),
        ({"location": "us-central1.evil.com/"}, "is not a Vertex AI location"),
        ({"project": "a/../b"}, "is not a Google Cloud project id"),
    ],
)  # fmt: skip
def test_settings_the_route_cannot_take_are_refused_with_the_reason(
    tmp_path: Path, overrides: dict[str, Any], words: str
) -> None:
    config = vertex_config(tmp_path / "m.csv", tmp_path, **overrides)
    with pytest.raises(UsageError, match=words.replace("(", r"\(").replace(")", r"\)")):
        VertexProvider.from_config(config)


@pytest.mark.parametrize(("tier", "shared"), [(Tier.STANDARD, None), (Tier.FLEX, "flex"),
                                              (Tier.PRIORITY, "priority")])  # fmt: skip
def test_a_row_s_tier_travels_in_vertex_s_headers_and_leaves_the_fingerprint_alone(
    tmp_path: Path, tier: Tier, shared: str | None
) -> None:
    provider = VertexProvider.from_config(vertex_config(tmp_path / "m.csv", tmp_path))
    job = Job("r", 1, "a lamp", (), M, "1K", "1:1", tier=tier)
    request = provider.prepare(job, SourceCache())
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert headers.get("x-vertex-ai-llm-shared-request-type") == shared
    assert headers.get("x-vertex-ai-llm-request-type") == ("shared" if shared else None)
    assert request.tier is tier
    standard = provider.prepare(replace(job, tier=Tier.STANDARD), SourceCache())
    assert request.fingerprint == standard.fingerprint


# --- answers --------------------------------------------------------------------------------

EXPIRED = google_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
DENIED = google_error(403, "PERMISSION_DENIED", "Permission 'aiplatform.endpoints.predict' denied")
GONE = google_error(404, "NOT_FOUND", "Publisher Model `projects/p/...` was not found")
BUSY = google_error(429, "RESOURCE_EXHAUSTED", "Resource exhausted. Please try again later.")
DOWN = google_error(503, "UNAVAILABLE", "The service is currently unavailable.")


@pytest.mark.parametrize(
    ("status", "error", "kind", "reason"),
    [
        (401, EXPIRED, OutcomeKind.RUN_ERROR, "UNAUTHENTICATED"),
        (403, DENIED, OutcomeKind.RUN_ERROR, "PERMISSION_DENIED"),
        (404, GONE, OutcomeKind.MODEL_ERROR, "MODEL_NOT_FOUND"),
        (429, BUSY, OutcomeKind.RATE_LIMIT, "RATE_LIMITED"),
        (503, DOWN, OutcomeKind.TRANSIENT, "SERVER_ERROR_503"),
    ],
)
def test_an_error_array_reads_as_the_error_object_it_wraps(
    status: int, error: dict[str, Any], kind: OutcomeKind, reason: str
) -> None:
    as_object = classify(response(status, error))
    as_array = classify(response(status, [error]))
    assert (as_array.kind, as_array.reason) == (kind, reason)
    assert as_array == as_object


def _armored_answer() -> dict[str, Any]:
    refused = candidate(finish="MODEL_ARMOR", finishMessage="Blocked by Model Armor Floor Setting")
    return generation(refused, output=0)


@pytest.mark.parametrize(
    ("body", "reason", "billed"),
    [
        (blocked("MODEL_ARMOR"), "PROMPT_BLOCKED:MODEL_ARMOR", True),
        (_armored_answer(), "MODEL_ARMOR", True),
        (blocked("PROHIBITED_CONTENT"), "PROMPT_BLOCKED:PROHIBITED_CONTENT", False),
        (generation(candidate(finish="IMAGE_SAFETY"), output=0), "IMAGE_SAFETY", False),
    ],
)
def test_model_armor_blocks_are_refusals_that_are_billed(
    body: dict[str, Any], reason: str, billed: bool
) -> None:
    outcome = classify(response(200, body))
    assert (outcome.kind, outcome.reason) == (OutcomeKind.REFUSAL, reason)
    assert outcome.billed_refusal is billed


def test_traffic_type_says_the_tier_that_served_it() -> None:
    body = generation(candidate(image()))
    body["usageMetadata"]["trafficType"] = "ON_DEMAND_FLEX"
    outcome = classify(response(200, body), tier=Tier.FLEX)
    assert (outcome.kind, outcome.tier) == (OutcomeKind.SUCCESS, Tier.FLEX)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(status=st.sampled_from([200, 400, 401, 403, 404, 429, 500, 503]), data=JSON)
def test_arbitrary_json_never_crashes_the_classifier(status: int, data: object) -> None:
    for body in (data, [data], {"error": data}, [{"error": data}]):
        outcome = classify(RawResponse(status, {}, json.dumps(body).encode()))
        assert isinstance(outcome.kind, OutcomeKind)


def test_a_gemini_run_never_imports_google_auth(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from pipeline.core.config import RunConfig\n"
        "from pipeline.providers.registry import provider_for\n"
        "provider_for(RunConfig(manifest=Path('m.csv'), out_dir=Path('o')))\n"
        "print(sorted(m for m in sys.modules if m.startswith('google')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "PYTHONPATH": "."},
    )
    assert done.stdout.strip() == "[]"


# --- what validate says -----------------------------------------------------------------------


@pytest.mark.parametrize(("route", "valid"), [(Route.GEMINI, 1), (Route.VERTEX, 2)])
def test_cloud_storage_links_are_vertex_s_and_validate_says_so(
    tmp_path: Path, route: Route, valid: int
) -> None:
    manifest = write_csv(
        tmp_path / "m.csv",
        [
            {"id": "a", "prompt": "p", "images": "gs://bucket/ref.jpg"},
            {"id": "b", "prompt": "p", "images": "https://cdn.example/ref.jpg"},
        ],
    )
    config = vertex_config(manifest, tmp_path / "o", provider=route)
    if route is Route.GEMINI:
        config = replace(config, project=None)
    found = validate(config, PriceTable())
    assert found.valid == valid
    if route is Route.GEMINI:
        (invalid,) = found.invalid
        assert invalid.row_id == "a"
        assert "Cloud Storage (gs://) links are read by Vertex AI (--provider vertex)" in (
            invalid.reason
        )


def test_validate_refuses_a_location_vertex_cannot_have(tmp_path: Path) -> None:
    manifest = write_csv(tmp_path / "m.csv", [{"id": "a", "prompt": "p"}])
    config = vertex_config(manifest, tmp_path / "o", location="us central")
    with pytest.raises(UsageError, match="is not a Vertex AI location"):
        validate(config, PriceTable())
