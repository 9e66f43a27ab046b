"""Writing a finished job's results to disk, one request at a time, in a background thread, so
that polling a job never waits for its results to be written (the Files API waits instead).

A file job's output is JSONL, one line per request in completion order (so not the input's),
``{"response": {GenerateContentResponse}, "key": ...}`` or ``{"error": {"code", "message"},
"key": ...}``; the key comes last, as nothing promises it comes first. An inline job's output is
the body of the ``inlinedResponses`` array, ``{"response": ..., "metadata": {"key": ...}}``
entries separated by commas, in input order as the API documents for inline requests, which
``batch_api`` splices into the job's JSON without loading it.

Answers are the online ones: the same images (from the same renderer and cache), refusals and
text-only answers.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.emulator import responses
from pipeline.emulator.batch_items import Item
from pipeline.emulator.images import Renderer
from pipeline.emulator.specs import FaultKind


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def answer_pieces(item: Item, renderer: Renderer, seed: int) -> list[bytes]:
    """The GenerateContentResponse of a request that was not an error."""
    request = item.request
    assert request is not None
    answer = responses.new_answer(seed, vertex=False)
    if item.refusal is not None:
        kind, reason = item.refusal
        if kind is FaultKind.BLOCK:
            return [responses.blocked(request, answer, reason)]
        if kind is FaultKind.NO_IMAGE:
            return [responses.text_only(request, answer)]
        return [responses.image_refused(request, answer, kind)]
    thought = renderer.thought_image(request) if request.model.thinks else None
    return responses.success(request, answer, renderer.final_image(request), thought)


def _entry(item: Item, renderer: Renderer, seed: int, *, inline: bool) -> list[bytes]:
    if item.error is not None:
        code, message = item.error
        head = [b'{"error":', _dumps({"code": code, "message": message})]
    else:
        head = [b'{"response":', *answer_pieces(item, renderer, seed)]
    if inline:
        tail = b',"metadata":' + _dumps({"key": item.key}) + b"}" if item.key is not None else b"}"
    else:
        tail = b',"key":' + _dumps(item.key) + b"}\n" if item.key is not None else b"}\n"
    return [*head, tail]


def render(
    path: Path, items: Iterable[Item], renderer: Renderer, seed: int, *, inline: bool
) -> None:
    """Write the results of ``items``, in the order given, to ``path``."""
    with path.open("wb") as out:
        for number, item in enumerate(items):
            if inline and number:
                out.write(b",")
            for piece in _entry(item, renderer, seed, inline=inline):
                out.write(piece)


@dataclass(eq=False)
class Rendering:
    """Results being written by a background thread; ``done`` is set when it stops."""

    path: Path
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def check(self) -> None:
        """Re-raise what the thread died of: a bug, never to be hidden."""
        if self.error is not None:
            raise self.error


def start(
    path: Path,
    items: list[Item],
    renderer: Renderer,
    seed: int,
    *,
    inline: bool,
    slots: threading.BoundedSemaphore,
) -> Rendering:
    """Render in a daemon thread (at most ``slots`` at once; exiting never waits for one)."""
    rendering = Rendering(path)

    def work() -> None:
        try:
            with slots:
                render(path, items, renderer, seed, inline=inline)
        except BaseException as exc:  # handed to whoever waits for the results
            rendering.error = exc
        finally:
            rendering.done.set()

    threading.Thread(target=work, name="nanobatch-emulator-results", daemon=True).start()
    return rendering
