"""A job's source images as every protocol sends them: each local file read (and hashed) once
through the run's cache, each link kept as written, and the per-request limit on inline data
checked. What a protocol wraps them in (``inlineData``, an ``image_url`` part) is its own.
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.core.types import Job
from pipeline.plan.fingerprint import link_digest
from pipeline.plan.rowimages import is_link
from pipeline.plan.sources import (
    MAX_REQUEST_INLINE_BYTES,
    MAX_REQUEST_INLINE_MIB,
    SourceCache,
    SourceImage,
    SourceImageError,
)


def load_inputs(
    job: Job,
    sources: SourceCache,
    *,
    fit_images: bool,
    check_link: Callable[[str], str | None] = lambda link: None,
) -> tuple[list[SourceImage | str], list[str]]:
    """The job's sources in order (a ``SourceImage`` for a file, the link itself for a link)
    and their digests for the fingerprint. Raises ``SourceImageError`` if a file went bad, a
    link is one the route cannot send (``check_link`` says why), or the inline data passes the
    per-request limit."""
    inputs: list[SourceImage | str] = []
    digests: list[str] = []
    inline = 0
    for image in job.images:
        if is_link(image):
            if (problem := check_link(image)) is not None:
                raise SourceImageError(problem)
            inputs.append(image)
            digests.append(link_digest(image))
            continue
        loaded = sources.load(image, fit=fit_images)
        inputs.append(loaded)
        digests.append(loaded.sha256)
        inline += len(loaded.b64)
    if inline > MAX_REQUEST_INLINE_BYTES:
        raise SourceImageError(
            f"the source images add up to {inline / 2**20:.0f} MiB as base64; a request takes at "
            f"most {MAX_REQUEST_INLINE_MIB} MiB"
        )
    return inputs, digests
