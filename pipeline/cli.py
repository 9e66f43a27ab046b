"""The ``nanobatch`` command: the only place that reads argv and the environment, sets up
logging, calls ``anyio.run`` (through ``runner``) and maps errors to exit codes."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import httpx
import typer

from pipeline.config import GEMINI_BASE_URL, ApiKey, AuthStyle, RetryConfig, RunConfig
from pipeline.errors import NanobatchError, UsageError
from pipeline.logs import TERMINAL
from pipeline.logs import setup as setup_logging
from pipeline.models import DEFAULT_MODEL
from pipeline.options import (
    check_out_dir,
    parse_rerun,
    parse_rerun_before,
    parse_stop,
    parse_timeouts,
)
from pipeline.prices import PriceTable
from pipeline.sources import MAX_IMAGE_MIB

app = typer.Typer(
    add_completion=False,
    rich_markup_mode=None,  # plain help: it wraps to the terminal, readable at 80 columns
    no_args_is_help=True,
    help="Generate images in bulk with Gemini's image models, resumably.",
)

EMULATED_BASE_URL = "http://emulator.invalid"
DEMO_FAULTS = "429=0.05,500=0.02,503=0.03,reset=0.01,truncate=0.01,unsafe=0.02,retry_delay=1"

# Options shared by run and validate: one declaration each.
Manifest = Annotated[Path, typer.Argument(
    metavar="MANIFEST", help="CSV, TSV, xlsx or Parquet file, one row per image")]  # fmt: skip
IdColumn = Annotated[str | None, typer.Option(
    metavar="COL", help="Column of row ids (default: one named id, sku or key)")]  # fmt: skip
Sheet = Annotated[str | None, typer.Option(
    metavar="NAME", help="xlsx: the sheet to read (default: the first)")]  # fmt: skip
OutDir = Annotated[Path, typer.Argument(metavar="DIR", help="Output directory of a run")]
Model = Annotated[str, typer.Option(metavar="M", help="Default model for rows without one")]
ImageSize = Annotated[str | None, typer.Option(metavar="S", help="512, 1K, 2K or 4K")]
AspectRatio = Annotated[str | None, typer.Option(metavar="R", help="e.g. 1:1, 16:9")]
Limit = Annotated[int | None, typer.Option(metavar="N", min=1, help="Only the first N rows")]
Ids = Annotated[Path | None, typer.Option(metavar="FILE", help="Only the row ids in FILE")]
PromptTemplate = Annotated[str | None, typer.Option(
    metavar="T", help='Prompt from columns, e.g. "Photo of {title} in {colour}"')]  # fmt: skip
NameTemplate = Annotated[str | None, typer.Option(
    metavar="T", help='Output file names from columns, e.g. "{sku}-{variant}"')]  # fmt: skip
FitImages = Annotated[bool, typer.Option(
    help=f"Downscale source images over {MAX_IMAGE_MIB} MiB instead of rejecting them"
)]  # fmt: skip
Prices = Annotated[Path | None, typer.Option(metavar="FILE", help="JSON price table")]
PreviewOut = Annotated[Path | None, typer.Option(
    "--out", metavar="DIR", help="Also what a run on DIR would send now and cost")]  # fmt: skip
OutputFormat = Annotated[str, typer.Option("--format", help="text or json (for scripts)")]
Verbose = Annotated[int, typer.Option(
    "--verbose", "-v", count=True, help="-v: info, -vv: every attempt (run.log: all)")]  # fmt: skip


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


def _err(line: str) -> None:
    TERMINAL.say(line, err=True)


def _out(line: str) -> None:
    TERMINAL.say(line)


def _check_format(output_format: str) -> None:
    if output_format not in ("text", "json"):
        raise UsageError(f"--format {output_format!r}: use text or json")


@app.command(options_metavar="--out DIR [OPTIONS]")
def run(
    manifest: Manifest,
    out: Annotated[
        Path, typer.Option("--out", metavar="DIR", help="Output directory (images + ledger)")
    ],
    model: Model = DEFAULT_MODEL,
    image_size: ImageSize = None,
    aspect_ratio: AspectRatio = None,
    concurrency: Annotated[int, typer.Option(metavar="N", min=1, max=1024)] = 16,
    rpm: Annotated[float | None, typer.Option(help="Requests per minute ceiling")] = None,
    base_url: Annotated[str | None, typer.Option(help="API base URL (gateways)")] = None,
    api_key: Annotated[str | None, typer.Option(help="Else GEMINI_API_KEY, GOOGLE_API_KEY")] = None,
    auth: Annotated[
        AuthStyle, typer.Option(help="How to send the key: header (Google), bearer, query")
    ] = AuthStyle.HEADER,
    limit: Limit = None,
    ids: Ids = None,
    id_column: IdColumn = None,
    sheet: Sheet = None,
    rerun: Annotated[
        str,
        typer.Option(
            metavar="WHAT",
            help="Finished rows to send again: failed, refused, succeeded, all, none, "
            "or a mix such as failed,refused",
        ),
    ] = "failed",
    rerun_before: Annotated[
        str | None,
        typer.Option(
            metavar="TIME",
            help="With --rerun succeeded/refused/all: leave rows that finished at or after "
            "TIME (ISO 8601) alone; the printed command to continue sets it",
        ),
    ] = None,
    prompt_template: PromptTemplate = None,
    name_template: NameTemplate = None,
    fit_images: FitImages = False,
    strict: Annotated[
        bool, typer.Option(help="Stop before any request if a row is invalid")
    ] = False,
    max_cost: Annotated[
        float | None, typer.Option(min=0.0, help="Spending cap in USD: never committed past it")
    ] = None,
    prices: Prices = None,
    follow_image_links: Annotated[
        bool,
        typer.Option(help="Fetch image links in answers, for gateways that answer with links"),
    ] = False,
    max_attempts: Annotated[int, typer.Option(min=1, help="Attempts per row on errors")] = 5,
    backoff_base: Annotated[
        float, typer.Option(min=0.0, help="First backoff in seconds; doubles, capped at 60")
    ] = 3.0,
    retry_refused: Annotated[
        bool,
        typer.Option(
            help="Also send refused rows again (adds refused to --rerun); Google bills "
            "refusals $0, gateways may bill them"
        ),
    ] = False,
    on_quota: Annotated[
        str, typer.Option(help="Daily quota used up: stop (default) or wait for the reset")
    ] = "stop",
    timeouts: Annotated[
        str, typer.Option(help="Per-size request timeouts, e.g. 4K=600 (default 120/120/180/360)")
    ] = "",
    stop_after: Annotated[
        str | None, typer.Option(help="Drain and stop after this long, e.g. 7h, 45m")
    ] = None,
    stop_at: Annotated[
        str | None, typer.Option(help="Drain and stop at this local time, HH:MM")
    ] = None,
    drain_grace: Annotated[
        float,
        typer.Option(
            min=0.0, help="Seconds a stop waits for in-flight requests before abandoning them"
        ),
    ] = 60.0,
    progress_every: Annotated[
        float, typer.Option(help="Seconds between progress lines when not on a terminal")
    ] = 30.0,
    emulate: Annotated[bool, typer.Option(help="Rehearse against an in-process emulator")] = False,
    emulate_faults: Annotated[str, typer.Option(help="--faults SPEC of the emulator")] = "",
    emulate_latency: Annotated[str, typer.Option(help="--latency SPEC of the emulator")] = "0",
    verbose: Verbose = 0,
) -> None:
    """Generate an image for each pending row; reruns resume."""
    key = _api_key(api_key)
    url = base_url or os.environ.get("GOOGLE_GEMINI_BASE_URL") or GEMINI_BASE_URL
    transport: httpx.AsyncBaseTransport | None = None
    try:
        check_out_dir(out)
        setup_logging(verbose, [key.reveal()] if key else [], out)
        if emulate:
            from pipeline.demo import emulator_transport

            transport = emulator_transport(emulate_faults, emulate_latency)
            url, key = EMULATED_BASE_URL, ApiKey("emulated", "--emulate")
        elif key is None:
            raise UsageError(
                "no API key: set GEMINI_API_KEY (or GOOGLE_API_KEY), pass --api-key, "
                "or rehearse with --emulate"
            )
        if on_quota not in ("stop", "wait"):
            raise UsageError(f"--on-quota {on_quota!r}: use stop or wait")
        config = RunConfig(
            manifest=manifest,
            out_dir=out,
            model=model,
            image_size=image_size,
            aspect_ratio=aspect_ratio,
            concurrency=concurrency,
            rpm=rpm,
            base_url=url,
            api_key=key,
            auth=auth,
            limit=limit,
            ids_file=ids,
            id_column=id_column,
            sheet=sheet,
            rerun=parse_rerun(rerun, retry_refused=retry_refused),
            rerun_before=parse_rerun_before(rerun_before),
            prompt_template=prompt_template,
            name_template=name_template,
            fit_images=fit_images,
            follow_image_links=follow_image_links,
            strict=strict,
            max_cost_usd=max_cost,
            prices=PriceTable.load(prices),
            retry=RetryConfig(
                max_attempts=max_attempts,
                backoff_base_s=backoff_base,
                jitter_s=min(1.0, backoff_base),
                wait_for_daily_quota=on_quota == "wait",
                timeouts_s=parse_timeouts(timeouts),
            ),
            stop_at=parse_stop(stop_after, stop_at),
            handle_signals=True,
            drain_grace_s=drain_grace,
        )
    except NanobatchError as e:
        raise _fail(e) from None
    from pipeline.runner import run_and_report  # the run machinery: only when running

    raise typer.Exit(run_and_report(config, transport, argv=sys.argv[1:], out=_out,
                                    err=_err, progress_every_s=progress_every))  # fmt: skip


@app.command()
def validate(
    manifest: Manifest,
    model: Model = DEFAULT_MODEL,
    image_size: ImageSize = None,
    aspect_ratio: AspectRatio = None,
    limit: Limit = None,
    ids: Ids = None,
    id_column: IdColumn = None,
    sheet: Sheet = None,
    prompt_template: PromptTemplate = None,
    name_template: NameTemplate = None,
    fit_images: FitImages = False,
    prices: Prices = None,
    output_format: OutputFormat = "text",
    out: PreviewOut = None,
    verbose: Verbose = 0,
) -> None:
    """Check every row and estimate the cost; sends nothing."""
    from pipeline.preview import format_preview, preview
    from pipeline.validate import format_validation
    from pipeline.validate import validate as validate_manifest

    setup_logging(verbose, [])
    try:
        _check_format(output_format)
        table = PriceTable.load(prices)
        config = RunConfig(
            manifest=manifest,
            out_dir=Path("."),
            model=model,
            image_size=image_size,
            aspect_ratio=aspect_ratio,
            limit=limit,
            ids_file=ids,
            id_column=id_column,
            sheet=sheet,
            prompt_template=prompt_template,
            name_template=name_template,
            fit_images=fit_images,
        )
        found = validate_manifest(config, table)
        ahead = preview(replace(config, out_dir=out), table) if out and not found.problems else None
    except NanobatchError as e:
        raise _fail(e) from None
    if output_format == "json":
        extra = {"out": ahead.to_json()} if ahead else {}
        typer.echo(json.dumps(found.to_json(table) | extra, indent=1))
    else:
        typer.echo(format_validation(found, table, manifest))
        if ahead and out:
            typer.echo(format_preview(ahead, out))
    if found.problems:  # a run would stop on these before sending anything
        _err(f"nanobatch: {manifest}: " + "; ".join(found.problems))
    raise typer.Exit(2 if found.invalid_count or found.problems else 0)


@app.command()
def verify(
    out: OutDir,
    fix: Annotated[
        bool, typer.Option(help="Mark broken rows failed so a rerun remakes them")
    ] = False,
) -> None:
    """Check that succeeded rows' images exist, decode, match."""
    from pipeline.verify import fix as fix_dir
    from pipeline.verify import format_verify
    from pipeline.verify import verify as verify_dir

    try:
        fixed = fix_dir(out) if fix else None
        result = fixed.found if fixed else verify_dir(out)
    except NanobatchError as e:
        raise _fail(e) from None
    _live_note(out)
    typer.echo(format_verify(result))
    if fixed:
        typer.echo(
            f"fixed: {fixed.fixed} rows marked failed (VERIFY_FAILED; a rerun remakes them), "
            f"damaged files moved to {out / 'broken'}, "
            f"{fixed.strays_moved} stray files to {out / 'orphans'}"
        )
    elif result.problems or result.unreferenced:
        typer.echo(f"run `nanobatch verify {out} --fix` to have the next run remake broken rows")
    if not result.problems and not result.unreferenced:
        typer.echo("all intact")
    raise typer.Exit(1 if result.problems or result.unreferenced else 0)


