"""What the ``nanobatch`` commands share: option declarations (one each, so run, validate and
the small commands describe a flag the same way), the one-line user error, terminal output."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.core.errors import NanobatchError, UsageError
from pipeline.core.logs import TERMINAL
from pipeline.plan.sources import MAX_IMAGE_MIB

# Options shared by the commands: one declaration each.
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
BaseUrl = Annotated[str | None, typer.Option(
    help="API base URL (gateways); openai-chat: the base before /chat/completions")]  # fmt: skip
ApiKeyFlag = Annotated[str | None, typer.Option(
    "--api-key", help="Else GEMINI_API_KEY, GOOGLE_API_KEY; openai-chat: NANOBATCH_GATEWAY_KEY"
)]  # fmt: skip
Prices = Annotated[Path | None, typer.Option(metavar="FILE", help="JSON price table")]
Concurrency = Annotated[int | None, typer.Option(metavar="N", min=1, max=1024, help=(
    "Requests in flight at most (default 16; with --tier flex 128: Flex answers take ~8x "
    "as long, so the same rows/hour at the same requests/minute)"))]  # fmt: skip
Timeouts = Annotated[str, typer.Option(help=(
    "Request timeouts per size and tier, e.g. 4K=600,flex=1800 (default 512/1K 120, 2K 180, "
    "4K 360; flex 1200: Flex may hold a request ~15 min)"))]  # fmt: skip
TierName = Annotated[str, typer.Option("--tier", metavar="TIER", help=(
    "standard, flex (half price, answers within ~15 min or shed) or priority (dearer); "
    "a row's tier column wins"))]  # fmt: skip
TierFallback = Annotated[str | None, typer.Option(metavar="TIER", help=(
    "standard: resend at the standard price rows Flex keeps shedding, or whose tier the "
    "route refuses (else they fail, or the run stops)"))]  # fmt: skip
StopAfter = Annotated[str | None, typer.Option(
    help="Drain and stop after this long, e.g. 7h, 45m")]  # fmt: skip
StopAt = Annotated[str | None, typer.Option(help="Drain and stop at this local time, HH:MM")]
DrainGrace = Annotated[float, typer.Option(min=0.0, help=(
    "Seconds a stop waits for in-flight requests before abandoning them"))]  # fmt: skip
ProgressEvery = Annotated[float, typer.Option(
    help="Seconds between progress lines when not on a terminal")]  # fmt: skip
Rerun = Annotated[str, typer.Option(metavar="WHAT", help=(
    "Finished rows to send again: failed, refused, succeeded, all, none, or a mix such as "
    "failed,refused"))]  # fmt: skip
RerunBefore = Annotated[str | None, typer.Option(metavar="TIME", help=(
    "With --rerun succeeded/refused/all: leave rows that finished at or after TIME (ISO "
    "8601) alone; the printed command to continue sets it"))]  # fmt: skip
RetryRefused = Annotated[bool, typer.Option(help=(
    "Also send refused rows again (adds refused to --rerun); Google bills refusals $0, "
    "gateways may bill them"))]  # fmt: skip
ProviderName = Annotated[str | None, typer.Option("--provider", metavar="ROUTE", help=(
    "gemini (default), vertex or openai-chat; else GOOGLE_GENAI_USE_ENTERPRISE / "
    "GOOGLE_GENAI_USE_VERTEXAI select vertex"))]  # fmt: skip
Project = Annotated[str | None, typer.Option(
    metavar="P", help="Vertex: Google Cloud project (else GOOGLE_CLOUD_PROJECT)")]  # fmt: skip
Location = Annotated[str | None, typer.Option(metavar="L", help=(
    "Vertex: location, e.g. global, us-central1, us (else GOOGLE_CLOUD_LOCATION, else global)"
))]  # fmt: skip
ApiVersion = Annotated[str | None, typer.Option(metavar="V", help=(
    "Native routes: v1, v1beta (Vertex: v1, v1beta1); default by model: v1 for GA ids, "
    "the beta for -preview ids"))]  # fmt: skip
ModeName = Annotated[str, typer.Option("--mode", metavar="MODE", help=(
    "online (default: one request per row, answers in seconds) or batch (the Gemini "
    "Batch API: half price, jobs finish within 24 h; --provider gemini only)"))]  # fmt: skip
Deadline = Annotated[str | None, typer.Option(metavar="TIME", help=(
    "Batch mode: have every row done by TIME, HH:MM (the next such local time: 07:00 at "
    "23:00 is tomorrow morning) or an ISO date-time (2026-12-02T07:00, local unless it "
    "names a zone). At TIME minus --fallback-margin, unfinished jobs are cancelled and "
    "their rows sent online at the online price"))]  # fmt: skip
FallbackMargin = Annotated[str | None, typer.Option(metavar="SPAN", help=(
    "Batch mode with --deadline: how long before the deadline late jobs' rows go online, "
    "e.g. 2h (default), 90m"))]  # fmt: skip
FallbackName = Annotated[str | None, typer.Option("--fallback", metavar="WHERE", help=(
    "Batch mode: rows of a failed, expired or cancelled job go online, or none (default: "
    "resubmitted in a new batch job, a few times, then failed)"))]  # fmt: skip
PreviewOut = Annotated[Path | None, typer.Option(
    "--out", metavar="DIR", help="Also what a run on DIR would send now and cost")]  # fmt: skip
OutputFormat = Annotated[str, typer.Option("--format", help="text or json (for scripts)")]
Verbose = Annotated[int, typer.Option(
    "--verbose", "-v", count=True, help="-v: info, -vv: every attempt (run.log: all)")]  # fmt: skip


def fail(error: NanobatchError) -> typer.Exit:
    """The one line a user error gets, and the exit that carries its code."""
    typer.echo(f"nanobatch: {error}", err=True)
    return typer.Exit(error.exit_code)


def say_err(line: str) -> None:
    TERMINAL.say(line, err=True)


def say(line: str) -> None:
    TERMINAL.say(line)


def check_format(output_format: str) -> None:
    if output_format not in ("text", "json"):
        raise UsageError(f"--format {output_format!r}: use text or json")


def check_out_dir_exists(out: Path, of: str = "a run") -> None:
    """A command that reads a run's folder: a typo must not read as an empty folder."""
    if not out.is_dir():
        what = "is not a directory" if out.exists() else "does not exist"
        raise UsageError(f"{out} {what}: give the --out DIR of {of}")
