"""The reader a native route (Gemini API, Vertex AI) gives each answer: streaming its large
images to the run's temp folder (``stream.StreamingAnswer``), or whole where there is no output
folder, classified by the route's own classifier on the run's clock."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Unpack

from pipeline.core.clock import SYSTEM_CLOCK, Clock
from pipeline.core.types import Outcome, RawResponse, Tier
from pipeline.providers.base import AnswerReader, PreparedRequest, WholeBody
from pipeline.providers.common import ReadOptions
from pipeline.providers.gemini.extract import Spooled
from pipeline.providers.gemini.stream import StreamingAnswer
from pipeline.store.storage import TMP_DIR


class NativeOptions(ReadOptions, total=False):
    """A native classifier is also told the images already streamed to disk."""

    spooled: Spooled | None


class NativeClassifier(Protocol):
    """``gemini.classify.classify`` or ``vertex.classify.classify``."""

    def __call__(self, response: RawResponse, **options: Unpack[NativeOptions]) -> Outcome: ...


def answer_reader(
    classify: NativeClassifier,
    out_dir: Path | None,
    *,
    follow_links: bool,
    tier: Tier,
    clock: Clock = SYSTEM_CLOCK,
) -> AnswerReader:
    """The reader for one answer: streaming to ``out_dir``'s temp folder in a run, whole where
    there is no output folder (a route check, a test of the classifier). An HTTP-date
    ``Retry-After`` counts from when the answer is read, on the run's ``clock``."""

    def read(response: RawResponse, spooled: Spooled) -> Outcome:
        now = clock.now().timestamp()
        return classify(response, now=now, follow_links=follow_links, tier=tier, spooled=spooled)

    if out_dir is None:
        return WholeBody(lambda response: read(response, {}))
    return StreamingAnswer(read, out_dir / TMP_DIR)


class NativeRoute(Protocol):
    """What a native route (Gemini API, Vertex AI) holds that its readers need."""

    @property
    def out_dir(self) -> Path | None: ...

    @property
    def follow_links(self) -> bool: ...

    @property
    def clock(self) -> Clock: ...


def reader_for(
    classify: NativeClassifier, route: NativeRoute, request: PreparedRequest
) -> AnswerReader:
    """The reader of one answer to ``request`` on ``route``, through the route's classifier."""
    return answer_reader(
        classify, route.out_dir, follow_links=route.follow_links, tier=request.tier,
        clock=route.clock,
    )  # fmt: skip
