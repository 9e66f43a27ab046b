"""What a chat-completions answer's first choice holds: its image, its text, its finish
reasons, its usage, and anything that could not be read.

Gateways put the image in one of four places; they are tried in this order, and the first that
holds an image gives the answer (reference: routes-tiers-batch.md):

1. ``message.images[].image_url.url``, a ``data:`` URL (OpenRouter, Vercel, LiteLLM);
2. ``message.content`` as a list of parts, its ``image_url`` parts;
3. ``data:image/...`` URLs in a string ``content``, Markdown ``![image](data:...)``
   (new-api / one-api forks);
4. hosted ``http(s)://`` image links in any of these places, gathered only with ``links``
   (``--follow-image-links``), to be fetched without the gateway's key.

Gemini 3 can send its draft ("thought") images before the final one, and a chat answer does
not mark them: the **last** image of the first place that has one is the answer, so exactly
one image is kept (and paid for) per request.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pipeline.core import jsonread as jr
from pipeline.core.types import ImagePart, Usage
from pipeline.providers.gemini.extract import MAX_TEXT
from pipeline.providers.textimages import (
    DATA_URI,
    decode_data_url,
    image_urls,
    is_web_link,
    take_data_uris,
)


@dataclass(frozen=True, slots=True)
class ChatReading:
    """Everything the first choice said that matters here."""

    images: tuple[ImagePart, ...] = ()  # the answer: at most one image
    image_urls: tuple[str, ...] = ()  # the answer as a hosted link: at most one, only with links
    linked: bool = False  # the answer held an image link, gathered or not
    text: str | None = None
    refusal: str | None = None  # OpenAI's ``message.refusal``: why the model declined
    finish_reason: str | None = None  # OpenAI's, upper-cased (STOP, CONTENT_FILTER, LENGTH...)
    native_finish_reason: str | None = None  # Google's, when the gateway passes it on
    problem: str | None = None  # why part of it could not be read; None when all of it could


@dataclass(slots=True)
class _Found:
    """Images and links of one place, in the order they came."""

    images: list[ImagePart]
    links: list[str]


def read_choice(data: dict[str, Any], *, links: bool) -> ChatReading:
    """Read ``choices[0]`` of a parsed answer; never raises for odd structures."""
    problems: list[str] = []
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        what = "has no choices" if not choices else "choices is not a list"
        return ChatReading(problem=f"the answer {what}")
    choice = choices[0]
    if not isinstance(choice, dict):
        return ChatReading(problem="a choice is not an object")
    message = choice.get("message")
    if not isinstance(message, dict):
        message = {}
        problems.append("the choice has no message object")
    texts: list[str] = []
    places = [_image_entries(message.get("images"), problems)]
    content = message.get("content")
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        places.append(_content_parts(content, texts, problems))
    elif content is not None:
        problems.append("message content is neither text nor a list of parts")
    # Markdown data URLs, only looked for when no structured place held an image (a scan).
    if not any(place.images for place in places) and any(DATA_URI in t for t in texts):
        found = _Found([], [])
        texts = take_data_uris(texts, found.images, problems)
        places.append(found)
    chosen_images = next((place.images for place in places if place.images), [])
    if not chosen_images:
        places.append(_Found([], image_urls(texts)))
    every_link = [link for place in places for link in place.links]
    chosen_links = every_link if links and not chosen_images else []
    joined = "\n".join(texts).strip()
    return ChatReading(
        images=tuple(chosen_images[-1:]),
        image_urls=tuple(chosen_links[-1:]),
        linked=bool(every_link) and not chosen_images,
        text=jr.cap(joined, MAX_TEXT) or None,
        refusal=jr.message(jr.string(message.get("refusal"))),
        finish_reason=jr.enum(choice.get("finish_reason")),
        native_finish_reason=jr.enum(choice.get("native_finish_reason")),
        problem="; ".join(jr.dedupe(problems)) or None,
    )


def _image_entries(entries: object, problems: list[str]) -> _Found:
    """``message.images``: ``[{"type": "image_url", "image_url": {"url": ...}}]``."""
    found = _Found([], [])
    if entries is None:
        return found
    if not isinstance(entries, list):
        problems.append("message images is not a list")
        return found
    for entry in entries:
        _take_url(entry.get("image_url") if isinstance(entry, dict) else None, found, problems)
    return found


def _content_parts(parts: list[object], texts: list[str], problems: list[str]) -> _Found:
    """``message.content`` as parts: ``text`` parts to ``texts``, ``image_url`` parts found."""
    found = _Found([], [])
    for part in parts:
        if not isinstance(part, dict):
            problems.append("a content part is not an object")
        elif "image_url" in part:
            _take_url(part.get("image_url"), found, problems)
        elif isinstance(text := part.get("text"), str):
            texts.append(text)
        elif text is not None:
            problems.append("a text part is not a string")
    return found


def _take_url(ref: object, found: _Found, problems: list[str]) -> None:
    """One ``image_url`` (``{"url": ...}``, or the URL itself) into ``found``."""
    url = ref.get("url") if isinstance(ref, dict) else ref
    if not isinstance(url, str) or not url:
        problems.append("an image_url has no url")
    elif url.startswith(DATA_URI):
        image = decode_data_url(url)
        if image is None:
            problems.append("a data: URL holds invalid base64")
        else:
            found.images.append(image)
    elif is_web_link(url):
        found.links.append(url)
    else:
        problems.append("an image_url is neither a data: URL nor a link")


def read_usage(usage: object) -> Usage:
    """OpenAI's ``usage`` (and OpenRouter's ``cost``, USD) as the run's ``Usage``."""
    if not isinstance(usage, dict):
        return Usage()
    details = usage.get("completion_tokens_details")
    reasoning = details.get("reasoning_tokens") if isinstance(details, dict) else None
    return Usage(
        prompt_tokens=jr.integer(usage.get("prompt_tokens")),
        output_tokens=jr.integer(usage.get("completion_tokens")),
        thoughts_tokens=jr.integer(reasoning),
        cost_usd=_cost(usage.get("cost")),
    )


def _cost(value: object) -> float | None:
    """A cost only as a plain, finite, non-negative number: it settles the ledger's cost."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        cost = float(value)
    except OverflowError:  # an integer past any float
        return None
    return cost if math.isfinite(cost) and cost >= 0 else None
