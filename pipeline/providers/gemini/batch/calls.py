"""One call to the Gemini Files or Batch API: its URL, its credentials (from the provider's
``Auth``, refreshed once after a 401 as online), and its failure as a ``BatchCallError`` whose
``Outcome`` the online classifier made from the same evidence (status, Google's error body,
the transport failure).

Messages never carry a secret: the HTTP layer names only exception classes and origins, the
classifier scrubs keys, and what a call knows to be secret (the credentials it sent, an upload
session URL) is cut out of the server's message as well, in case a server echoes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote, urlencode

from pipeline.core import jsonread as jr
from pipeline.core.types import Delivery, NoAnswer, Outcome, OutcomeKind, RawResponse
from pipeline.providers.auth import Auth, Credentials, CredentialsFailed
from pipeline.providers.batchapi import BatchCallError
from pipeline.providers.gemini.classify import classify_failure
from pipeline.providers.gemini.errormap import classify_error, malformed, server_failed
from pipeline.providers.gemini.errors import error_from_bytes
from pipeline.providers.http import HttpClient, origin

UNAUTHORIZED = 401
NOT_FOUND = 404
CALL_TIMEOUT_S = 120.0  # a metadata call; chunk uploads and downloads set their own
PAGE_SIZE = 100  # the most a list answers at once


@dataclass(frozen=True, slots=True)
class Api:
    """Where the Files and Batch APIs are and how to authenticate to them."""

    base_url: str
    version: str
    auth: Auth
    page_size: int = PAGE_SIZE

    def url(self, path: str, **params: str) -> str:
        """``{base}/{version}/{path}``; ``path`` is ours, ids in it are already quoted."""
        query = f"?{urlencode(params)}" if params else ""
        return f"{self.base_url.rstrip('/')}/{self.version}/{path}{query}"

    def upload_url(self) -> str:
        return f"{self.base_url.rstrip('/')}/upload/{self.version}/files"

    def download_url(self, file_name: str) -> str:
        """The download URL of a file (the one that also serves ids the Files API rejects)."""
        path = name_path(file_name, "files")
        return f"{self.base_url.rstrip('/')}/download/{self.version}/{path}:download?alt=media"

    def same_origin(self, url: str) -> bool:
        """Whether ``url`` is the API's own origin: the only one that may see a credential."""
        return origin(url) == origin(self.base_url)

    async def credentials(self, call: str) -> Credentials:
        """The credentials to send now; ``BatchCallError`` when none can be had."""
        try:
            return await self.auth.credentials()
        except CredentialsFailed as e:
            raise BatchCallError(_credentials_failed(e), call) from None

    @staticmethod
    def sign(
        url: str, headers: Mapping[str, str], credentials: Credentials | None
    ) -> tuple[str, dict[str, str]]:
        """The URL and headers of a request that carries ``credentials`` (None: none)."""
        return with_credentials(url, headers, credentials)

    async def call(
        self,
        client: HttpClient,
        call: str,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        missing_ok: bool = False,
        timeout_s: float = CALL_TIMEOUT_S,
    ) -> RawResponse:
        """Send one authenticated call; its 2xx answer (or its 404 with ``missing_ok``).
        Raises ``BatchCallError`` for any other answer or none."""
        sent: Credentials | None = None
        request: dict[str, Any] = {
            "url": url,
            "body": body,
            "headers": headers,
            "timeout_s": timeout_s,
        }
        try:
            sent = await self.auth.credentials()
            answer = await _send(client, method, **request, credentials=sent)
            if isinstance(answer, RawResponse) and answer.status == UNAUTHORIZED:
                fresh = await self.auth.rejected(sent)
                if fresh is not None:
                    sent = fresh
                    answer = await _send(client, method, **request, credentials=sent)
        except CredentialsFailed as e:
            raise BatchCallError(_credentials_failed(e), call) from None
        if not (isinstance(answer, RawResponse) and answer.status == UNAUTHORIZED):
            self.auth.accepted(sent)
        if isinstance(answer, RawResponse) and (
            200 <= answer.status < 300 or (missing_ok and answer.status == NOT_FOUND)
        ):
            return answer
        raise failure(call, answer, secrets=secrets_of(sent))

    async def document(
        self, client: HttpClient, call: str, method: str, url: str, **kw: Any
    ) -> dict[str, Any]:
        """``call``'s answer as a JSON object (``{}`` for an empty 2xx body)."""
        answer = await self.call(client, call, method, url, **kw)
        return read_object(call, answer)

    async def pages(self, client: HttpClient, call: str, path: str, field: str) -> list[object]:
        """Every item of a listing, following ``nextPageToken`` to the end."""
        items: list[object] = []
        token: str | None = None
        seen: set[str] = set()
        while True:
            params = {"pageSize": str(self.page_size)} | ({"pageToken": token} if token else {})
            document = await self.document(client, call, "GET", self.url(path, **params))
            found = document.get(field)
            items.extend(found if isinstance(found, list) else ())
            token = jr.string(document.get("nextPageToken"))
            if token is None or token in seen:  # a server that repeats a token ends the list
                return items
            seen.add(token)


