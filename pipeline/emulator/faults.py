"""Deterministic draws: which fault, which refusal, how much latency.

Every draw is a pure function of (seed, request fingerprint, occurrence, purpose), so the same
seed and the same requests give the same faults under any concurrency or ordering. Transient
faults are redrawn per occurrence of a fingerprint; refusals are drawn once per fingerprint, so
re-sending a refused request is refused again, as with the real model.

Trigger tokens in the prompt force an outcome: ``#unsafe``, ``#block`` or ``#block:OTHER``,
``#503``... An ``xN`` suffix (``#503x2``) limits a token to the first N occurrences of the
request, which is how a test makes "fails twice, then succeeds" happen.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from statistics import NormalDist

from pipeline.emulator.specs import (
    REFUSAL_ORDER,
    SIZE_LATENCY_FACTOR,
    TRANSIENT_KINDS,
    FaultKind,
    FaultSpec,
    LatencyShape,
    LatencySpec,
)

DEFAULT_BLOCK_REASON = "PROHIBITED_CONTENT"
_TOKEN = re.compile(
    r"#(?P<kind>429day|429|500|503|504|reset|truncate|hang|block|unsafe|prohibited|recitation"
    r"|imageother|noimage|shed)(?::(?P<reason>[A-Za-z_]+))?(?:x(?P<limit>\d+))?(?![\w])",
    re.IGNORECASE,
)
_NORMAL = NormalDist()


@dataclass(frozen=True, slots=True)
class Trigger:
    """A trigger token found in a prompt."""

    kind: FaultKind
    limit: int | None  # only the first ``limit`` occurrences of the request; None: always
    reason: str | None  # blockReason for ``#block:REASON``

    def applies(self, occurrence: int) -> bool:
        return self.limit is None or occurrence < self.limit


def unit(seed: int, purpose: str, fingerprint: bytes, occurrence: int = 0) -> float:
    """A uniform number in [0, 1) drawn from its inputs alone."""
    digest = hashlib.sha256(f"{seed}:{purpose}:{occurrence}:".encode() + fingerprint).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def find_triggers(prompt: str) -> tuple[Trigger, ...]:
    if "#" not in prompt:
        return ()
    found = []
    for match in _TOKEN.finditer(prompt):
        limit = match.group("limit")
        reason = match.group("reason")
        found.append(
            Trigger(
                kind=FaultKind(match.group("kind").lower()),
                limit=int(limit) if limit is not None else None,
                reason=reason.upper() if reason else None,
            )
        )
    return tuple(found)


def _walk(u: float, spec: FaultSpec, kinds: tuple[FaultKind, ...]) -> FaultKind | None:
    edge = 0.0
    for kind in kinds:
        edge += spec.rate(kind)
        if u < edge:
            return kind
    return None


def transient_fault(
    seed: int, spec: FaultSpec, fingerprint: bytes, occurrence: int, triggers: tuple[Trigger, ...]
) -> FaultKind | None:
    """The accident (429, 5xx, reset, truncate, hang) that befalls this attempt, if any."""
    for trigger in triggers:
        if trigger.kind in TRANSIENT_KINDS and trigger.applies(occurrence):
            return trigger.kind
    if not spec.rates:
        return None
    return _walk(unit(seed, "transient", fingerprint, occurrence), spec, TRANSIENT_KINDS)


def refusal(
    seed: int, spec: FaultSpec, fingerprint: bytes, occurrence: int, triggers: tuple[Trigger, ...]
) -> tuple[FaultKind, str] | None:
    """The refusal for this request, if any, with its block reason (for ``block``)."""
    for trigger in triggers:
        if trigger.kind.is_refusal and trigger.applies(occurrence):
            return trigger.kind, trigger.reason or DEFAULT_BLOCK_REASON
    if not spec.rates:
        return None
    # Drawn from the fingerprint alone: the same request is refused every time.
    kind = _walk(unit(seed, "refusal", fingerprint), spec, REFUSAL_ORDER)
    return None if kind is None else (kind, DEFAULT_BLOCK_REASON)


def latency_s(
    spec: LatencySpec, seed: int, fingerprint: bytes, occurrence: int, image_size: str
) -> float:
    """Seconds this attempt takes, drawn from the latency distribution."""
    if spec.is_zero:
        return 0.0
    u = unit(seed, "latency", fingerprint, occurrence)
    if spec.shape is LatencyShape.UNIFORM:
        seconds = spec.a + (spec.b - spec.a) * u
    elif spec.shape is LatencyShape.LOGNORMAL:
        # Choose mu so the distribution's mean (not its median) is the one asked for.
        mu = math.log(spec.a) - spec.b**2 / 2
        z = _NORMAL.inv_cdf(min(max(u, 1e-12), 1 - 1e-12))
        seconds = math.exp(mu + spec.b * z)
    else:
        seconds = spec.a
    if spec.by_size:
        seconds *= SIZE_LATENCY_FACTOR.get(image_size, 1.0)
    return seconds


def cut_fraction(seed: int, fingerprint: bytes, occurrence: int) -> float:
    """Where a reset or truncated body stops, as a fraction of its length (0.2 to 0.8)."""
    return 0.2 + 0.6 * unit(seed, "cut", fingerprint, occurrence)
