"""OAuth tokens from Application Default Credentials, through google-auth: a service-account
key file, user credentials (``gcloud auth application-default login``) or the GCE metadata
server, found in google-auth's order. A ``AdcTokens`` is the refresher of a
``providers.auth.TokenAuth``: called in a worker thread, it returns a fresh ``Token`` or raises
``CredentialsFailed`` with one line naming where the credentials come from, never a secret.

google-auth's HTTP goes through the run's own HTTP layer (``RunRequest``: google-auth's
transport interface, bridged from the refresher's thread to the event loop), so token requests
meet the same transport as the API calls: the network, or the in-process emulator in tests.
``requests`` is installed all the same: google-auth's metadata-server module imports it.

This module imports google-auth (~0.1-0.3 s); the provider imports it only for OAuth routes.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import anyio.from_thread
import google.auth
import google.auth.credentials
import google.auth.exceptions
import google.auth.transport
import httpx

from pipeline.core.types import NoAnswer
from pipeline.providers.auth import CredentialsFailed, Token
from pipeline.providers.http import HttpClient

# google-auth warns through the standard library as it probes (the metadata server, each
# attempt); with no handler of the application's own, Python would print each to stderr. What
# matters reaches the user as one line (``CredentialsFailed``); the rest is its business.
logging.getLogger("google.auth").addHandler(logging.NullHandler())

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
_TOKEN_TIMEOUT_S = 60.0  # google-auth sets its own (short) timeouts for the metadata server
# What an access or refresh token looks like, should an error ever quote one.
_SECRET = re.compile(r"(ya29\.|1//)[\w.-]+")
_NO_CREDENTIALS = (
    "no Google Cloud credentials were found: run `gcloud auth application-default login`, "
    "or set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, or use an API key "
    "(--api-key or GOOGLE_API_KEY) for Vertex express mode"
)


METADATA_SERVER = "the GCE metadata server (no credentials file was found)"


def adc_source(env: Mapping[str, str] = os.environ) -> str:
    """Where Application Default Credentials will come from, said without reading them (in
    google-auth's order: the variable, gcloud's file, the metadata server)."""
    path = env.get("GOOGLE_APPLICATION_CREDENTIALS", "").strip()
    if path:
        return f"the credentials file {path} (GOOGLE_APPLICATION_CREDENTIALS)"
    config = env.get("CLOUDSDK_CONFIG", "").strip()
    if not config:
        root = env.get("APPDATA", "") if os.name == "nt" else os.path.expanduser("~/.config")
        config = os.path.join(root, "gcloud")
    well_known = os.path.join(config, "application_default_credentials.json")
    if os.path.exists(well_known):
        return f"gcloud's application-default credentials ({well_known})"
    return METADATA_SERVER


class _Answer(google.auth.transport.Response):
    def __init__(self, status: int, headers: httpx.Headers, data: bytes) -> None:
        self._status, self._headers, self._data = status, headers, data

    @property
    def status(self) -> int:
        return self._status

    @property
    def headers(self) -> httpx.Headers:  # case-insensitive, as google-auth expects
        return self._headers

    @property
    def data(self) -> bytes:
        return self._data


class RunRequest(google.auth.transport.Request):
    """google-auth's transport interface over the run's ``HttpClient``. Called from a worker
    thread of the run's event loop (``TokenAuth`` runs refreshes there), it hands each request
    to the loop and waits for the answer."""

    def __init__(self, client: HttpClient) -> None:
        self._client = client

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> _Answer:
        content = body.encode() if isinstance(body, str) else body
        answer = anyio.from_thread.run(
            self._client.fetch,
            method,
            url,
            content,
            dict(headers or {}),
            float(timeout or _TOKEN_TIMEOUT_S),
        )
        if isinstance(answer, NoAnswer):
            # Only the origin and the failure's kind: a metadata URL may carry a query.
            origin = httpx.URL(url).copy_with(path="/", query=None)
            raise google.auth.exceptions.TransportError(  # type: ignore[no-untyped-call]
                f"{origin}: {answer.message}"
            )
        return _Answer(answer.status, httpx.Headers(answer.headers), answer.body)


class AdcTokens:
    """A ``TokenAuth`` refresher: Application Default Credentials, found on the first call,
    refreshed on every call. ``bind`` gives it the run's HTTP client before the first call.

    After the first call, ``project`` is the project the credentials name (None when they name
    none) and ``quota_project`` the project billed for quota (``x-goog-user-project``).
    """

    def __init__(self, *, source: str, now: Callable[[], float]) -> None:
        self.source = source
        self.project: str | None = None
        self.quota_project: str | None = None
        self._now = now
        self._request: RunRequest | None = None
        self._credentials: google.auth.credentials.Credentials | None = None

    def bind(self, client: HttpClient) -> None:
        self._request = RunRequest(client)

    def __call__(self) -> Token:
        request = self._request
        if request is None:  # a bug: the route check binds the client before any request
            raise RuntimeError("AdcTokens used before bind(): the run's route check binds it")
        try:
            credentials = self._credentials
            if credentials is None:
                credentials, self.project = google.auth.default(
                    scopes=[CLOUD_PLATFORM], request=request
                )
                self.quota_project = getattr(credentials, "quota_project_id", None) or None
                self._credentials = credentials
            credentials.refresh(request)  # type: ignore[no-untyped-call]
        except google.auth.exceptions.DefaultCredentialsError as e:
            raise CredentialsFailed(self._found_none(e)) from None
        except (google.auth.exceptions.GoogleAuthError, ValueError, OSError) as e:
            # ``from None``: google-auth's chained exceptions may hold a token endpoint's body.
            raise CredentialsFailed(f"{self.source} gave no token: {_short(e)}") from None
        token = credentials.token
        if not isinstance(token, str) or not token:
            raise CredentialsFailed(f"{self.source} gave no token: the answer held none")
        return Token(token, self._expires_at(credentials.expiry))

    def _found_none(self, error: Exception) -> str:
        if self.source == METADATA_SERVER:  # looked everywhere, found nothing
            return _NO_CREDENTIALS
        return f"{self.source} cannot be used: {_short(error)}"

    def _expires_at(self, expiry: datetime | None) -> float | None:
        """The expiry on the ``TokenAuth``'s clock (google-auth's is naive UTC wall time)."""
        if expiry is None:
            return None
        left = (expiry.replace(tzinfo=UTC) - datetime.now(UTC)).total_seconds()
        return self._now() + left

    def __repr__(self) -> str:
        return f"AdcTokens(source={self.source!r})"


def _short(error: Exception) -> str:
    """google-auth's words, one line, capped, with anything token-like blanked."""
    # A RefreshError's first argument is its sentence; the second, the endpoint's whole body.
    said = error.args[0] if error.args and isinstance(error.args[0], str) else str(error)
    text = " ".join(said.split()).rstrip(".") or type(error).__name__
    text = _SECRET.sub("<redacted>", text)
    return text if len(text) <= 300 else text[:297] + "..."
