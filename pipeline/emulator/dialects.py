"""How a route words the answers of one generation pipeline: the same outcome (an image, a
blocked prompt, a refused image, words instead of an image) written as the Gemini API and
Vertex write it (``GoogleDialect``) or as a chat gateway does (``chatanswers.ChatDialect``).
Each method returns the HTTP status and the body (a list of pieces for image answers, which
the exchange writes one after the other without joining them). The dialects are a closed set,
so ``Dialect`` is their union, not a protocol restating each signature a third time.
"""

from __future__ import annotations

from typing import TypeAlias

from pipeline.emulator import responses
from pipeline.emulator.chatanswers import ChatDialect
from pipeline.emulator.images import Encoded
from pipeline.emulator.specs import FaultKind
from pipeline.emulator.validate import GenerationRequest


class GoogleDialect:
    """The Gemini API's and Vertex AI's own answers (``Answer.vertex`` tells them apart)."""

    def success(
        self,
        request: GenerationRequest,
        answer: responses.Answer,
        image: Encoded,
        thought: Encoded | None,
    ) -> tuple[int, list[bytes]]:
        return 200, responses.success(request, answer, image, thought)

    def blocked(
        self, request: GenerationRequest, answer: responses.Answer, reason: str
    ) -> tuple[int, bytes]:
        return 200, responses.blocked(request, answer, reason)

    def image_refused(
        self, request: GenerationRequest, answer: responses.Answer, kind: FaultKind
    ) -> tuple[int, bytes]:
        return 200, responses.image_refused(request, answer, kind)

    def text_only(self, request: GenerationRequest, answer: responses.Answer) -> tuple[int, bytes]:
        return 200, responses.text_only(request, answer)


GOOGLE = GoogleDialect()

Dialect: TypeAlias = GoogleDialect | ChatDialect
