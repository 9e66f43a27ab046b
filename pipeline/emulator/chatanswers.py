"""The chat gateway's answers, in the image shape chosen by ``--chat-shape``:

- ``images``: ``choices[0].message.images[].image_url.url``, a ``data:`` URL (OpenRouter,
  Vercel, LiteLLM); the final image only.
- ``parts``: ``message.content`` as an array of parts; Gemini 3's draft ("thought") image comes
  first, the answer is the last ``image_url`` part.
- ``markdown``: ``![image](data:...)`` in a string ``content`` (new-api / one-api), drafts too:
  the last image is the answer.
- ``link``: ``![image](http://<emulator>/_emulator/images/<id>.png)``, to be fetched without the
  gateway's key.

A refused image is ``finish_reason: "content_filter"`` (``native_finish_reason`` keeps Google's
reason); a blocked prompt is an HTTP 400 with code ``prompt_blocked``; words instead of an
image are a plain ``stop`` answer. ``usage.cost`` is what the request was billed, in USD (0 for
refusals). OpenRouter's ``native_finish_reason`` and ``provider`` fields are included.
"""

from __future__ import annotations

import json
import secrets
import time

from pipeline.emulator import responses
from pipeline.emulator.images import Encoded
from pipeline.emulator.links import LinkStore
from pipeline.emulator.pricing import price_micros, usd
from pipeline.emulator.responses import FINISH_MESSAGES, NO_IMAGE_TEXT
from pipeline.emulator.specs import FaultKind
from pipeline.emulator.validate import GenerationRequest


class ChatDialect:
    """Answers for one chat request (the shape, the model as named, the tier, the host)."""

    def __init__(
        self,
        shape: str,
        *,
        model: str,
        tier: str,
        tier_asked: bool,
        base_url: str,
        links: LinkStore,
    ) -> None:
        self._shape = shape
        self._model = model
        self._tier = tier
        self._tier_asked = tier_asked
        self._base_url = base_url
        self._links = links
        # Marks where image data goes in the serialized answer (inside JSON strings).
        self._marker = f"@@img-{secrets.token_hex(12)}-"

    def _envelope(
        self,
        answer: responses.Answer,
        message: dict[str, object],
        finish: tuple[str, str],
        usage: tuple[int, int, int, int],
    ) -> dict[str, object]:
        prompt, completion, reasoning, micros = usage
        body: dict[str, object] = {
            "id": f"gen-{answer.response_id}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self._model,
            "provider": "Google",
            "choices": [
                {
                    "index": 0,
                    "logprobs": None,
                    "finish_reason": finish[0],
                    "native_finish_reason": finish[1],
                    "message": {"role": "assistant", **message},
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "completion_tokens_details": {"reasoning_tokens": reasoning},
                "cost": usd(micros),
            },
        }
        if self._tier_asked:
            body["service_tier"] = self._tier
        return body

    def _url(self, index: int, mime: str) -> str:
        return f"data:{mime};base64,{self._marker}{index}@@"

    def success(
        self,
        request: GenerationRequest,
        answer: responses.Answer,
        image: Encoded,
        thought: Encoded | None,
    ) -> tuple[int, list[bytes]]:
        mime = request.mime_type
        caption = (
            f"Here is the image you asked for: {' '.join(request.prompt.split()[:8])}"
            if request.want_text
            else ""
        )
        images = [image] if thought is None or self._shape == "images" else [thought, image]
        urls = [self._url(i, mime) for i in range(len(images))]
        message: dict[str, object]
        if self._shape == "images":
            entry = {"type": "image_url", "image_url": {"url": urls[0]}, "index": 0}
            message = {"content": caption, "images": [entry]}
        elif self._shape == "parts":
            parts: list[dict[str, object]] = [
                {"type": "image_url", "image_url": {"url": url}} for url in urls
            ]
            if caption:
                parts.append({"type": "text", "text": caption})
            message = {"content": parts}
        else:
            if self._shape == "link":
                urls = [self._base_url + self._links.put(image, mime)]
                images = []
            text = "\n\n".join(f"![image]({url})" for url in urls)
            message = {"content": text + (f"\n\n{caption}" if caption else "")}
        thoughts = responses.thoughts_tokens(request, answer.seed) if request.model.thinks else 0
        completion = request.model.image_tokens(request.image_size) + thoughts
        usage = (
            responses.prompt_tokens(request),
            completion,
            thoughts,
            price_micros(request, self._tier),
        )
        body = self._envelope(answer, message, ("stop", "STOP"), usage)
        return 200, self._spliced(json.dumps(body).encode(), images)

    def _spliced(self, text: bytes, images: list[Encoded]) -> list[bytes]:
        pieces: list[bytes] = []
        for i, data in enumerate(images):
            before, _, text = text.partition(f"{self._marker}{i}@@".encode())
            pieces += [before, *data]
        pieces.append(text)
        return pieces

    def blocked(
        self, request: GenerationRequest, answer: responses.Answer, reason: str
    ) -> tuple[int, bytes]:
        error = {
            "message": f"The prompt was blocked by the provider's safety filters ({reason}).",
            "type": "invalid_request_error",
            "code": "prompt_blocked",
            "metadata": {"raw": responses.blocked(request, answer, reason).decode()},
        }
        return 400, json.dumps({"error": error}).encode()

    def image_refused(
        self, request: GenerationRequest, answer: responses.Answer, kind: FaultKind
    ) -> tuple[int, bytes]:
        reason, message = FINISH_MESSAGES[kind]
        thoughts = responses.thoughts_tokens(request, answer.seed) if request.model.thinks else 0
        usage = (responses.prompt_tokens(request), thoughts, thoughts, 0)
        content: dict[str, object] = {"content": "", "refusal": message}
        body = self._envelope(answer, content, ("content_filter", reason), usage)
        return 200, json.dumps(body).encode()

    def text_only(self, request: GenerationRequest, answer: responses.Answer) -> tuple[int, bytes]:
        usage = (responses.prompt_tokens(request), 40, 0, 0)
        body = self._envelope(answer, {"content": NO_IMAGE_TEXT}, ("stop", "STOP"), usage)
        return 200, json.dumps(body).encode()
