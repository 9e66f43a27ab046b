"""The ``nanobatch`` commands that read or serve rather than run a job: verify, rename,
report, status, emulator and demo. Each only wires flags to its module and maps the result to
output and an exit code; ``cli`` registers them on the app after run and validate."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli import params as shared
from pipeline.cli.params import Manifest, NameTemplate, OutDir, OutputFormat, Sheet, Verbose
from pipeline.core.config import RunConfig
from pipeline.core.errors import NanobatchError, UsageError
from pipeline.core.logs import setup as setup_logging
from pipeline.core.options import check_out_dir

DEMO_FAULTS = "429=0.05,500=0.02,503=0.03,reset=0.01,truncate=0.01,unsafe=0.02,retry_delay=1"


def verify(
    out: OutDir,
    fix: Annotated[
        bool, typer.Option(help="Mark broken rows failed so a rerun remakes them")
    ] = False,
) -> None:
    """Check that succeeded rows' images exist, decode, match."""
    from pipeline.commands.verify import fix as fix_dir
    from pipeline.commands.verify import format_verify
    from pipeline.commands.verify import verify as verify_dir

    try:
        fixed = fix_dir(out) if fix else None
        result = fixed.found if fixed else verify_dir(out)
    except NanobatchError as e:
        raise shared.fail(e) from None
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
    from pipeline.commands.rename import rename as rename_rows

    try:
        config = RunConfig(manifest, out, name_template=name_template, sheet=sheet)
        done = rename_rows(config)
    except NanobatchError as e:
        raise shared.fail(e) from None
    typer.echo(f"renamed {done.files} files of {done.rows} rows; {done.unchanged} rows already "
               f"had their name, {len(done.skipped)} left as they were")  # fmt: skip
    for line in done.skipped[:20]:
        typer.echo(f"  row {line}")
    raise typer.Exit(1 if done.skipped else 0)


def report(out: OutDir) -> None:
    """Summarise a run and write its contact sheet, report.html."""
    from pipeline.commands.report import build_report, format_report

    try:
        found = build_report(out)
    except NanobatchError as e:
        raise shared.fail(e) from None
    _live_note(out)
    typer.echo(format_report(found, out))


def status(out: OutDir, output_format: OutputFormat = "text") -> None:
    """Show a directory's state: running, counts, spend, rerun."""
    from pipeline.commands.status import folder_status, format_status

    try:
        shared.check_format(output_format)
        shared.check_out_dir_exists(out)
        found = folder_status(out)
    except NanobatchError as e:
        raise shared.fail(e) from None
    text = json.dumps(found.to_json(), indent=1) if output_format == "json" else None
    typer.echo(text or format_status(found))


def _live_note(out: Path) -> None:
    """verify and report on a directory whose run is going, or crashed before its fold."""
    from pipeline.commands.status import live_note

    if note := live_note(out):
        shared.say_err(f"nanobatch: {note}")


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
    time_scale: Annotated[
        float, typer.Option(help="Multiply every emulated wait (0.01: an hour in 36 s)")
    ] = 1.0,
    batch_delay: Annotated[
        str, typer.Option(help="Batch job create-to-end seconds: SECONDS, uniform:, lognormal:")
    ] = "uniform:10-30",
    batch_faults: Annotated[
        str, typer.Option(help='e.g. "stuck=0.05,expire=0.02,late_file=0.2,line_error=0.01"')
    ] = "",
    batch_cancel_bills: Annotated[
        str, typer.Option(help="Does a cancelled batch bill its completed requests? yes|no")
    ] = "yes",
    flex_latency: Annotated[
        str, typer.Option(help="Flex tier latency, in the --latency syntax")
    ] = "lognormal:240:0.7",
    shed_status: Annotated[int, typer.Option(help="Status of a shed Flex request: 429|503")] = 503,
    no_flex: Annotated[str, typer.Option(help="Models that refuse Flex (comma-separated)")] = "",
    token_ttl: Annotated[float, typer.Option(help="Seconds an issued OAuth token lasts")] = 3600,
    bearer: Annotated[
        str, typer.Option(help="Vertex tokens accepted: any|issued (only ours, unexpired)")
    ] = "any",
    vertex_projects: Annotated[
        str, typer.Option(help="The only Vertex projects that exist (comma-separated)")
    ] = "",
    error_array: Annotated[
        float, typer.Option(help="Share of Vertex errors sent as a JSON array")
    ] = 0.0,
    chat_shape: Annotated[
        str, typer.Option(help="Chat gateway image shape: images|parts|markdown|link")
    ] = "images",
    chat_errors: Annotated[
        str, typer.Option(help="Chat gateway error convention: raw|upstream|mixed")
    ] = "raw",
    cut_answers_billed: Annotated[
        str, typer.Option(help="Bill an answer cut off after its 200 (reset, truncate)? no|yes")
    ] = "no",
) -> None:
    """Serve the local Gemini API emulator (no key, no cost)."""
    from pipeline.emulator import (
        EmulatorConfig,
        LatencySpec,
        parse_batch_delay,
        parse_batch_faults,
        parse_faults,
        parse_latency,
        serve,
    )

    def names(text: str) -> frozenset[str]:
        return frozenset(m.strip() for m in text.split(",") if m.strip())

    def flex_spec(text: str) -> LatencySpec:
        try:
            return parse_latency(text)
        except ValueError as e:
            raise ValueError(f"--flex-latency: {e}") from None

    def yes_no(flag: str, value: str) -> bool:
        if value not in ("yes", "no"):
            raise ValueError(f"{flag} must be yes or no, not {value!r}")
        return value == "yes"

    try:
        cancel_bills = yes_no("--batch-cancel-bills", batch_cancel_bills)
        cut_billed = yes_no("--cut-answers-billed", cut_answers_billed)
        config = EmulatorConfig(
            api_key=api_key,
            seed=seed,
            latency=parse_latency(latency),
            faults=parse_faults(faults),
            rpm=rpm,
            no_quota_models=names(no_quota),
            time_scale=time_scale,
            batch_delay=parse_batch_delay(batch_delay),
            batch_faults=parse_batch_faults(batch_faults),
            batch_cancel_bills=cancel_bills,
            flex_latency=flex_spec(flex_latency),
            shed_status=shed_status,
            no_flex_models=names(no_flex),
            token_ttl_s=token_ttl,
            bearer=bearer,
            vertex_projects=names(vertex_projects),
            error_array=error_array,
            chat_shape=chat_shape,
            chat_errors=chat_errors,
            cut_answers_billed=cut_billed,
        )
    except ValueError as e:
        raise shared.fail(UsageError(str(e))) from None
    serve(
        config,
        host,
        port,
        on_ready=lambda url: print(f"nanobatch emulator listening on {url}", flush=True),
    )


def demo(
    out: Annotated[Path, typer.Option(help="Output directory")] = Path("out/demo"),
    manifest: Annotated[Path, typer.Option(help="Demo manifest")] = Path("manifests/demo.csv"),
    concurrency: int = 16,
    faults: Annotated[str, typer.Option(help="Emulator fault mix")] = DEMO_FAULTS,
    verbose: Verbose = 0,
) -> None:
    """Run the demo job on a local emulator; again to see a resume."""
    from pipeline.commands.demo import run_demo

    try:
        check_out_dir(out)
    except NanobatchError as e:
        raise shared.fail(e) from None
    setup_logging(verbose, [], out)
    code = run_demo(out, manifest, concurrency, faults, sys.argv[1:], shared.say, shared.say_err)
    raise typer.Exit(code)
