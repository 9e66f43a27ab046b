"""The ``nanobatch`` command: the only place that reads argv and the environment, sets up
logging, calls ``anyio.run`` and maps errors to exit codes."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import anyio
import httpx
import typer

from pipeline.config import (
    GEMINI_BASE_URL,
    ApiKey,
    AuthStyle,
    RetryConfig,
    RunConfig,
)
from pipeline.control import Halt
from pipeline.errors import NanobatchError, RunStopped, UsageError
from pipeline.ledger import Ledger
from pipeline.logs import setup as setup_logging
from pipeline.manifest import count_rows
from pipeline.models import DEFAULT_MODEL
from pipeline.options import continue_command, parse_rerun, parse_stop, parse_timeouts
from pipeline.progress import ProgressReporter
from pipeline.result import RunResult
from pipeline.scheduler import run_manifest
from pipeline.summary import format_summary
from pipeline.types import Status

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Generate images in bulk with Gemini's image models, resumably.",
)

EMULATED_BASE_URL = "http://emulator.invalid"
DEMO_FAULTS = "429=0.05,500=0.02,503=0.03,reset=0.01,truncate=0.01,unsafe=0.02,retry_delay=1"


def _api_key(flag: str | None) -> ApiKey | None:
    if flag:
        return ApiKey(flag, "--api-key")
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY"):
        if value := os.environ.get(name, "").strip():
            return ApiKey(value, name)
    return None


def _fail(error: NanobatchError) -> typer.Exit:
    typer.echo(f"nanobatch: {error}", err=True)
    return typer.Exit(error.exit_code)


def _stop_message(result: RunResult, key: ApiKey | None, base_url: str) -> str:
    stopped = result.stopped
    assert stopped is not None
    source = f"the key from {key.source}" if key else "no API key"
    detail = f": {stopped.message}" if stopped.message else ""
    what = {
        "API_KEY_INVALID": f"the API rejected {source}",
        "UNAUTHENTICATED": f"the API did not accept {source}",
        "PERMISSION_DENIED": f"{source} has no permission for this model at {base_url}",
        "MODEL_NOT_FOUND": "the model does not exist at this endpoint (check --model)",
        "QUOTA_EXHAUSTED": "the daily quota is used up; rerun after it resets",
        "FAILED_PRECONDITION": "the project cannot use this API (billing or region)",
    }.get(stopped.reason, f"the API stopped the run ({stopped.reason})")
    return f"run stopped: {what}{detail}. Unfinished rows stay pending; rerun to continue."


def run_and_report(
    config: RunConfig,
    transport: httpx.AsyncBaseTransport | None = None,
    *,
    progress_every_s: float = 30.0,
) -> int:
    """Run with a progress view, print the summary, and return the exit code."""
    reporter = ProgressReporter(
        config.out_dir,
        emit=lambda line: typer.echo(line, err=True),
        line_every_s=progress_every_s,
    )
    try:
        result = anyio.run(run_manifest, config, transport, [reporter.run])
    except NanobatchError as e:
        typer.echo(f"nanobatch: {e}", err=True)
        return e.exit_code
    except KeyboardInterrupt:
        typer.echo("nanobatch: interrupted; finished rows are saved, rerun to continue", err=True)
        return 130
    reporter.write_status(result)
    typer.echo(format_summary(result, config.out_dir))
    if result.halt is Halt.API and result.stopped is not None:
        typer.echo(f"nanobatch: {_stop_message(result, config.api_key, config.base_url)}", err=True)
        return RunStopped.exit_code
    if result.halt is not None:
        why = {
            Halt.COST_CAP: "the spending cap was reached",
            Halt.DEADLINE: "the deadline was reached",
            Halt.INTERRUPTED: "interrupted",
            Halt.API: "the API stopped the run",
        }[result.halt]
        left = pending_rows(config)
        again = continue_command(sys.argv[1:])
        typer.echo(f"nanobatch: stopped: {why}; {left} rows left. To continue: {again}", err=True)
        return HALT_EXIT_CODES[result.halt]
    return 1 if result.by_status.get(Status.FAILED.value) else 0


HALT_EXIT_CODES = {Halt.API: 3, Halt.COST_CAP: 4, Halt.DEADLINE: 4, Halt.INTERRUPTED: 130}


def pending_rows(config: RunConfig) -> int:
    """Manifest rows (within --limit) not yet succeeded or refused."""
    from pipeline.plan import done_rows

    total = count_rows(config.manifest, config.batch_rows, config.limit)
    ledger = Ledger(config.out_dir)
    return max(0, total - len(done_rows(ledger, frozenset({Status.FAILED}))))


@app.command()
def run(
    manifest: Annotated[Path, typer.Argument(help="CSV or Parquet manifest, one row per image")],
    out: Annotated[Path, typer.Option("--out", help="Output directory (images + ledger)")],
    model: Annotated[str, typer.Option(help="Default model for rows without one")] = DEFAULT_MODEL,
    image_size: Annotated[str | None, typer.Option(help="512, 1K, 2K or 4K")] = None,
    aspect_ratio: Annotated[str | None, typer.Option(help="e.g. 1:1, 16:9")] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=1024)] = 16,
    rpm: Annotated[float | None, typer.Option(help="Requests per minute ceiling")] = None,
    base_url: Annotated[str | None, typer.Option(help="API base URL (gateways)")] = None,
    api_key: Annotated[str | None, typer.Option(help="Else GEMINI_API_KEY, GOOGLE_API_KEY")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N rows")] = None,
    max_attempts: Annotated[int, typer.Option(min=1, help="Attempts per row on errors")] = 5,
    backoff_base: Annotated[
        float, typer.Option(min=0.0, help="First backoff in seconds; doubles, capped at 60")
    ] = 3.0,
    retry_refused: Annotated[bool, typer.Option(help="Resend refused rows (billed)")] = False,
    on_quota: Annotated[
        str, typer.Option(help="Daily quota used up: stop (default) or wait for the reset")
    ] = "stop",
    timeouts: Annotated[
        str, typer.Option(help="Per-size request timeouts, e.g. 4K=600 (default 120/120/180/360)")
    ] = "",
    auth: Annotated[
        AuthStyle, typer.Option(help="How to send the key: header (Google), bearer, query")
    ] = AuthStyle.HEADER,
    rerun: Annotated[
        str, typer.Option(help="Finished rows to send again: failed, refused, succeeded, all")
    ] = "failed",
    ids: Annotated[Path | None, typer.Option(help="File of row ids to restrict the run to")] = None,
    prompt_template: Annotated[
        str | None, typer.Option(help='Prompt from columns, e.g. "Photo of {title} in {colour}"')
    ] = None,
    name_template: Annotated[
        str | None, typer.Option(help='Output file names from columns, e.g. "{sku}-{variant}"')
    ] = None,
    fit_images: Annotated[
        bool, typer.Option(help="Downscale source images over 7 MB instead of rejecting them")
    ] = False,
    strict: Annotated[
        bool, typer.Option(help="Stop before any request if any row is invalid")
    ] = False,
    stop_after: Annotated[
        str | None, typer.Option(help="Drain and stop after this long, e.g. 7h, 45m")
    ] = None,
    stop_at: Annotated[
        str | None, typer.Option(help="Drain and stop at this local time, HH:MM")
    ] = None,
    progress_every: Annotated[
        float, typer.Option(help="Seconds between progress lines when not on a terminal")
    ] = 30.0,
    emulate: Annotated[bool, typer.Option(help="Rehearse against an in-process emulator")] = False,
    emulate_faults: Annotated[str, typer.Option(help="Fault spec for --emulate")] = "",
    emulate_latency: Annotated[str, typer.Option(help="Latency spec for --emulate")] = "0",
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True)] = 0,
) -> None:
    """Generate an image for every pending row of MANIFEST into --out; reruns resume."""
    transport: httpx.AsyncBaseTransport | None = None
    key = _api_key(api_key)
    setup_logging(verbose, [key.reveal()] if key else [], out)
    url = base_url or os.environ.get("GOOGLE_GEMINI_BASE_URL") or GEMINI_BASE_URL
    if emulate:
        from pipeline.emulator import (
            EmulatorConfig,
            EmulatorTransport,
            create_app,
            parse_faults,
            parse_latency,
        )

        try:
            emulator = EmulatorConfig(
                faults=parse_faults(emulate_faults), latency=parse_latency(emulate_latency)
            )
        except ValueError as e:
            raise _fail(UsageError(str(e))) from None
        transport = EmulatorTransport(create_app(emulator))
        url, key = EMULATED_BASE_URL, ApiKey("emulated", "--emulate")
    elif key is None:
        raise _fail(
            UsageError(
                "no API key: set GEMINI_API_KEY (or GOOGLE_API_KEY), pass --api-key, "
                "or rehearse with --emulate"
            )
        )
    try:
        rerun_statuses = parse_rerun(rerun)
        timeout_table = parse_timeouts(timeouts)
        deadline = parse_stop(stop_after, stop_at)
        if on_quota not in ("stop", "wait"):
            raise UsageError(f"--on-quota {on_quota!r}: use stop or wait")
    except UsageError as e:
        raise _fail(e) from None
    config = RunConfig(
        manifest=manifest,
        out_dir=out,
        rerun=rerun_statuses,
        ids_file=ids,
        prompt_template=prompt_template,
        name_template=name_template,
        fit_images=fit_images,
        strict=strict,
        stop_at=deadline,
        handle_signals=True,
        model=model,
        image_size=image_size,
        aspect_ratio=aspect_ratio,
        concurrency=concurrency,
        rpm=rpm,
        base_url=url,
        api_key=key,
        limit=limit,
        auth=auth,
        retry=RetryConfig(
            max_attempts=max_attempts,
            backoff_base_s=backoff_base,
            jitter_s=min(1.0, backoff_base),
            retry_refused=retry_refused,
            wait_for_daily_quota=on_quota == "wait",
            timeouts_s=timeout_table,
        ),
    )
    raise typer.Exit(run_and_report(config, transport, progress_every_s=progress_every))


@app.command()
def verify(
    out: Annotated[Path, typer.Argument(help="Output directory of a run")],
    fix: Annotated[
        bool, typer.Option(help="Mark broken rows failed so a rerun remakes them")
    ] = False,
) -> None:
    """Check that every succeeded row's files exist, decode and match their sha256."""
    from pipeline.recovery import set_aside
    from pipeline.verify import fix as fix_rows
    from pipeline.verify import verify as verify_dir

    try:
        result = verify_dir(out)
    except NanobatchError as e:
        raise _fail(e) from None
    typer.echo(f"checked {result.checked_files} files of {result.checked_rows} succeeded rows")
    for problem in result.problems[:50]:
        typer.echo(f"  row {problem.row_id}: {problem.path or '-'} {problem.what}")
    if len(result.problems) > 50:
        typer.echo(f"  ... and {len(result.problems) - 50} more")
    if result.unreferenced:
        typer.echo(f"  {len(result.unreferenced)} files under images/ belong to no ledger row")
    if fix:
        try:
            fixed = fix_rows(out, result.problems)
        except NanobatchError as e:
            raise _fail(e) from None
        moved = set_aside(out, {"": result.unreferenced})
        typer.echo(
            f"fixed: {fixed} rows marked failed (VERIFY_FAILED; a rerun remakes them), "
            f"damaged files moved to {out / 'broken'}, {moved} stray files to {out / 'orphans'}"
        )
    elif result.problems or result.unreferenced:
        typer.echo(f"run `nanobatch verify {out} --fix` to have the next run remake broken rows")
    if not result.problems and not result.unreferenced:
        typer.echo("all intact")
    raise typer.Exit(1 if result.problems or result.unreferenced else 0)


