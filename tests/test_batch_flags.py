"""Batch mode's flags: --mode, --deadline, --fallback-margin, --fallback parse to the run config,
and a run that cannot go in batch mode stops with one line (exit 2) before anything is written
or sent, never quietly online."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.core.config import Fallback, RunConfig, RunMode
from pipeline.core.durations import parse_span
from pipeline.core.errors import UsageError
from pipeline.core.options import parse_deadline, parse_margin, parse_mode
from pipeline.core.routes import Route
from pipeline.run import modes
from pipeline.run.modes import check_mode
from tests.helpers import write_csv

NOW = datetime(2026, 12, 1, 23, 30, tzinfo=timezone(timedelta(hours=1)))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("07:00", datetime(2026, 12, 2, 7, 0, tzinfo=NOW.tzinfo)),  # the next 07:00: tomorrow
        ("23:45", datetime(2026, 12, 1, 23, 45, tzinfo=NOW.tzinfo)),  # still today
        ("23:30", datetime(2026, 12, 2, 23, 30, tzinfo=NOW.tzinfo)),  # now is not "to come"
        ("2026-12-02T06:30+01:00", datetime(2026, 12, 2, 6, 30, tzinfo=NOW.tzinfo)),
        ("2026-12-02T05:30+00:00", datetime(2026, 12, 2, 5, 30, tzinfo=UTC)),
    ],
)
def test_deadline_is_the_next_local_time_or_an_iso_date_time(text: str, expected: datetime) -> None:
    assert parse_deadline(text, NOW) == expected


def test_a_deadline_without_a_zone_is_local_time() -> None:
    at = parse_deadline("2099-01-01T07:00")
    assert at is not None
    assert at.tzinfo is not None
    assert at.replace(tzinfo=None) == datetime(2099, 1, 1, 7, 0)


@pytest.mark.parametrize("text", ["7am", "25:00", "tomorrow", "2026-12-01T06:00+01:00"])
def test_bad_or_past_deadlines_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match="--deadline"):
        parse_deadline(text, NOW)


SPANS = [(None, 7200.0), ("2h", 7200.0), ("90m", 5400.0), ("1h30m", 5400.0), ("45s", 45.0)]


@pytest.mark.parametrize(("text", "seconds"), [*SPANS, ("0", 0.0)])
def test_fallback_margin_is_a_span(text: str | None, seconds: float) -> None:
    assert parse_margin(text) == seconds


@pytest.mark.parametrize("text", ["2 hours", "-1h", "h", "", "1e9h"])
def test_bad_spans_are_refused(text: str) -> None:
    assert parse_span(text) is None
    with pytest.raises(UsageError, match="--fallback-margin"):
        parse_margin(text)


def test_mode_defaults_to_online_and_fallback_to_a_new_batch_job() -> None:
    assert parse_mode("online", None, None, None) == (RunMode.ONLINE, Fallback.NONE)
    assert parse_mode("Batch", "07:00", "1h", "online") == (RunMode.BATCH, Fallback.ONLINE)
    assert RunConfig(Path("m.csv"), Path("o")).mode is RunMode.ONLINE


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (("fast", None, None, None), "--mode"),
        (("batch", None, None, "later"), "--fallback"),
        (("online", "07:00", None, None), "--deadline"),
        (("online", None, "1h", None), "--fallback-margin"),
        (("online", None, None, "online"), "--fallback"),
    ],
)
def test_bad_modes_and_batch_only_flags_online_are_refused(
    args: tuple[str, str | None, str | None, str | None], flag: str
) -> None:
    with pytest.raises(UsageError, match=flag):
        parse_mode(*args)


@pytest.mark.parametrize("route", [Route.VERTEX, Route.OPENAI_CHAT])
def test_batch_mode_on_a_route_without_batch_is_refused_naming_it(route: Route) -> None:
    config = RunConfig(Path("m.csv"), Path("o"), provider=route, mode=RunMode.BATCH,
                       project="p" if route is Route.VERTEX else None)  # fmt: skip
    with pytest.raises(UsageError, match=f"--provider {route.value} cannot take batch jobs"):
        check_mode(config)
    check_mode(RunConfig(Path("m.csv"), Path("o"), provider=route,
                         project="p" if route is Route.VERTEX else None))  # fmt: skip


def test_batch_mode_without_the_batch_executor_is_refused_not_run_online(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Batchable:
        name = "gemini"

        class capabilities:  # stands in for the Capabilities value
            batch = True

    monkeypatch.setattr(modes, "EXECUTOR_MODULE", "pipeline.run.no_such_executor")
    config = RunConfig(Path("m.csv"), Path("o"), mode=RunMode.BATCH)
    with pytest.raises(UsageError, match="not available in this build"):
        check_mode(config, Batchable())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--provider", "openai-chat", "--base-url", "http://gw.invalid/v1"], "openai-chat"),
        (["--deadline", "07:00"], "--deadline is for --mode batch"),
    ],
)
def test_the_cli_refuses_in_one_line_and_writes_nothing(
    tmp_path: Path, extra: list[str], says: str
) -> None:
    manifest = write_csv(tmp_path / "m.csv", [{"id": "a", "prompt": "a lamp"}])
    out = tmp_path / "out"
    mode = [] if "--deadline" in extra else ["--mode", "batch"]
    args = ["run", str(manifest), "--out", str(out), "--emulate", *mode, *extra]
    result = CliRunner().invoke(app, args, env={})
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1
    assert says in lines[0]
    assert not (out / "ledger.parquet").exists()
