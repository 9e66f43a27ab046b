"""The two small languages of the emulator's command line: ``--latency`` and ``--faults``.

Both parsers are pure and raise ``ValueError`` with a one-line message that names the bad part and
shows the accepted grammar, so the CLI can print it verbatim and exit 2.

Latency grammar::

    SECONDS                      fixed delay, e.g. "0" or "2.5"
    uniform:LOW-HIGH             uniform in [LOW, HIGH], e.g. "uniform:2-8"
    lognormal:MEAN[:SIGMA]       log-normal with that mean (seconds); SIGMA of the underlying
                                 normal defaults to 0.5, e.g. "lognormal:12:0.6"; also written
                                 "lognormal:mean=12,sigma=0.6"
    ...@size                     any of the above, scaled by the requested image size:
                                 512 x0.5, 1K x1, 2K x1.5, 4K x3 (e.g. "lognormal:12@size")

Fault grammar::

    ITEM[,ITEM...]  with ITEM one of
      KIND=RATE           RATE in [0, 1]; KIND in 429 429day 500 503 504 reset truncate hang
                          (transient: redrawn on every attempt) or block unsafe prohibited
                          recitation imageother noimage (refusals: sticky per request)
      shed=RATE           a Flex request is shed (--shed-status, not billed): Flex only, its own
                          draw per attempt
      retry_delay=SECONDS the RetryInfo.retryDelay of an injected 429 (default 5)
      hang_s=SECONDS      how long a ``hang`` holds the response (default 900)
    "" or "none" means no faults.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

LATENCY_GRAMMAR = (
    "expected SECONDS | uniform:LOW-HIGH | lognormal:MEAN[:SIGMA], optionally followed by @size "
    "(e.g. '2', 'uniform:1-4', 'lognormal:12:0.6@size')"
)


class FaultKind(StrEnum):
    """Every fault the emulator can inject; the value is the name used in ``--faults``."""

    RATE_LIMIT = "429"
    QUOTA_DAY = "429day"
    INTERNAL = "500"
    UNAVAILABLE = "503"
    DEADLINE = "504"
    RESET = "reset"
    TRUNCATE = "truncate"
    HANG = "hang"
    BLOCK = "block"
    UNSAFE = "unsafe"
    PROHIBITED = "prohibited"
    RECITATION = "recitation"
    IMAGE_OTHER = "imageother"
    NO_IMAGE = "noimage"
    SHED = "shed"

    @property
    def is_refusal(self) -> bool:
        return self in REFUSAL_KINDS


# Refusals are answers about the content, so the same request is refused again (sticky draw);
# every other kind is an accident of the moment and is redrawn on each attempt.
REFUSAL_KINDS = frozenset(
    {
        FaultKind.BLOCK,
        FaultKind.UNSAFE,
        FaultKind.PROHIBITED,
        FaultKind.RECITATION,
        FaultKind.IMAGE_OTHER,
        FaultKind.NO_IMAGE,
    }
)
# Shedding befalls Flex requests only, so it has its own draw (tiers.py), outside the others.
TRANSIENT_KINDS = tuple(
    kind for kind in FaultKind if kind not in REFUSAL_KINDS and kind is not FaultKind.SHED
)
REFUSAL_ORDER = tuple(kind for kind in FaultKind if kind in REFUSAL_KINDS)

FAULT_GRAMMAR = (
    "expected KIND=RATE[,KIND=RATE...][,retry_delay=SECONDS][,hang_s=SECONDS] with RATE in [0, 1] "
    f"and KIND one of {', '.join(kind.value for kind in FaultKind)} "
    "(e.g. '429=0.2,503=0.05,unsafe=0.02,retry_delay=2')"
)

# How much longer a generation takes at each imageSize, relative to 1K ("@size" latencies).
SIZE_LATENCY_FACTOR: dict[str, float] = {"512": 0.5, "1K": 1.0, "2K": 1.5, "4K": 3.0}


class LatencyShape(StrEnum):
    FIXED = "fixed"
    UNIFORM = "uniform"
    LOGNORMAL = "lognormal"


@dataclass(frozen=True, slots=True)
class LatencySpec:
    """A latency distribution. ``a``/``b`` are (seconds, unused), (low, high) or (mean, sigma)."""

    shape: LatencyShape = LatencyShape.FIXED
    a: float = 0.0
    b: float = 0.0
    by_size: bool = False

    @property
    def is_zero(self) -> bool:
        return self.shape is LatencyShape.FIXED and self.a == 0.0


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """Fault rates (kinds absent from ``rates`` never happen) and the knobs of 429 and hang."""

    rates: tuple[tuple[FaultKind, float], ...] = ()
    retry_delay_s: float = 5.0
    hang_s: float = 900.0

    def rate(self, kind: FaultKind) -> float:
        return dict(self.rates).get(kind, 0.0)


def _seconds(text: str, what: str, spec: str, grammar: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"bad {what} {text!r} in {spec!r}: not a number; {grammar}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"bad {what} {text!r} in {spec!r}: must be >= 0; {grammar}")
    return value


def parse_latency(spec: str) -> LatencySpec:
    """Parse a ``--latency`` value (grammar in the module docstring)."""
    text = spec.strip()
    by_size = False
    if text.endswith("@size"):
        by_size = True
        text = text.removesuffix("@size").strip()
    elif "@" in text:
        raise ValueError(
            f"bad latency suffix in {spec!r}: only '@size' is known; {LATENCY_GRAMMAR}"
        )
    if not text:
        raise ValueError(f"empty latency spec {spec!r}; {LATENCY_GRAMMAR}")
    shape, _, rest = text.partition(":")
    shape = shape.strip().lower()
    if shape == "uniform":
        low_text, sep, high_text = rest.partition("-")
        if not sep:
            raise ValueError(f"bad uniform range {rest!r} in {spec!r}; {LATENCY_GRAMMAR}")
        low = _seconds(low_text.strip(), "uniform low", spec, LATENCY_GRAMMAR)
        high = _seconds(high_text.strip(), "uniform high", spec, LATENCY_GRAMMAR)
        if high < low:
            raise ValueError(
                f"bad uniform range {rest!r} in {spec!r}: HIGH < LOW; {LATENCY_GRAMMAR}"
            )
        return LatencySpec(LatencyShape.UNIFORM, low, high, by_size)
    if shape == "lognormal":
        if "=" in rest:
            named = dict(item.partition("=")[::2] for item in rest.replace(" ", "").split(","))
            if not named.keys() <= {"mean", "sigma"} or "mean" not in named:
                raise ValueError(
                    f"bad lognormal parameters {rest!r} in {spec!r}; {LATENCY_GRAMMAR}"
                )
            rest = named["mean"] + (":" + named["sigma"] if "sigma" in named else "")
        mean_text, _, sigma_text = rest.partition(":")
        mean = _seconds(mean_text.strip(), "lognormal mean", spec, LATENCY_GRAMMAR)
        sigma = 0.5
        if sigma_text.strip():
            sigma = _seconds(sigma_text.strip(), "lognormal sigma", spec, LATENCY_GRAMMAR)
        if mean <= 0:
            raise ValueError(f"bad lognormal mean in {spec!r}: must be > 0; {LATENCY_GRAMMAR}")
        return LatencySpec(LatencyShape.LOGNORMAL, mean, sigma, by_size)
    if rest:
        raise ValueError(f"unknown latency distribution {shape!r} in {spec!r}; {LATENCY_GRAMMAR}")
    return LatencySpec(
        LatencyShape.FIXED, _seconds(text, "latency", spec, LATENCY_GRAMMAR), 0.0, by_size
    )


def parse_faults(spec: str) -> FaultSpec:
    """Parse a ``--faults`` value (grammar in the module docstring)."""
    text = spec.strip()
    if text.lower() in ("", "none"):
        return FaultSpec()
    rates: dict[FaultKind, float] = {}
    options: dict[str, float] = {}
    for raw_item in text.split(","):
        item = raw_item.strip()
        key, sep, value_text = item.partition("=")
        key = key.strip().lower()
        if not sep or not key:
            raise ValueError(f"bad fault spec item {item!r}: not KEY=VALUE; {FAULT_GRAMMAR}")
        if key in ("retry_delay", "hang_s"):
            if key in options:
                raise ValueError(
                    f"bad fault spec item {item!r}: {key} given twice; {FAULT_GRAMMAR}"
                )
            options[key] = _seconds(value_text.strip(), key, spec, FAULT_GRAMMAR)
            continue
        try:
            kind = FaultKind(key)
        except ValueError:
            raise ValueError(
                f"bad fault spec item {item!r}: unknown kind {key!r}; {FAULT_GRAMMAR}"
            ) from None
        if kind in rates:
            raise ValueError(f"bad fault spec item {item!r}: {key} given twice; {FAULT_GRAMMAR}")
        rate = _seconds(value_text.strip(), f"rate for {key}", spec, FAULT_GRAMMAR)
        if rate > 1:
            raise ValueError(f"bad fault spec item {item!r}: rate must be <= 1; {FAULT_GRAMMAR}")
        rates[kind] = rate
    # The transient kinds share one draw per attempt and the refusals another per request, so
    # each group's rates must fit in [0, 1].
    for group, label in ((TRANSIENT_KINDS, "transient"), (REFUSAL_ORDER, "refusal")):
        total = sum(rates.get(kind, 0.0) for kind in group)
        if total > 1 + 1e-9:
            raise ValueError(
                f"bad fault spec {spec!r}: {label} rates add up to {total:g} > 1; {FAULT_GRAMMAR}"
            )
    return FaultSpec(
        rates=tuple((kind, rates[kind]) for kind in FaultKind if kind in rates),
        retry_delay_s=options.get("retry_delay", 5.0),
        hang_s=options.get("hang_s", 900.0),
    )
