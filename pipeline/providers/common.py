"""What every route's provider does the same way, written once: the ``PreparedRequest`` for a
built body, the whole-body reader for a route's classifier, and the image options a job asks
of its model. A route keeps only what is its own: its URL, headers, body and classifier."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, TypedDict, Unpack

from pipeline.core.clock import Clock
from pipeline.core.models import effective_size, resolve_model
from pipeline.core.tiers import request_timeout
from pipeline.core.types import Job, Outcome, RawResponse, Tier
from pipeline.plan.fingerprint import fingerprint
from pipeline.providers.base import JSON_HEADERS, AnswerReader, PreparedRequest, WholeBody


class ReadOptions(TypedDict, total=False):
    """What a route's classifier is told besides the answer, each with a default: ``now`` (Unix
    seconds) anchors an HTTP-date ``Retry-After``, ``follow_links`` counts image links as
    images, ``tier`` is the tier the request asked for."""

    now: float | None
    follow_links: bool
    tier: Tier


class Classifier(Protocol):
    """A route's classifier (``openai_chat.classify.classify`` and its kin)."""

    def __call__(self, response: RawResponse, **options: Unpack[ReadOptions]) -> Outcome: ...


def prepared(
    job: Job,
    url: str,
    built: tuple[bytes, list[str]],
    timeouts_s: Mapping[str, float],
    headers: Mapping[str, str] = JSON_HEADERS,
) -> PreparedRequest:
    """The request for ``job`` at ``url``, from its body and source digests (``built``)."""
    body, digests = built
    return PreparedRequest(
        model=job.model,
        url=url,
        body=body,
        fingerprint=fingerprint(job, digests),  # the tier is not in it: the same request
        timeout_s=request_timeout(timeouts_s, effective_size(job), job.tier),
        upload_bytes=len(body),
        headers=headers,
        tier=job.tier,
    )


def whole_body(
    classify: Classifier, request: PreparedRequest, follow_links: bool, clock: Clock
) -> AnswerReader:
    """A reader that classifies the whole answer to ``request`` at the tier it asked for; an
    HTTP-date ``Retry-After`` counts from when the answer is read, on the run's ``clock``."""

    def read(raw: RawResponse) -> Outcome:
        now = clock.now().timestamp()
        return classify(raw, now=now, follow_links=follow_links, tier=request.tier)

    return WholeBody(read)


def image_config(job: Job, aspect_key: str, size_key: str) -> dict[str, str]:
    """The job's aspect ratio and image size under a route's own field names; the size only if
    its model takes sizes (a model without sizes rejects the field)."""
    config: dict[str, str] = {}
    _, spec = resolve_model(job.model)
    if job.aspect_ratio:
        config[aspect_key] = job.aspect_ratio
    if job.image_size and (spec is None or spec.image_sizes):
        config[size_key] = job.image_size
    return config
