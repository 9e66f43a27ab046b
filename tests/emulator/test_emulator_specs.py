"""The --latency and --faults languages: what parses, what is refused and how it is explained."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.emulator import FaultKind, FaultSpec, LatencySpec, parse_faults, parse_latency
from pipeline.emulator.specs import LatencyShape


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("0", LatencySpec()),
        ("2.5", LatencySpec(LatencyShape.FIXED, 2.5)),
        ("uniform:1-4", LatencySpec(LatencyShape.UNIFORM, 1.0, 4.0)),
        (" uniform: 0.5 - 2 ", LatencySpec(LatencyShape.UNIFORM, 0.5, 2.0)),
        ("lognormal:12", LatencySpec(LatencyShape.LOGNORMAL, 12.0, 0.5)),
        ("lognormal:12:0.8", LatencySpec(LatencyShape.LOGNORMAL, 12.0, 0.8)),
        ("lognormal:12@size", LatencySpec(LatencyShape.LOGNORMAL, 12.0, 0.5, by_size=True)),
        ("lognormal:mean=12", LatencySpec(LatencyShape.LOGNORMAL, 12.0, 0.5)),
        ("lognormal:mean=12,sigma=0.8", LatencySpec(LatencyShape.LOGNORMAL, 12.0, 0.8)),
        ("3@size", LatencySpec(LatencyShape.FIXED, 3.0, by_size=True)),
    ],
)
def test_latency_specs_parse(spec: str, expected: LatencySpec) -> None:
    assert parse_latency(spec) == expected


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("", "empty"),
        ("fast", "'fast'"),
        ("-1", "'-1'"),
        ("uniform:4-1", "HIGH < LOW"),
        ("uniform:3", "'3'"),
        ("lognormal:0", "mean"),
        ("gamma:2", "'gamma'"),
        ("lognormal:median=3", "'median=3'"),
        ("2@region", "suffix"),
    ],
)
def test_bad_latency_spec_names_the_problem_and_the_grammar(spec: str, named: str) -> None:
    with pytest.raises(ValueError, match="expected SECONDS") as info:
        parse_latency(spec)
    message = str(info.value)
    assert named in message
    assert "\n" not in message


def test_fault_spec_from_the_issue_parses() -> None:
    spec = parse_faults(
        "429=0.2,500=0.05,503=0.05,504=0.01,reset=0.02,truncate=0.02,hang=0.01,block=0.01,unsafe=0.02"
    )
    assert spec.rate(FaultKind.RATE_LIMIT) == 0.2
    assert spec.rate(FaultKind.UNSAFE) == 0.02
    assert spec.rate(FaultKind.QUOTA_DAY) == 0.0
    assert spec.retry_delay_s == 5.0
    assert spec.hang_s == 900.0


def test_fault_spec_options_and_every_kind() -> None:
    items = ",".join(f"{kind.value}=0.01" for kind in FaultKind)
    spec = parse_faults(f"{items},retry_delay=2,hang_s=30")
    assert {kind for kind, _ in spec.rates} == set(FaultKind)
    assert (spec.retry_delay_s, spec.hang_s) == (2.0, 30.0)


@pytest.mark.parametrize("spec", ["", "none", "  NONE "])
def test_empty_fault_spec_means_no_faults(spec: str) -> None:
    assert parse_faults(spec) == FaultSpec()


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("418=0.1", "'418'"),
        ("429", "'429'"),
        ("429=lots", "'lots'"),
        ("429=1.5", "<= 1"),
        ("429=-0.1", "'-0.1'"),
        ("429=0.1,429=0.2", "twice"),
        ("429=0.6,503=0.6", "transient rates add up to 1.2"),
        ("unsafe=0.7,block=0.4", "refusal rates add up to 1.1"),
        ("retry_delay=soon", "'soon'"),
    ],
)
def test_bad_fault_spec_names_the_problem_and_the_grammar(spec: str, named: str) -> None:
    with pytest.raises(ValueError, match="expected KIND=RATE") as info:
        parse_faults(spec)
    assert named in str(info.value)
    assert "\n" not in str(info.value)


@given(st.text(max_size=60))
def test_parsers_raise_only_value_error(text: str) -> None:
    for parser in (parse_latency, parse_faults):
        with contextlib.suppress(ValueError):
            parser(text)
