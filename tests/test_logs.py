"""Which events reach the console, and that run.log keeps them all."""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog

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
