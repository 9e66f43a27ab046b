"""``--batch-delay`` and ``--batch-faults``: what they accept and how they refuse."""

from __future__ import annotations

import pytest

from pipeline.emulator import BatchFault, BatchFaultSpec, parse_batch_delay, parse_batch_faults
from pipeline.emulator.specs import LatencyShape


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("", BatchFaultSpec()),
        ("none", BatchFaultSpec()),
        (
            "stuck=0.1, late_file=0.5,late_file_s=120",
            BatchFaultSpec(
                rates=((BatchFault.STUCK, 0.1), (BatchFault.LATE_FILE, 0.5)), late_file_s=120
            ),
        ),
        (
            "line_error=1,expire=0.5,fail=0.5",
            BatchFaultSpec(
                rates=(
                    (BatchFault.EXPIRE, 0.5),
                    (BatchFault.FAIL, 0.5),
                    (BatchFault.LINE_ERROR, 1.0),
                )
            ),
        ),
    ],
)
def test_batch_faults_parse(spec: str, expected: BatchFaultSpec) -> None:
    assert parse_batch_faults(spec) == expected


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ("stuck", "not KEY=VALUE"),
        ("slow=0.1", "unknown kind 'slow'"),
        ("stuck=2", "rate must be <= 1"),
        ("stuck=x", "not a number"),
        ("stuck=-1", "must be >= 0"),
        ("stuck=0.1,stuck=0.2", "given twice"),
        ("stuck=0.6,fail=0.6", "add up to 1.2 > 1"),
    ],
)
def test_bad_batch_faults_say_what_is_wrong(spec: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_batch_faults(spec)


def test_batch_delay_takes_the_latency_grammar_without_size() -> None:
    assert parse_batch_delay("lognormal:3600:0.8").shape is LatencyShape.LOGNORMAL
    assert parse_batch_delay("uniform:60-600").b == 600
    with pytest.raises(ValueError, match="@size"):
        parse_batch_delay("60@size")
