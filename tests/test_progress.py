"""The operator's view: the live bar at a fixed terminal width, non-TTY lines, log lines."""

from __future__ import annotations

import io
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import structlog

from pipeline.commands.barline import bar_line
from pipeline.commands.progress import ProgressReporter, snapshot
from pipeline.core.clock import SystemClock
from pipeline.core.logs import setup as setup_logging
from pipeline.run.result import RunResult

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def result(done: int = 15, to_do: int = 100, invalid: int = 2) -> RunResult:
    counts = {"succeeded": done - 3 - invalid, "refused": 2, "failed": 1, "invalid": invalid}
    run = RunResult(by_status=Counter(counts), to_do=to_do, spent_usd=1.0 * done / 10)
    run.started -= 60
    return run


class Stop(Exception):
    """Ends a reporter's loop from the injected sleep."""


class FakeTime(SystemClock):
    def __init__(self, stop_after: int) -> None:
        self.at = 1000.0
        self.sleeps = 0
        self.stop_after = stop_after

    def monotonic(self) -> float:
        return self.at

    async def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        if self.sleeps > self.stop_after:
            raise Stop
        self.at += seconds


@pytest.mark.parametrize(("done", "to_do"), [(15, 100), (98_765, 100_000)])
def test_the_essentials_fit_80_columns(done: int, to_do: int) -> None:
    status = snapshot(result(done, to_do))
    line = bar_line(status, 80, 60.0)
    assert len(line) <= 80
    assert f"{done}/{to_do}" in line
    assert re.search(rf"{done - 5} ok.*2 ref.*1 fail.*2 inv", line)
    assert f"${status['spend_usd']:.2f}" in line
    assert "ETA " in line


def test_more_detail_appears_when_there_is_room() -> None:
    status = snapshot(result())
    narrow, wide = bar_line(status, 80, 60.0), bar_line(status, 200, 60.0)
    assert len(wide) <= 200
    assert all(part in wide for part in ("in flight", "projected", "elapsed", "━"))
    assert len(narrow) < len(wide)


def test_the_live_bar_renders_the_essentials_in_an_80_column_terminal(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    monkeypatch.setattr("sys.stderr", screen)
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("TERM", "xterm")
    fake = FakeTime(stop_after=2)
    reporter = ProgressReporter(tmp_path, print, interactive=True, clock=fake)
    run = result()
    with pytest.raises(Stop):
        anyio.run(reporter.run, run)
    frames = [ANSI.sub("", f).strip() for f in re.split(r"\r|\n", screen.getvalue())]
    frames = [f for f in frames if f]
    assert frames, screen.getvalue()
    assert all(len(f) <= 80 for f in frames)
    assert any("15/100" in f and "$1.50" in f and "ETA" in f and "2 inv" in f for f in frames)


def test_non_tty_lines_are_timestamped_and_the_first_comes_within_seconds(
    tmp_path: Path,
) -> None:
    lines: list[tuple[float, str]] = []
    fake = FakeTime(stop_after=20)
    reporter = ProgressReporter(
        tmp_path,
        lambda line: lines.append((fake.at, line)),
        interactive=False,
        line_every_s=30.0,
        clock=fake,
    )
    with pytest.raises(Stop):
        anyio.run(reporter.run, result())
    assert lines[0][0] - 1000.0 <= 5.0
    assert lines[1][0] - lines[0][0] == pytest.approx(30.0)
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d progress: ", text) for _, text in lines)
    assert (tmp_path / "status.json").exists()


def test_log_lines_follow_sys_stderr_so_the_live_bar_can_move_them_above_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    setup_logging(0, [])
    swapped = io.StringIO()
    monkeypatch.setattr("sys.stderr", swapped)  # what rich's Live does while the bar shows
    structlog.get_logger("nanobatch").warning("test.event", detail="x")
    assert "test.event" in swapped.getvalue()


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)
