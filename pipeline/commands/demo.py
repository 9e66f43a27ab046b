"""Rehearsals: ``nanobatch demo`` (the demo manifest against a local emulator process, then its
report; run it twice and the second run resumes, sending nothing) and ``run --emulate``'s
in-process emulator."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pipeline.commands.report import build_report
from pipeline.commands.run import run_and_report
from pipeline.core.config import ApiKey, RetryConfig, RunConfig
from pipeline.core.errors import UsageError
from pipeline.emulator import (
    EmulatorConfig,
    EmulatorProcess,
    EmulatorTransport,
    create_app,
    parse_faults,
    parse_latency,
)


def run_demo(  # noqa: PLR0917 (the command's own options, then where output goes)
    out: Path,
    manifest: Path,
    concurrency: int,
    faults: str,
    argv: list[str],
    echo: Callable[[str], None],
    err: Callable[[str], None],
) -> int:
    """Start the emulator, run the manifest into ``out``, write the report; the exit code."""
    with EmulatorProcess(
        ["--faults", faults, "--latency", "uniform:0.2-0.8", "--seed", "7"]
    ) as emu:
        echo(f"emulator: {emu.base_url} (faults: {faults})")
        config = RunConfig(
            manifest=manifest,
            out_dir=out,
            concurrency=concurrency,
            base_url=emu.base_url,
            api_key=ApiKey("demo-key", "demo"),
            retry=RetryConfig(backoff_base_s=0.5, backoff_cap_s=5.0, jitter_s=0.3),
            handle_signals=True,
        )
        code = run_and_report(config, None, argv=argv, out=echo, err=err)
        if (out / "ledger.parquet").exists():
            echo(f"contact sheet: {build_report(out).html}")
        stats = emu.stats()
        echo(
            f"emulator saw {stats['requests']} requests this run "
            f"(billed {stats['billed']}, refused {stats['refused']}, "
            f"early retries {stats['early_retries']}, "
            f"billed duplicates {stats['billed_duplicates']})"
        )
    return code


def emulator_transport(faults: str, latency: str) -> EmulatorTransport:
    """``--emulate``: the emulator in-process, shaped by ``--emulate-faults/-latency``."""
    try:
        config = EmulatorConfig(faults=parse_faults(faults), latency=parse_latency(latency))
    except ValueError as e:
        raise UsageError(str(e)) from None
    return EmulatorTransport(create_app(config))
