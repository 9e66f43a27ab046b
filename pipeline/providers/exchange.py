"""One request's round trip through a provider: credentials from its ``Auth``, the request
over HTTP, the answer through its reader into an ``Outcome`` (or the transport failure through
its classifier), and, with --follow-image-links, the images a gateway answered with as links.

A 401 on a credential that can be refreshed is resent once with the refreshed one, inside the
same attempt: a 401 is an error answer (never billed), so the resend cannot pay twice. A second
401 in a row is returned as it is: a run-stopping outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import anyio

from pipeline.core.imagecheck import decoded_mime
from pipeline.core.types import Delivery, ImagePart, NoAnswer, Outcome, OutcomeKind, RawResponse
from pipeline.providers.auth import Credentials, CredentialsFailed
from pipeline.providers.base import AnswerReader, PreparedRequest, Provider
from pipeline.providers.http import HttpClient

UNAUTHORIZED = 401


async def exchange(
    provider: Provider,
    client: HttpClient,
    request: PreparedRequest,
    reader: Callable[[PreparedRequest], AnswerReader] | None = None,
) -> Outcome:
    """Send ``request`` once (twice after a 401 a refresh can cure); its outcome, whatever
    happened on the way. ``reader``: what reads the answer, when not the provider's reader
    of generations (a route check reads a model's metadata)."""
    auth = provider.auth
    read = reader or provider.reader
    try:
        credentials = await auth.credentials()
        outcome = await _send(provider, client, request, credentials, read)
        if outcome.http_status == UNAUTHORIZED:
            fresh = await auth.rejected(credentials)
            if fresh is not None:
                credentials = fresh
                outcome = await _send(provider, client, request, credentials, read)
    except CredentialsFailed as e:
        return Outcome(
            OutcomeKind.RUN_ERROR, "CREDENTIALS_FAILED", message=str(e), delivery=Delivery.NOT_SENT
        )
    if outcome.http_status != UNAUTHORIZED:
        auth.accepted(credentials)
    if outcome.kind is OutcomeKind.SUCCESS and not outcome.images and outcome.image_urls:
        outcome = await download(client, outcome, request.timeout_s)
    return outcome


async def _send(
    provider: Provider,
    client: HttpClient,
    request: PreparedRequest,
    credentials: Credentials,
    read: Callable[[PreparedRequest], AnswerReader],
) -> Outcome:
    answer = await client.send(request, credentials, read(request))
    if isinstance(answer, NoAnswer):
        return provider.classify_failure(*answer)
    return answer


async def download(client: HttpClient, outcome: Outcome, timeout_s: float) -> Outcome:
    """Fetch images a gateway returned as links (--follow-image-links), without any
    credential; keep only what decodes as an image. The generation is paid: never resend it.
    """
    images = []
    for url in outcome.image_urls:
        for _ in range(3):
            answer = await client.download(url, timeout_s)
            if isinstance(answer, RawResponse) and answer.status == 200 and answer.body:
                # The type from the bytes, not the header: a link may serve a web page.
                mime = await anyio.to_thread.run_sync(decoded_mime, answer.body)
                if mime is not None:
                    images.append(ImagePart(answer.body, mime))
                    break
    if len(images) == len(outcome.image_urls):
        return replace(outcome, images=tuple(images))
    return Outcome(
        kind=OutcomeKind.ROW_ERROR,
        reason="DOWNLOAD_FAILED",
        http_status=outcome.http_status,
        text=outcome.text,
        message="the image links in the answer could not be downloaded as images: "
        + " ".join(outcome.image_urls),
        usage=outcome.usage,
        delivery=Delivery.ANSWERED,  # the generation was answered: possibly billed
    )