@app.command()
def emulator(
    host: str = "127.0.0.1",
    port: int = 8080,
    latency: Annotated[str, typer.Option(help="Seconds, uniform:A-B or lognormal:mean=M")] = "0",
    faults: Annotated[str, typer.Option(help='e.g. "429=0.2,500=0.05,unsafe=0.02"')] = "",
    rpm: Annotated[int | None, typer.Option(help="Per-minute limit (sliding window)")] = None,
    api_key: Annotated[str | None, typer.Option(help="Accept only this key")] = None,
    seed: int = 0,
) -> None:
    """Serve the local Gemini API emulator (no key, no network, no cost)."""
    from pipeline.emulator import EmulatorConfig, parse_faults, parse_latency, serve

    try:
        config = EmulatorConfig(
            api_key=api_key,
            seed=seed,
            latency=parse_latency(latency),
            faults=parse_faults(faults),
            rpm=rpm,
        )
    except ValueError as e:
        raise _fail(UsageError(str(e))) from None
    serve(
        config,
        host,
        port,
        on_ready=lambda url: print(f"nanobatch emulator listening on {url}", flush=True),
    )


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Output directory")] = Path("out/demo"),
    manifest: Annotated[Path, typer.Option(help="Demo manifest")] = Path("manifests/demo.csv"),
    concurrency: int = 16,
    faults: Annotated[str, typer.Option(help="Emulator fault mix")] = DEMO_FAULTS,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True)] = 0,
) -> None:
    """Run the demo manifest against a local emulator process; run it again to see a resume."""
    from pipeline.emulator import EmulatorProcess

    setup_logging(verbose, [], out)
    with EmulatorProcess(
        ["--faults", faults, "--latency", "uniform:0.2-0.8", "--seed", "7"]
    ) as emu:
        typer.echo(f"emulator: {emu.base_url} (faults: {faults})")
        config = RunConfig(
            manifest=manifest,
            out_dir=out,
            concurrency=concurrency,
            base_url=emu.base_url,
            api_key=ApiKey("demo-key", "demo"),
            retry=RetryConfig(backoff_base_s=0.5, backoff_cap_s=5.0, jitter_s=0.3),
        )
        code = run_and_report(config)
        stats = emu.stats()
        typer.echo(
            f"emulator saw {stats['requests']} requests this run "
            f"(billed {stats['billed']}, refused {stats['refused']}, "
            f"early retries {stats['early_retries']}, "
            f"billed duplicates {stats['billed_duplicates']})"
        )
    raise typer.Exit(code)


def main() -> None:
    """Console script entry point."""
    app()
