"""Flag value parsing: every accepted form, and a clear error for the rest."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from pipeline.core.errors import UsageError
from pipeline.core.options import continue_command, parse_rerun, parse_stop, parse_timeouts
from pipeline.core.types import Status

NOW = datetime(2026, 11, 21, 18, 0, tzinfo=timezone(timedelta(hours=1)))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("failed", {Status.FAILED}),
        ("refused", {Status.REFUSED}),
        ("failed,refused", {Status.FAILED, Status.REFUSED}),
        (" Failed , REFUSED ", {Status.FAILED, Status.REFUSED}),
        ("all", {Status.FAILED, Status.REFUSED, Status.SUCCEEDED}),
        ("none", set()),
    ],
)
def test_rerun_values(text: str, expected: set[Status]) -> None:
    assert parse_rerun(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("failed", {Status.FAILED, Status.REFUSED}),
        ("none", {Status.REFUSED}),
        ("succeeded", {Status.SUCCEEDED, Status.REFUSED}),
    ],
)
def test_retry_refused_is_rerun_refused(text: str, expected: set[Status]) -> None:
    assert parse_rerun(text, retry_refused=True) == expected


def test_rerun_rejects_unknown_values() -> None:
    with pytest.raises(UsageError, match="unknown invalid"):
        parse_rerun("failed,invalid")


@pytest.mark.parametrize(
    ("after", "seconds"),
    [("90s", 90), ("90", 90), ("45m", 2700), ("7h", 25200), ("1h30m", 5400), ("0.5h", 1800)],
)
def test_stop_after(after: str, seconds: int) -> None:
    assert parse_stop(after, None, NOW) == NOW + timedelta(seconds=seconds)


def test_stop_at_is_the_next_such_local_time_and_the_earlier_deadline_wins() -> None:
    assert parse_stop(None, "06:30", NOW) == datetime(2026, 11, 22, 6, 30, tzinfo=NOW.tzinfo)
    assert parse_stop(None, "19:15", NOW) == datetime(2026, 11, 21, 19, 15, tzinfo=NOW.tzinfo)
    assert parse_stop("30m", "19:15", NOW) == NOW + timedelta(minutes=30)
    assert parse_stop(None, None, NOW) is None


@pytest.mark.parametrize(("after", "at"), [("7 hours", None), ("h", None), (None, "6.30")])
def test_bad_deadlines_are_usage_errors(after: str | None, at: str | None) -> None:
    with pytest.raises(UsageError):
        parse_stop(after, at, NOW)


def test_timeouts_override_the_defaults() -> None:
    timeouts = parse_timeouts("4K=600, 2K=240")
    assert (timeouts["4K"], timeouts["2K"], timeouts["1K"]) == (600, 240, 120)
    for bad in ("8K=10", "4K=-1", "4K=soon"):
        with pytest.raises(UsageError, match="SIZE=SECONDS"):
            parse_timeouts(bad)


def test_continue_command_never_repeats_a_key() -> None:
    argv = ["run", "m.csv", "--out", "o d", "--api-key", "AIzaSECRET", "--api-key=AIzaX", "-v"]
    command = continue_command(argv)
    assert command == "nanobatch run m.csv --out 'o d' -v"
    assert "AIza" not in command
