"""The ``nanobatch`` command: the only place that reads argv and the environment, sets up
logging, calls ``anyio.run`` (through ``runner``) and maps errors to exit codes. Here: the app
and run; validate is in ``validate``, the shared option declarations in ``params``, the small
commands (verify, rename, report, status, emulator, demo) in ``commands``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pipeline.cli import fastexit
from pipeline.cli.batch import batch_app
from pipeline.cli.commands import demo, emulator, rename, report, status, verify
from pipeline.cli.params import (
    ApiKeyFlag,
    ApiVersion,
    AspectRatio,
    BaseUrl,
    Concurrency,
    Deadline,
    DrainGrace,
    FallbackMargin,
    FallbackName,
    FitImages,
    IdColumn,
    Ids,
    ImageSize,
    Limit,
    Location,
    Manifest,
    Model,
    ModeName,
    NameTemplate,
    Prices,
    ProgressEvery,
    Project,
    PromptTemplate,
    ProviderName,
    Rerun,
    RerunBefore,
    RetryRefused,
    Sheet,
    StopAfter,
    StopAt,
    TierFallback,
    TierName,
    Timeouts,
    Verbose,
    fail,
    say,
    say_err,
)
from pipeline.cli.routing import api_key as route_key
from pipeline.cli.routing import gateway_base_url, no_key, route_from
from pipeline.cli.validate import validate
from pipeline.core.config import GEMINI_BASE_URL, ApiKey, AuthStyle, RetryConfig, RunConfig
from pipeline.core.errors import NanobatchError, UsageError
from pipeline.core.logs import setup as setup_logging
from pipeline.core.models import DEFAULT_MODEL
from pipeline.core.options import (
    check_out_dir,
    parse_deadline,
    parse_margin,
    parse_mode,
    parse_rerun,
    parse_rerun_before,
    parse_stop,
    parse_timeouts,
)
from pipeline.core.prices import PriceTable
from pipeline.core.routes import Route
from pipeline.core.tiers import default_concurrency, parse_fallback, parse_tier

if TYPE_CHECKING:  # the HTTP stack is imported by the run, not by --help
    import httpx

app = typer.Typer(
    add_completion=False,
    rich_markup_mode=None,  # plain help: it wraps to the terminal, readable at 80 columns
    no_args_is_help=True,
    help="Generate images in bulk with Gemini's image models, resumably.",
)

EMULATED_BASE_URL = "http://emulator.invalid"


@app.command(options_metavar="--out DIR [OPTIONS]")
def run(
    manifest: Manifest,
    out: Annotated[
        Path, typer.Option("--out", metavar="DIR", help="Output directory (images + ledger)")
    ],
    model: Model = DEFAULT_MODEL,
    image_size: ImageSize = None,
    aspect_ratio: AspectRatio = None,
    concurrency: Concurrency = None,
    rpm: Annotated[float | None, typer.Option(help="Requests per minute ceiling")] = None,
    provider: ProviderName = None,
    project: Project = None,
    location: Location = None,
    api_version: ApiVersion = None,
    tier: TierName = "standard",
    tier_fallback: TierFallback = None,
    mode: ModeName = "online",
    deadline: Deadline = None,
    fallback_margin: FallbackMargin = None,
    fallback: FallbackName = None,
    base_url: BaseUrl = None,
    api_key: ApiKeyFlag = None,
    auth: Annotated[
        AuthStyle | None,
        typer.Option(help="How to send the key: header (Google, default), bearer, query"),
    ] = None,
    limit: Limit = None,
    ids: Ids = None,
    id_column: IdColumn = None,
    sheet: Sheet = None,
    rerun: Rerun = "failed",
    rerun_before: RerunBefore = None,
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
    retry_refused: RetryRefused = False,
    on_quota: Annotated[
        str, typer.Option(help="Daily quota used up: stop (default) or wait for the reset")
    ] = "stop",
    timeouts: Timeouts = "",
    stop_after: StopAfter = None,
    stop_at: StopAt = None,
    drain_grace: DrainGrace = 60.0,
    progress_every: ProgressEvery = 30.0,
    emulate: Annotated[bool, typer.Option(help="Rehearse against an in-process emulator")] = False,
    emulate_faults: Annotated[str, typer.Option(help="--faults SPEC of the emulator")] = "",
    emulate_latency: Annotated[str, typer.Option(help="--latency SPEC of the emulator")] = "0",
    verbose: Verbose = 0,
) -> None:
    """Generate an image for each pending row; reruns resume."""
    from pipeline.providers.registry import check_available
    from pipeline.run.modes import check_mode

    url = base_url or os.environ.get("GOOGLE_GEMINI_BASE_URL") or GEMINI_BASE_URL
    transport: httpx.AsyncBaseTransport | None = None
    key: ApiKey | None = None
    try:
        route = route_from(provider, project, location, api_version, auth and auth.value)
        check_available(route.provider)
        key = route_key(route.provider, api_key)
        if route.provider is Route.VERTEX:
            # The SDK's variable for Vertex; without one, the host follows --location (the
            # provider reads GEMINI_BASE_URL here as "not overridden").
            url = base_url or os.environ.get("GOOGLE_VERTEX_BASE_URL") or GEMINI_BASE_URL
        elif route.provider is Route.OPENAI_CHAT:
            url = gateway_base_url(base_url, emulate)
        gateway = route.provider is Route.OPENAI_CHAT
        check_out_dir(out)
        setup_logging(verbose, [key.reveal()] if key else [], out)
        if emulate:
            from pipeline.commands.demo import emulator_transport

            transport = emulator_transport(emulate_faults, emulate_latency)
            url, key = (
                EMULATED_BASE_URL + ("/v1" if gateway else ""),  # its gateway is at /v1/chat/...
                ApiKey("emulated", "--emulate"),
            )
        elif key is None and route.provider is not Route.VERTEX:
            raise no_key(route.provider)
        run_mode, then = parse_mode(mode, deadline, fallback_margin, fallback)
        if on_quota not in ("stop", "wait"):
            raise UsageError(f"--on-quota {on_quota!r}: use stop or wait")
        config = RunConfig(
            manifest=manifest,
            out_dir=out,
            model=model,
            image_size=image_size,
            aspect_ratio=aspect_ratio,
            concurrency=concurrency or default_concurrency(parse_tier(tier)),
            tier=parse_tier(tier),
            rpm=rpm,
            provider=route.provider,
            project=route.project,
            location=route.location,
            api_version=route.api_version,
            base_url=url,
            api_key=key,
            auth=auth or AuthStyle.HEADER,
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
                fallback=parse_fallback(tier_fallback),
            ),
            stop_at=parse_stop(stop_after, stop_at),
            mode=run_mode,
            deadline=parse_deadline(deadline),
            fallback_margin_s=parse_margin(fallback_margin),
            fallback=then,
            handle_signals=True,
            drain_grace_s=drain_grace,
        )
        check_mode(config)  # before anything is read or sent: batch needs a batch route
    except NanobatchError as e:
        raise fail(e) from None
    from pipeline.commands.run import run_and_report  # the run machinery: only when running

    raise typer.Exit(run_and_report(config, transport, argv=sys.argv[1:], out=say,
                                    err=say_err, progress_every_s=progress_every))  # fmt: skip


# The small commands, registered after run and validate: --help lists them in this order.
for command in (validate, verify, rename, report, status, emulator, demo):
    app.command()(command)
app.add_typer(batch_app, name="batch")


def main() -> None:
    """Console script entry point: the process ends as soon as the command has
    (``fastexit``)."""
    try:
        app()
    except SystemExit as e:
        fastexit.leave(e.code)
    fastexit.leave(0)
