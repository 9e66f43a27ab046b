"""Parsing of flag values: pure functions from text to typed settings, each raising
``UsageError`` with a message that shows the accepted form."""

from __future__ import annotations

import math
import os
import shlex
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from pipeline.core.config import DEFAULT_FALLBACK_MARGIN_S, DEFAULT_TIMEOUTS_S, Fallback, RunMode
from pipeline.core.durations import parse_span
from pipeline.core.errors import UsageError
from pipeline.core.types import Status, Tier


def parse_rerun(text: str, *, retry_refused: bool = False) -> frozenset[Status]:
    """``--rerun failed,refused`` -> the finished statuses to send again.

    ``--retry-refused`` is the older spelling of adding ``refused``: one mechanism, so a
    refused row recorded by any earlier run is sent again, once per run.
    """
    names = {part.strip().lower() for part in text.split(",") if part.strip()}
    if retry_refused:
        names = (names - {"none"}) | {"refused"}
    if "all" in names:
        return frozenset({Status.SUCCEEDED, Status.REFUSED, Status.FAILED})
    if names == {"none"}:
        return frozenset()
    allowed = {"failed": Status.FAILED, "refused": Status.REFUSED, "succeeded": Status.SUCCEEDED}
    if unknown := names - set(allowed):
        raise UsageError(
            f"--rerun {text!r}: unknown {', '.join(sorted(unknown))}; "
            "use failed, refused, succeeded, all or none (comma-separated)"
        )
    return frozenset(allowed[n] for n in names)


def parse_stop(
    stop_after: str | None, stop_at: str | None, now: datetime | None = None
) -> datetime | None:
    """``--stop-after 7h`` / ``--stop-at 06:30`` as an aware wall-clock time (the earlier wins)."""
    now = now or datetime.now().astimezone()
    candidates = []
    if stop_after:
        seconds = parse_span(stop_after)
        if seconds is None:
            raise UsageError(f"--stop-after {stop_after!r}: use e.g. 90s, 45m, 7h or 1h30m")
        candidates.append(now + timedelta(seconds=seconds))
    if stop_at:
        at = _next_local(stop_at, now)
        if at is None:
            raise UsageError(f"--stop-at {stop_at!r}: use a local time such as 06:30")
        candidates.append(at)
    return min(candidates) if candidates else None


def _next_local(text: str, now: datetime) -> datetime | None:
    """``HH:MM`` as the next such local time after ``now`` (tomorrow's if today's has passed)."""
    try:
        clock = datetime.strptime(text.strip(), "%H:%M").time()
    except ValueError:
        return None
    at = now.replace(hour=clock.hour, minute=clock.minute, second=0, microsecond=0)
    return at if at > now else at + timedelta(days=1)


def parse_deadline(text: str | None, now: datetime | None = None) -> datetime | None:
    """``--deadline 07:00`` (the next 07:00 local time) or an ISO 8601 date-time (without a
    zone: local), as an aware time; a time already past is refused."""
    if text is None:
        return None
    now = now or datetime.now().astimezone()
    at = _next_local(text, now)
    if at is None:
        try:
            at = datetime.fromisoformat(text.strip())
        except ValueError:
            raise UsageError(
                f"--deadline {text!r}: use a local time such as 07:00 (the next one) or an ISO "
                "date-time such as 2026-12-02T07:00"
            ) from None
        at = at if at.tzinfo else at.astimezone()
        if at <= now:
            raise UsageError(
                f"--deadline {text!r}: {at.isoformat(timespec='minutes')} has passed; give a "
                "time to come"
            )
    return at


def parse_margin(text: str | None) -> float:
    """``--fallback-margin 2h``: the time before the deadline kept for the online fallback."""
    if text is None:
        return DEFAULT_FALLBACK_MARGIN_S
    seconds = parse_span(text)
    if seconds is None:
        raise UsageError(f"--fallback-margin {text!r}: use e.g. 2h, 90m or 1h30m")
    return seconds


