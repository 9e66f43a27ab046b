"""The request fingerprint: a hash of everything that shapes a row's result, whatever the route.

Frozen format: the ledger, provenance records and every user's output folder hold these values,
and a change would make the next run regenerate (and pay for) everything. It names only what the
user asked for (model, prompt, settings, source images), never how the request travels: the
route, the tier, the protocol's body shape and the credentials are left out, so the same row
sent another way is recognised as the same request.
"""

from __future__ import annotations

import hashlib

from pipeline.core.types import Job
from pipeline.plan.rowimages import is_link
from pipeline.plan.sources import SourceCache


def image_digest(image: str, sources: SourceCache) -> str:
    """What identifies a source image in the fingerprint: its bytes, or its link."""
    return link_digest(image) if is_link(image) else sources.digest(image)


def link_digest(link: str) -> str:
    """A linked source is identified by the link itself: it is not fetched."""
    return f"uri:{link}"


def fingerprint(job: Job, image_digests: list[str]) -> str:
    """A hash of everything that shapes the request: a change to any of it means a new image.

    Frozen format (a change would make every user's next run regenerate everything): each
    field is ``name:length:value``; optional fields are only included when set, so adding
    one later leaves existing fingerprints unchanged.
    """
    fields = [
        ("model", job.model),
        ("prompt", job.prompt),
        ("image_size", job.image_size or ""),
        ("aspect_ratio", job.aspect_ratio or ""),
        ("images", ",".join(image_digests)),
    ]
    optional = [
        ("system_instruction", job.system_instruction),
        ("temperature", None if job.temperature is None else repr(job.temperature)),
        ("seed", None if job.seed is None else str(job.seed)),
    ]
    fields += [(name, value) for name, value in optional if value is not None]
    canonical = "nanobatch-fp-1|" + "|".join(f"{k}:{len(v)}:{v}" for k, v in fields)
    return hashlib.sha256(canonical.encode()).hexdigest()


def request_fingerprint(job: Job, sources: SourceCache) -> str:
    """The fingerprint of ``job`` as it stands now, its local sources hashed (once per file
    version, through ``sources``): what a done row and a provenance record are checked against."""
    return fingerprint(job, [image_digest(image, sources) for image in job.images])
