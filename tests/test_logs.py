"""Which events reach the console, and that run.log keeps them all."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import structlog
from structlog.testing import capture_logs

from pipeline.core import logs


@pytest.mark.parametrize(("method", "shown"), [("exception", True), ("error", True),
                                               ("warning", True), ("info", False)])  # fmt: skip
def test_the_console_shows_warnings_and_errors_by_default_log_exception_included(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], method: str, shown: bool
) -> None:
    """structlog sends ``log.exception`` through its error method: shown as an error."""
    logs.setup(0, ["a-secret-value"], tmp_path)
    try:
        getattr(structlog.get_logger("nanobatch"), method)("probe.event", count=3, ok=True)
    finally:
        structlog.reset_defaults()
    captured = capfd.readouterr()
    assert ("probe.event" in captured.out + captured.err) is shown
    assert "probe.event" in (tmp_path / logs.RUN_LOG).read_text()  # the file keeps every event


@pytest.mark.parametrize("verbose", [0, 1, 2])
@pytest.mark.parametrize("to_file", [True, False])
def test_a_hot_path_debug_event_is_written_as_structlog_writes_it(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], verbose: int, to_file: bool
) -> None:
    """``logs.debug`` skips structlog's logger, not what it does: the same run.log line (key
    order included, the key redacted), the same console output, at every verbosity."""
    written: dict[str, list[dict[str, object]]] = {}
    shown: dict[str, str] = {}
    for how in ("structlog", "quick"):
        out = tmp_path / how
        logs.setup(verbose, ["a-secret-value"], out if to_file else None)
        try:
            fields = {"row_id": "r1", "reason": "key a-secret-value", "latency_ms": 1.5}
            if how == "quick":
                logs.debug("row.attempt", **fields)
            else:
                structlog.get_logger("nanobatch").debug("row.attempt", **fields)
        finally:
            structlog.reset_defaults()
        captured = capfd.readouterr()
        shown[how] = captured.out + captured.err
        path = out / logs.RUN_LOG
        lines = path.read_text().splitlines() if path.exists() else []
        written[how] = [json.loads(line) for line in lines]
        for line in written[how]:
            line.pop("timestamp")
    assert written["quick"] == written["structlog"]
    keys = {how: [list(line) for line in lines] for how, lines in written.items()}
    assert keys["quick"] == keys["structlog"]
    assert len(written["quick"]) == (1 if to_file else 0)
    assert "a-secret-value" not in json.dumps(written) + shown["quick"]
    strip = re.compile(r"^\S+ ")  # the console's timestamp
    assert [strip.sub("", line) for line in shown["quick"].splitlines()] == [
        strip.sub("", line) for line in shown["structlog"].splitlines()
    ]
    assert ("row.attempt" in shown["quick"]) is (verbose >= 2)


def test_a_hot_path_debug_event_follows_a_configuration_made_since(tmp_path: Path) -> None:
    logs.setup(0, [], tmp_path)
    try:
        with capture_logs() as captured:
            logs.debug("row.finished", row_id="r1")
    finally:
        structlog.reset_defaults()
    assert captured == [{"row_id": "r1", "event": "row.finished", "log_level": "debug"}]
    assert "row.finished" not in (tmp_path / logs.RUN_LOG).read_text()