def parse_mode(
    mode: str, deadline: str | None, margin: str | None, fallback: str | None
) -> tuple[RunMode, Fallback]:
    """``--mode`` and ``--fallback``; the batch-only flags refused in online mode (an online
    run sends every row at once: nothing to fall back from, no deadline to keep)."""
    try:
        run_mode = RunMode(mode.strip().lower())
    except ValueError:
        raise UsageError(f"--mode {mode!r}: use online (the default) or batch") from None
    try:
        then = Fallback(fallback.strip().lower()) if fallback is not None else Fallback.NONE
    except ValueError:
        raise UsageError(
            f"--fallback {fallback!r}: use online (send a failed or expired job's rows "
            "online) or none (resubmit them in a new batch job)"
        ) from None
    given = [flag for flag, value in (("--deadline", deadline), ("--fallback-margin", margin),
                                      ("--fallback", fallback)) if value is not None]  # fmt: skip
    if run_mode is RunMode.ONLINE and given:
        raise UsageError(
            f"{given[0]} is for --mode batch (online mode sends every row at once; "
            "--stop-at stops an online run)"
        )
    return run_mode, then


def parse_timeouts(text: str) -> dict[str, float]:
    """``--timeouts "2K=240,4K=600,flex=1800"`` over the defaults: per image size, and per
    tier (a tier's timeout is a floor over the size's: ``tiers.request_timeout``)."""
    timeouts = dict(DEFAULT_TIMEOUTS_S)
    keys = [*timeouts, *(t.value for t in Tier if t.value not in timeouts)]
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, seconds = part.partition("=")
        try:
            value = float(seconds)
        except ValueError:
            value = -1.0
        key = key.strip()
        if key.lower() in (t.value for t in Tier):
            key = key.lower()
        if key not in keys or value <= 0:
            raise UsageError(
                f"--timeouts {part!r}: expected SIZE=SECONDS or TIER=SECONDS with SIZE or TIER "
                f"one of {', '.join(keys)}, e.g. --timeouts 4K=600,flex=1800"
            )
        timeouts[key] = value
    return timeouts


def parse_rerun_before(text: str | None) -> datetime | None:
    """``--rerun-before 2026-12-01T19:30:00.123+00:00`` (a time without a zone is local)."""
    if text is None:
        return None
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"--rerun-before {text!r}: use an ISO 8601 time such as 2026-12-01T19:30:00+00:00"
        ) from None
    return at if at.tzinfo else at.astimezone()


def continue_command(
    argv: list[str],
    max_cost: float | None = None,
    rerun_before: datetime | None = None,
    without: tuple[str, ...] = (),
) -> str:
    """The command line that resumes this run, without any key given on it; with ``max_cost``,
    naming that cap instead of the one given (rounded up to the cent); with ``rerun_before``,
    pinning ``--rerun`` to the rows that had not been redone by then; ``without`` the flags
    (with their values) named there."""
    dropped: tuple[str, ...] = ("--api-key", *without)
    dropped += ("--max-cost",) if max_cost is not None else ()
    dropped += ("--rerun-before",) if rerun_before is not None else ()
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in dropped:
            skip = True
            continue
        if arg.startswith(tuple(f"{flag}=" for flag in dropped)):
            continue
        kept.append(arg)
    if max_cost is not None:
        kept += ["--max-cost", f"{math.ceil(round(max_cost * 100, 6)) / 100:.2f}"]
    if rerun_before is not None:
        kept += ["--rerun-before", rerun_before.isoformat(timespec="milliseconds")]
    return shlex.join(["nanobatch", *kept])


def check_out_dir(out: Path) -> None:
    """Create ``--out`` and prove it takes files, before anything is sent or logged there."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file, not a directory; choose another path")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise UsageError(f"--out {out}: cannot write there ({why}); choose another path") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: not writable; choose another path")