@app.command()
def rename(
    manifest: Manifest,
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="Output directory of a run")],
    name_template: NameTemplate = None,
    sheet: Sheet = None,
) -> None:
    """Rename finished rows' images as the manifest names them now.

    The names come from the manifest and --name-template. Sends nothing; the ledger records
    the new paths. Exit 1 if some rows could not be renamed.
    """
    from pipeline.rename import rename as rename_rows

    try:
        config = RunConfig(manifest, out, name_template=name_template, sheet=sheet)
        done = rename_rows(config)
    except NanobatchError as e:
        raise _fail(e) from None
    typer.echo(f"renamed {done.files} files of {done.rows} rows; {done.unchanged} rows already "
               f"had their name, {len(done.skipped)} left as they were")  # fmt: skip
    for line in done.skipped[:20]:
        typer.echo(f"  row {line}")
    raise typer.Exit(1 if done.skipped else 0)


@app.command()
def report(out: OutDir) -> None:
    """Summarise a run and write its contact sheet, report.html."""
    from pipeline.report import build_report, format_report

    try:
        found = build_report(out)
    except NanobatchError as e:
        raise _fail(e) from None
    _live_note(out)
    typer.echo(format_report(found, out))


@app.command()
def status(out: OutDir, output_format: OutputFormat = "text") -> None:
    """Show a directory's state: running, counts, spend, rerun."""
    from pipeline.status import folder_status, format_status

    try:
        _check_format(output_format)
        found = folder_status(out)
    except NanobatchError as e:
        raise _fail(e) from None
    text = json.dumps(found.to_json(), indent=1) if output_format == "json" else None
    typer.echo(text or format_status(found))


