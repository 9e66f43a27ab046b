"""A row's ``images`` cell -> the source images to send, or why they cannot be sent.

A list is ``;``-separated text, a JSON array or a Parquet list; ``~`` expands; other paths are
relative to the manifest's folder. A local file must be a regular file (never a FIFO or a
device), of an accepted format by its bytes, that decodes whole, within the size limits; links
(``http(s)://``, ``gs://``) are sent as ``fileData``. A file outside the manifest's folder (an
absolute path, ``..``, a symlink) is allowed, and said once per file: a shared catalogue
folder is common, a stray ``../`` is a mistake worth seeing.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from pathlib import Path

from pipeline.plan.sources import (
    MAX_FIT_SOURCE_BYTES,
    MAX_FIT_SOURCE_MIB,
    MAX_IMAGE_BYTES,
    MAX_REQUEST_INLINE_BYTES,
    MAX_REQUEST_INLINE_MIB,
    inline_bytes,
    inspect_source,
    too_big,
)

URI_PREFIXES = ("http://", "https://", "gs://")


def is_link(image: str) -> bool:
    """Whether a resolved source is a link (sent as such) rather than a local file."""
    return image.startswith(URI_PREFIXES)


SEPARATOR_HINT = "separate images with ';' (not ','), e.g. \"front.jpg; back.jpg\""


# Why a batch request takes no link: Google runs a job hours after it is sent (up to 48 h), so
# a signed or short-lived link may be dead by then, and whether the Batch API fetches links at
# all is unconfirmed. A local file goes inside the request file, checked now.
BATCH_LINK = (
    "a link cannot go into a batch request (Google would fetch it hours later, if at all): "
    "download it and name the file, or send this row with --mode online"
)


class BadImages(ValueError):
    """Why a row's images cannot be sent; the message names the file and the fix."""


class SourceImages:
    """Resolves ``images`` cells; each distinct file is inspected (and decoded) once."""

    def __init__(
        self,
        base_dir: Path,
        *,
        fit_images: bool,
        links: tuple[str, ...] = URI_PREFIXES,
        batch: bool = False,
    ) -> None:
        self._base_dir = base_dir
        self._fit = fit_images
        self._links = links  # the link schemes the run's route takes
        self._batch = batch  # --mode batch: no links (``BATCH_LINK``)
        self._inspect = functools.lru_cache(maxsize=65536)(
            functools.partial(inspect_source, decode=True)
        )
        self._said_outside: set[str] = set()

    def resolve(
        self, value: object, limit: int, model: str, warn: Callable[[str], None]
    ) -> tuple[str, ...]:
        """The row's images as sent (absolute paths and links); ``warn`` hears about files
        outside the manifest's folder."""
        listed = image_list(value)
        if len(listed) > limit:
            raise BadImages(f"{len(listed)} source images; {model} takes at most {limit}")
        images = []
        inline = 0
        for item in listed:
            if self._batch and "://" in item:
                raise BadImages(f"{item}: {BATCH_LINK}")
            if item.startswith(self._links):
                images.append(item)  # sent as fileData: the server fetches it
                continue
            if "://" in item:
                raise BadImages(self._refused(item))
            path = self._local(item, warn)
            inline += inline_bytes(self._size(item, path))
            images.append(path)
        if inline > MAX_REQUEST_INLINE_BYTES:
            raise BadImages(
                f"the source images add up to {inline / 2**20:.0f} MiB as base64; a request takes "
                f"at most {MAX_REQUEST_INLINE_MIB} MiB: use fewer or smaller images"
            )
        return tuple(images)

    def _refused(self, item: str) -> str:
        if item.startswith("gs://"):
            return (
                f"{item}: Cloud Storage (gs://) links are read by Vertex AI (--provider vertex); "
                "on this route use a local file or an https:// link"
            )
        accepted = ["http(s)://"] + (["gs://"] if "gs://" in self._links else [])
        return f"{item}: only {' and '.join(accepted)} links are accepted"

    def _local(self, item: str, warn: Callable[[str], None]) -> str:
        written = os.path.expanduser(item)
        path = os.path.normpath(self._base_dir / written)
        if path not in self._said_outside and (why := self._outside(written, path)):
            self._said_outside.add(path)
            warn(f"{item} lies outside the manifest's folder {self._base_dir} ({why})")
        return path

    def _outside(self, written: str, path: str) -> str | None:
        base = str(self._base_dir)
        if not _within(path, base):
            return "an absolute path" if os.path.isabs(written) else "'..' leads out of it"
        if not _within(os.path.realpath(path), os.path.realpath(base)):
            return "a symlink leads out of it"
        return None

    def _size(self, item: str, path: str) -> int:
        info = self._inspect(path)
        if info.problem is not None:
            hint = f"; {SEPARATOR_HINT}" if "," in item and not os.path.lexists(path) else ""
            raise BadImages(info.problem + hint)
        if info.size > MAX_IMAGE_BYTES and not self._fit:
            raise BadImages(too_big(path, info.size))
        if info.size > MAX_FIT_SOURCE_BYTES:
            raise BadImages(
                f"{path} is {info.size / 2**20:.0f} MiB; --fit-images reads at most "
                f"{MAX_FIT_SOURCE_MIB} MiB per image: downscale it first"
            )
        return info.size


def _within(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder


def image_list(value: object) -> list[str]:
    """``images`` as a list: ``;``-separated text, a JSON array, or a Parquet list."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                raise BadImages("starts with [ but is not a JSON array") from None
        else:
            return [p.strip() for p in text.split(";") if p.strip()]
    if isinstance(value, list) and all(isinstance(p, str) for p in value):
        return [p.strip() for p in value if p.strip()]
    raise BadImages("expected paths separated by ';', a JSON array or a list of paths")
