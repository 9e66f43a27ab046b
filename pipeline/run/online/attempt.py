"""One request's round trip: send a prepared request, classify the answer into an outcome,
and (with --follow-image-links) download the images a gateway answered with as links."""

from __future__ import annotations

import functools
from dataclasses import replace

import anyio

from pipeline.core.imagecheck import decoded_mime
from pipeline.core.types import Delivery, ImagePart, NoAnswer, Outcome, OutcomeKind, RawResponse
from pipeline.providers.gemini.classify import classify, classify_failure
from pipeline.providers.gemini.request import PreparedRequest
from pipeline.providers.http import GeminiClient


async def attempt(client: GeminiClient, request: PreparedRequest, *, follow_links: bool) -> Outcome:
    """Send ``request`` once; its outcome, whatever happened on the way."""
    parse = functools.partial(classify, follow_links=follow_links)
    outcome = await client.generate(request.model, request.body, request.timeout_s, parse)
    if isinstance(outcome, NoAnswer):
        return classify_failure(*outcome)
    if outcome.kind is OutcomeKind.SUCCESS and not outcome.images and outcome.image_urls:
        outcome = await download(client, outcome, request.timeout_s)
    return outcome


async def download(client: GeminiClient, outcome: Outcome, timeout_s: float) -> Outcome:
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
