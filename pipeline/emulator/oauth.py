"""OAuth 2.0 as Google's token endpoint (``POST /token``) speaks it, and the access tokens it
issues, which the Vertex routes then check.

Two grants, the two kinds of Application Default Credentials a file can hold:

- ``refresh_token`` (user credentials, ``gcloud auth application-default login``): needs
  ``client_id``, ``client_secret`` and ``refresh_token``; a refresh token containing ``revoked``
  is refused as revoked (``invalid_grant``), so a test can stage a revocation.
- ``urn:ietf:params:oauth:grant-type:jwt-bearer`` (a service-account key file): the assertion must
  be an RS256 JWT whose claims are sane (``iss`` an account, ``aud`` a token URL, ``scope``
  given, ``iat``/``exp`` at most an hour apart and around now). The signature is checked for
  shape (an RSA-sized signature), not against the key: the emulator has no account registry.

Tokens last ``--token-ttl`` seconds of the emulator's clock; ``expires_in`` says so. The registry
outlives ``/_emulator/reset``: a client's token stays valid across a reset of the counters.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import parse_qs

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# Google refuses assertions living longer than an hour, or dated away from its clock.
_MAX_ASSERTION_S = 3600
_CLOCK_SKEW_S = 300
_PRUNE_AT = 4096
_BAD_TIMES = (
    "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
    "Check your iat and exp values in the JWT claim."
)


class TokenState(StrEnum):
    VALID = "valid"
    EXPIRED = "expired"
    UNKNOWN = "unknown"
    NO_SCOPE = "no_scope"  # issued without the cloud-platform scope


@dataclass(frozen=True, slots=True)
class _Issued:
    expires_at: float
    scopes: frozenset[str]


@dataclass(frozen=True, slots=True)
class TokenAnswer:
    """An answer of the token endpoint: the JSON body and its status."""

    status: int
    body: dict[str, object]

    @property
    def issued(self) -> bool:
        return self.status == 200


def _refusal(status: int, error: str, description: str) -> TokenAnswer:
    return TokenAnswer(status, {"error": error, "error_description": description})


class TokenRegistry:
    """The access tokens this emulator issued, with their expiry on the emulator's clock."""

    def __init__(self) -> None:
        self._tokens: dict[str, _Issued] = {}

    def issue(self, now: float, ttl_s: float, scopes: frozenset[str]) -> TokenAnswer:
        if len(self._tokens) >= _PRUNE_AT:
            # Forget tokens that expired long ago; recent ones still answer "expired".
            horizon = now - 3600
            self._tokens = {t: i for t, i in self._tokens.items() if i.expires_at > horizon}
        token = "ya29.emu-" + secrets.token_urlsafe(32)
        self._tokens[token] = _Issued(now + ttl_s, scopes)
        expires_in = int(ttl_s) if ttl_s == int(ttl_s) else ttl_s
        body: dict[str, object] = {
            "access_token": token,
            "expires_in": expires_in,
            "scope": " ".join(sorted(scopes)),
            "token_type": "Bearer",
        }
        return TokenAnswer(200, body)

    def check(self, token: str, now: float) -> TokenState:
        issued = self._tokens.get(token)
        if issued is None:
            return TokenState.UNKNOWN
        if now >= issued.expires_at:
            return TokenState.EXPIRED
        if CLOUD_PLATFORM not in issued.scopes:
            return TokenState.NO_SCOPE
        return TokenState.VALID

    def expire_all(self, now: float) -> None:
        """Make every token issued so far expired (``POST /_emulator/expire-tokens``)."""
        self._tokens = {
            t: _Issued(min(i.expires_at, now), i.scopes) for t, i in self._tokens.items()
        }


def parse_form(body: bytes, content_type: bytes) -> dict[str, str]:
    """A token request's parameters: form-encoded (google-auth's way) or JSON."""
    if content_type.split(b";")[0].strip().lower() == b"application/json":
        try:
            document = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {}
        if not isinstance(document, dict):
            return {}
        return {str(k): str(v) for k, v in document.items() if isinstance(v, str | int)}
    fields = parse_qs(body.decode("latin-1"), keep_blank_values=True)
    return {key: values[0] for key, values in fields.items()}


def _b64url_json(segment: str) -> object:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        return json.loads(raw)
    except (binascii.Error, ValueError):
        return None


def _signature_length(segment: str) -> int:
    try:
        return len(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError):
        return 0


def _jwt_scopes(assertion: str, wall_now: float) -> frozenset[str] | TokenAnswer:
    """The scopes a service account's JWT asks for, or why Google would refuse it."""
    pieces = assertion.split(".")
    if len(pieces) != 3:
        return _refusal(400, "invalid_grant", "Invalid JWT Signature.")
    header, claims = _b64url_json(pieces[0]), _b64url_json(pieces[1])
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return _refusal(400, "invalid_grant", "Invalid JWT Signature.")
    # RSA signatures are as long as the key: 2048 to 4096 bits.
    if header.get("alg") != "RS256" or not 256 <= _signature_length(pieces[2]) <= 512:
        return _refusal(400, "invalid_grant", "Invalid JWT Signature.")
    issuer, audience = claims.get("iss"), claims.get("aud")
    if not isinstance(issuer, str) or "@" not in issuer:
        return _refusal(400, "invalid_grant", "Invalid grant: account not found")
    if not isinstance(audience, str) or not audience.rstrip("/").endswith("/token"):
        return _refusal(400, "invalid_grant", "Invalid JWT: Failed audience check.")
    iat, exp = claims.get("iat"), claims.get("exp")
    if (
        not isinstance(iat, int | float)
        or not isinstance(exp, int | float)
        or not 0 < exp - iat <= _MAX_ASSERTION_S
        or abs(iat - wall_now) > _CLOCK_SKEW_S
        or exp <= wall_now - _CLOCK_SKEW_S
    ):
        return _refusal(400, "invalid_grant", _BAD_TIMES)
    scope = claims.get("scope")
    if not isinstance(scope, str) or not scope.split():
        return _refusal(400, "invalid_scope", "Invalid OAuth scope or ID token audience provided.")
    return frozenset(scope.split())


def token_grant(
    form: Mapping[str, str], registry: TokenRegistry, now: float, wall_now: float, ttl_s: float
) -> TokenAnswer:
    """Answer one ``POST /token``: an access token, or Google's OAuth error."""
    grant = form.get("grant_type", "")
    if grant == "refresh_token":
        if not form.get("client_id") or not form.get("client_secret"):
            return _refusal(401, "invalid_client", "The OAuth client was not found.")
        refresh = form.get("refresh_token", "")
        if not refresh:
            return _refusal(400, "invalid_request", "Missing required parameter: refresh_token")
        if "revoked" in refresh:
            return _refusal(400, "invalid_grant", "Token has been expired or revoked.")
        asked = frozenset(form.get("scope", "").split())
        # gcloud's user credentials carry cloud-platform unless narrower scopes are asked for.
        return registry.issue(now, ttl_s, asked or frozenset({CLOUD_PLATFORM}))
    if grant == JWT_BEARER:
        scopes = _jwt_scopes(form.get("assertion", ""), wall_now)
        if isinstance(scopes, TokenAnswer):
            return scopes
        return registry.issue(now, ttl_s, scopes)
    if not grant:
        return _refusal(400, "invalid_request", "Missing required parameter: grant_type")
    return _refusal(400, "unsupported_grant_type", f"Invalid grant_type: {grant}")
