"""The command-line languages of the Batch API emulation: ``--batch-delay`` and ``--batch-faults``.

Both parsers are pure and raise ``ValueError`` with a one-line message naming the bad part, so
the CLI can print it verbatim and exit 2.

``--batch-delay`` takes the ``--latency`` grammar without ``@size`` (``SECONDS``,
``uniform:LOW-HIGH``, ``lognormal:MEAN[:SIGMA]``): the seconds from a job's creation to its end,
drawn per job, then multiplied by ``--time-scale``.

Batch fault grammar::

    ITEM[,ITEM...]  with ITEM one of
      KIND=RATE          RATE in [0, 1]; KIND one of
                           stuck       the job stays PENDING until cancelled
                           expire      the job stays PENDING, then ends EXPIRED (nothing billed)
                           fail        the job runs without progress, then ends FAILED
                           late_file   SUCCEEDED before its output file can be read
                           long_id     the output file id is over 40 characters: the Files
                                       API rejects it, its download URL still works
                           line_error  a request's result line is an error (drawn per request)
                           upload_reset  an upload chunk is stored but its answer is lost
                                       (the connection drops): the client must query the offset
      late_file_s=SECONDS  how long a late file stays unreadable (default 60, time-scaled)
    "" or "none" means no faults. stuck, expire and fail share one draw per job, so their rates
    must add up to at most 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pipeline.emulator.specs import LatencySpec, parse_latency


class BatchFault(StrEnum):
    """Every batch-level fault; the value is the name used in ``--batch-faults``."""

    STUCK = "stuck"
    EXPIRE = "expire"
    FAIL = "fail"
    LATE_FILE = "late_file"
    LONG_ID = "long_id"
    LINE_ERROR = "line_error"
    UPLOAD_RESET = "upload_reset"


# A job's fate is one draw: it is stuck, expires, fails, or none of these.
JOB_FATES = (BatchFault.STUCK, BatchFault.EXPIRE, BatchFault.FAIL)

BATCH_FAULT_GRAMMAR = (
    "expected KIND=RATE[,KIND=RATE...][,late_file_s=SECONDS] with RATE in [0, 1] and KIND one of "
    f"{', '.join(kind.value for kind in BatchFault)} "
    "(e.g. 'stuck=0.05,late_file=0.2,line_error=0.01')"
)
DEFAULT_BATCH_DELAY = "uniform:10-30"


@dataclass(frozen=True, slots=True)
class BatchFaultSpec:
    """Batch fault rates (kinds absent never happen) and how long a late file stays unreadable."""

    rates: tuple[tuple[BatchFault, float], ...] = ()
    late_file_s: float = 60.0

    def rate(self, kind: BatchFault) -> float:
        return dict(self.rates).get(kind, 0.0)


def parse_batch_delay(spec: str) -> LatencySpec:
    """Parse ``--batch-delay``: the latency grammar, without the ``@size`` suffix."""
    if "@" in spec:
        raise ValueError(
            f"bad batch delay {spec!r}: '@size' does not apply to whole jobs; "
            "expected SECONDS | uniform:LOW-HIGH | lognormal:MEAN[:SIGMA]"
        )
    return parse_latency(spec)


def _number(text: str, item: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(
            f"bad batch fault item {item!r}: not a number; {BATCH_FAULT_GRAMMAR}"
        ) from None
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"bad batch fault item {item!r}: must be >= 0; {BATCH_FAULT_GRAMMAR}")
    return value


def parse_batch_faults(spec: str) -> BatchFaultSpec:
    """Parse a ``--batch-faults`` value (grammar in the module docstring)."""
    text = spec.strip()
    if text.lower() in ("", "none"):
        return BatchFaultSpec()
    rates: dict[BatchFault, float] = {}
    late_file_s: float | None = None
    for raw_item in text.split(","):
        item = raw_item.strip()
        key, sep, value = (part.strip() for part in item.partition("="))
        key = key.lower()
        if not sep or not key:
            raise ValueError(f"bad batch fault item {item!r}: not KEY=VALUE; {BATCH_FAULT_GRAMMAR}")
        if key == "late_file_s":
            if late_file_s is not None:
                raise ValueError(f"bad batch fault item {item!r}: given twice")
            late_file_s = _number(value, item)
            continue
        try:
            kind = BatchFault(key)
        except ValueError:
            raise ValueError(
                f"bad batch fault item {item!r}: unknown kind {key!r}; {BATCH_FAULT_GRAMMAR}"
            ) from None
        if kind in rates:
            raise ValueError(f"bad batch fault item {item!r}: {key} given twice")
        rate = _number(value, item)
        if rate > 1:
            raise ValueError(f"bad batch fault item {item!r}: rate must be <= 1")
        rates[kind] = rate
    fates = sum(rates.get(kind, 0.0) for kind in JOB_FATES)
    if fates > 1 + 1e-9:
        raise ValueError(
            f"bad batch fault spec {spec!r}: stuck, expire and fail add up to {fates:g} > 1"
        )
    return BatchFaultSpec(
        rates=tuple((kind, rates[kind]) for kind in BatchFault if kind in rates),
        late_file_s=60.0 if late_file_s is None else late_file_s,
    )