def _live_note(out: Path) -> None:
    """verify and report on a directory whose run is going, or crashed before its fold."""
    from pipeline.status import live_note

    if note := live_note(out):
        _err(f"nanobatch: {note}")


@app.command()
def emulator(
    host: str = "127.0.0.1",
    port: int = 8080,
    latency: Annotated[
        str,
        typer.Option(
            help="SECONDS, uniform:LOW-HIGH or lognormal:MEAN[:SIGMA], each optionally @size"
        ),
    ] = "0",
    faults: Annotated[str, typer.Option(help='e.g. "429=0.2,500=0.05,unsafe=0.02"')] = "",
    rpm: Annotated[int | None, typer.Option(help="Per-minute limit (sliding window)")] = None,
    api_key: Annotated[str | None, typer.Option(help="Accept only this key")] = None,
    seed: int = 0,
    no_quota: Annotated[
        str, typer.Option(help="Models with a quota of 0 here (comma-separated): always 429")
    ] = "",
) -> None:
    """Serve the local Gemini API emulator (no key, no cost)."""
    from pipeline.emulator import EmulatorConfig, parse_faults, parse_latency, serve

    try:
        config = EmulatorConfig(
            api_key=api_key,
            seed=seed,
            latency=parse_latency(latency),
            faults=parse_faults(faults),
            rpm=rpm,
            no_quota_models=frozenset(m.strip() for m in no_quota.split(",") if m.strip()),
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
    verbose: Verbose = 0,
) -> None:
    """Run the demo job on a local emulator; again to see a resume."""
    from pipeline.demo import run_demo

    try:
        check_out_dir(out)
    except NanobatchError as e:
        raise _fail(e) from None
    setup_logging(verbose, [], out)
    raise typer.Exit(run_demo(out, manifest, concurrency, faults, sys.argv[1:], _out, _err))


def main() -> None:
    """Console script entry point."""
    app()
