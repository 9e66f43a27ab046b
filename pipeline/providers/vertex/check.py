"""The route check: before the first paid request, one unbilled read of the model's metadata
(``GET .../publishers/google/models/{m}``) through the route's credentials, so a wrong project,
location, scope or key, or a model the location does not serve, stops the run at once with
one line (``UsageError``: exit 2, nothing spent).

Only a definite refusal stops the run. An answer that says nothing about the route (a 429, a
5xx, a timeout) lets the run start: its rows then meet the retry policy as usual.
"""

from __future__ import annotations

import structlog

from pipeline.core.errors import UsageError
from pipeline.core.types import Delivery, Outcome, OutcomeKind, RawResponse
from pipeline.providers.base import PreparedRequest, Provider, WholeBody
from pipeline.providers.exchange import exchange
from pipeline.providers.gemini.errors import error_from_bytes
from pipeline.providers.http import HttpClient
from pipeline.providers.vertex.urls import GLOBAL, VertexRoute

log = structlog.get_logger("nanobatch")

CHECK_TIMEOUT_S = 60.0
_SCOPE = "ACCESS_TOKEN_SCOPE_INSUFFICIENT"
_KEY = "API_KEY_INVALID"


def _read(response: RawResponse) -> Outcome:
    """A model read's answer: OK, or what the error body says (its ErrorInfo reason first)."""
    if 200 <= response.status < 300:
        return Outcome(OutcomeKind.SUCCESS, "OK", response.status)  # a read: never billed
    error = error_from_bytes(response.body)
    code = response.status
    kind = OutcomeKind.RUN_ERROR
    if code in (408, 429) or code >= 500:
        kind = OutcomeKind.TRANSIENT
    reason = next(iter(error.reasons), None) or error.status or f"HTTP_{code}"
    return Outcome(kind, reason, code, message=error.message, delivery=Delivery.ERROR)


async def check_route(
    provider: Provider, client: HttpClient, route: VertexRoute, model: str, version: str
) -> None:
    """Read ``model`` at ``route`` with ``provider``'s credentials; raise ``UsageError`` with
    what is wrong and how to fix it, or return (the route serves the model, or could not say).
    """
    request = PreparedRequest(
        model=model,
        url=route.model_url(model, version),
        body=b"",
        fingerprint="",
        timeout_s=CHECK_TIMEOUT_S,
        upload_bytes=0,
        headers={},
        method="GET",
    )
    outcome = await exchange(provider, client, request, lambda _: WholeBody(_read))
    if outcome.kind is OutcomeKind.SUCCESS:
        log.info("route.checked", model=model, location=route.location, express=route.express)
        return
    if outcome.kind is OutcomeKind.TRANSIENT:
        log.warning("route.check_inconclusive", reason=outcome.reason, status=outcome.http_status)
        return
    raise UsageError(_message(outcome, provider.auth.source, route, model))


def _message(outcome: Outcome, source: str, route: VertexRoute, model: str) -> str:
    said = " ".join((outcome.message or "").split()).rstrip(".")
    detail = f" ({said})" if said else ""
    where = route.describe()
    status, reason = outcome.http_status, outcome.reason
    if reason == "CREDENTIALS_FAILED":
        return f"Vertex AI: {said}; nothing was sent"
    if reason == _KEY:
        return (
            f"Vertex AI rejected {source} (express mode){detail}: pass a valid key with "
            "--api-key or GOOGLE_API_KEY, or use --project with OAuth credentials"
        )
    if status == 401:
        return (
            f"Vertex AI did not accept the token from {source}{detail}: run "
            "`gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS "
            "to a service-account key file"
        )
    if reason == _SCOPE:
        return (
            f"the token from {source} lacks the cloud-platform scope{detail}: run `gcloud auth "
            "application-default login` again, or give the credentials the scope "
            "https://www.googleapis.com/auth/cloud-platform"
        )
    if status == 403:
        return (
            f"{source} may not use Vertex AI in {where}{detail}: check --project (or "
            "GOOGLE_CLOUD_PROJECT), that the Vertex AI API is enabled there "
            "(`gcloud services enable aiplatform.googleapis.com`), and that the account has "
            "roles/aiplatform.user"
        )
    if status == 404:
        hint = (
            f"; try --location {GLOBAL} (Gemini 3.1 Flash Image and Flex are served there only)"
            if route.location != GLOBAL and not route.express
            else "; check --model (Vertex serves GA ids, e.g. gemini-3-pro-image)"
        )
        return f"Vertex AI does not serve {model} at {where}{detail}{hint}"
    if reason == "REDIRECTED":
        return f"the route check was answered with a redirect{detail}: set --base-url"
    return f"Vertex AI refused the route check for {model} at {where} (HTTP {status}){detail}"
