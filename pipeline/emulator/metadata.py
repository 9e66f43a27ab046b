"""The GCE metadata server's credential paths, so Application Default Credentials can find a
"VM" here: point ``GCE_METADATA_HOST`` (and ``GCE_METADATA_IP``, which google-auth pings to
detect GCE) at the emulator's ``host:port``.

Served under ``/computeMetadata/v1/``, only to requests carrying ``Metadata-Flavor: Google``
(others get the server's 403), each answer with that header too:
``instance/service-accounts/{default|email}/`` (``?recursive=true``: email, scopes, aliases),
``.../token`` (an access token of the default scopes, or the ``scopes`` asked for),
``.../email``, ``.../scopes``, ``project/project-id``, ``project/numeric-project-id`` and
``universe/universe-domain``; and ``GET /`` for the detection ping.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pipeline.emulator.oauth import CLOUD_PLATFORM, TokenAnswer

FLAVOR = (b"metadata-flavor", b"Google")
PREFIX = "/computeMetadata/v1/"
_TEXT = b"application/text"
_JSON = b"application/json"
_DEFAULT_SCOPES = (CLOUD_PLATFORM, "https://www.googleapis.com/auth/userinfo.email")


@dataclass(frozen=True, slots=True)
class MetadataAnswer:
    status: int
    body: bytes
    content_type: bytes = _TEXT
    token_scopes: frozenset[str] | None = None  # set: the caller issues a token and answers it


def _text(body: str) -> MetadataAnswer:
    return MetadataAnswer(200, body.encode())


def _json(document: object) -> MetadataAnswer:
    return MetadataAnswer(200, json.dumps(document).encode(), _JSON)


_NOT_FOUND = MetadataAnswer(404, b"<!DOCTYPE html>\n<title>Error 404 (Not Found)!!1</title>\n")
_FORBIDDEN = MetadataAnswer(
    403, b"Missing required header: Metadata-Flavor\n", b"text/plain; charset=utf-8"
)


def is_metadata(path: str, headers: dict[bytes, bytes]) -> bool:
    """Whether a request is for the metadata server (the root only with the flavor header)."""
    return path.startswith(PREFIX) or (path == "/" and b"metadata-flavor" in headers)


def answer(
    path: str, query: dict[str, list[str]], headers: dict[bytes, bytes], project: str
) -> MetadataAnswer:
    """The metadata server's answer, or an instruction to issue a token (``token_scopes``)."""
    if headers.get(b"metadata-flavor", b"").lower() != b"google":
        return _FORBIDDEN
    if path == "/":
        return _text("computeMetadata/\n")
    rest = path.removeprefix(PREFIX)
    email = f"emulator@{project}.iam.gserviceaccount.com"
    if rest == "project/project-id":
        return _text(project)
    if rest == "project/numeric-project-id":
        return _text("123456789012")
    if rest == "universe/universe-domain":
        return _text("googleapis.com")
    account, _, item = rest.removeprefix("instance/service-accounts/").partition("/")
    if not rest.startswith("instance/service-accounts/") or account not in ("default", email):
        return _NOT_FOUND
    if item == "":
        if query.get("recursive", [""])[0] == "true":
            return _json({"aliases": ["default"], "email": email, "scopes": list(_DEFAULT_SCOPES)})
        return _text("aliases\nemail\nidentity\nscopes\ntoken\n")
    if item == "email":
        return _text(email)
    if item == "scopes":
        return _text("".join(scope + "\n" for scope in _DEFAULT_SCOPES))
    if item == "token":
        asked = ",".join(query.get("scopes", [])).replace(",", " ").split()
        return MetadataAnswer(200, b"", _JSON, frozenset(asked or _DEFAULT_SCOPES))
    return _NOT_FOUND


def token_body(token: TokenAnswer) -> MetadataAnswer:
    """The metadata server's token answer (no ``scope`` field, unlike the token endpoint)."""
    body = {k: v for k, v in token.body.items() if k != "scope"}
    return _json(body)