async def _send(
    client: HttpClient,
    method: str,
    *,
    url: str,
    body: bytes | None,
    headers: Mapping[str, str] | None,
    credentials: Credentials,
    timeout_s: float,
) -> RawResponse | NoAnswer:
    url, sending = with_credentials(url, headers, credentials)
    return await client.fetch(method, url, body, sending, timeout_s)


def with_credentials(
    url: str, headers: Mapping[str, str] | None, credentials: Credentials | None
) -> tuple[str, dict[str, str]]:
    """The URL and headers of a request that carries ``credentials`` (None: none at all)."""
    sending = dict(headers or {})
    if credentials is None:
        return url, sending
    if credentials.params:
        url += ("&" if "?" in url else "?") + urlencode(credentials.params)
    return url, sending | dict(credentials.headers)


def _credentials_failed(e: CredentialsFailed) -> Outcome:
    return Outcome(
        OutcomeKind.RUN_ERROR, "CREDENTIALS_FAILED", message=str(e), delivery=Delivery.NOT_SENT
    )


def secrets_of(credentials: Credentials | None, *more: str) -> tuple[str, ...]:
    """The strings no message may show: credential values, and e.g. a session URL."""
    found = [*more]
    if credentials is not None:
        found += [*credentials.headers.values(), *credentials.params.values()]
    # The bare token of "Bearer <token>" too; very short values would cut words apart.
    found += [s.split(" ", 1)[1] for s in found if s.lower().startswith("bearer ")]
    return tuple(s for s in found if len(s) >= 8)


def failure(
    call: str, answer: RawResponse | NoAnswer, *, secrets: tuple[str, ...] = ()
) -> BatchCallError:
    """The error for a call that got ``answer``: classified as an online answer would be,
    except that a 404 names the missing thing (a job, a file), not a model, outside create."""
    if isinstance(answer, NoAnswer):
        outcome = classify_failure(*answer)
    else:
        error = error_from_bytes(answer.body)
        outcome = server_failed(classify_error(answer.status, error, answer, None))
        if answer.status == NOT_FOUND and call != "create_job":
            outcome = replace(outcome, kind=OutcomeKind.ROW_ERROR, reason="NOT_FOUND")
    return BatchCallError(scrub(outcome, secrets), call)


def scrub(outcome: Outcome, secrets: tuple[str, ...]) -> Outcome:
    message = outcome.message
    if message is None or not any(s in message for s in secrets):
        return outcome
    for secret in secrets:
        message = message.replace(secret, "<redacted>")
    return replace(outcome, message=message)


def read_object(call: str, answer: RawResponse) -> dict[str, Any]:
    """A 2xx body as a JSON object; a body that is not one is a malformed answer."""
    if not answer.body.strip():
        return {}
    try:
        data = jr.loads(answer.body)
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        raise BatchCallError(malformed(answer.status, "the answer is not a JSON object"), call)
    return data


def name_path(name: str, collection: str) -> str:
    """``files/ID`` or ``batches/ID`` as a path, the id quoted: no name from a server or a
    journal can reach another path (``../``) or a query (``?``). Raises ``ValueError`` for a
    name outside ``collection`` (a bug: names come from this API's own answers)."""
    prefix, _, resource = name.partition("/")
    if prefix != collection or not resource:
        raise ValueError(f"not a {collection} name: {name[:80]!r}")
    return f"{collection}/{quote(resource, safe='')}"
