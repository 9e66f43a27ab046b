"""``nanobatch batch status DIR`` and ``nanobatch batch cancel DIR``: flags to the commands in
``commands.batchjobs``, their output and exit codes. The HTTP stack is imported only when a
command runs (``--help`` stays light)."""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from pipeline.cli import params as shared
from pipeline.cli.params import ApiKeyFlag, OutDir, OutputFormat
from pipeline.cli.routing import api_key, no_key
from pipeline.core.config import GEMINI_BASE_URL, RunConfig
from pipeline.core.errors import NanobatchError, UsageError
from pipeline.core.routes import Route

if TYPE_CHECKING:
    from pipeline.providers.batchapi import BatchRoute
    from pipeline.providers.http import HttpClient

T = TypeVar("T")

batch_app = typer.Typer(
    help="Batch jobs of an output directory at Google: status, cancel.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

BatchBaseUrl = Annotated[str | None, typer.Option(
    "--base-url", help="API base URL (else GOOGLE_GEMINI_BASE_URL, else Google's)")]  # fmt: skip
Offline = Annotated[bool, typer.Option(
    "--offline", help="Read the folder's book only; ask Google nothing")]  # fmt: skip


def _checked(out: Path, output_format: str) -> datetime:
    """The flags both commands check first; the time the jobs' ages are told from."""
    shared.check_format(output_format)
    shared.check_out_dir_exists(out, "a batch run")  # a typo must not read as "no jobs"
    return datetime.now().astimezone()


def _with_route(
    out: Path, base_url: str | None, key_flag: str | None,
    call: Callable[[BatchRoute, HttpClient], Awaitable[T]],
) -> T:  # fmt: skip
    """Run ``call`` with the Gemini API's batch route and one client (the network)."""
    import anyio

    from pipeline.providers.http import ClientPool
    from pipeline.providers.registry import provider_for

    key = api_key(Route.GEMINI, key_flag)
    if key is None:
        raise no_key(Route.GEMINI)
    url = base_url or os.environ.get("GOOGLE_GEMINI_BASE_URL") or GEMINI_BASE_URL
    provider = provider_for(RunConfig(Path(), out, base_url=url, api_key=key))
    batch_route = getattr(provider, "batch_route", None)
    if batch_route is None:
        raise UsageError(f"--provider {provider.name} has no Batch API")
    route: BatchRoute = batch_route()

    async def main() -> T:
        async with ClientPool(None, 1) as pool:
            return await call(route, pool.for_worker(0))

    return anyio.run(main)


@batch_app.command("status")
def status(
    out: OutDir,
    output_format: OutputFormat = "text",
    offline: Offline = False,
    base_url: BatchBaseUrl = None,
    api_key_flag: ApiKeyFlag = None,
) -> None:
    """Jobs of DIR: state, Google's counts, bytes, age, rows."""
    from pipeline.commands.batchjobs import batch_status, format_batch_status

    try:
        now = _checked(out, output_format)
        if offline or api_key(Route.GEMINI, api_key_flag) is None:
            import anyio

            found = anyio.run(batch_status, out, None, None, now)
        else:
            found = _with_route(
                out, base_url, api_key_flag, lambda r, c: batch_status(out, r, c, now)
            )
    except NanobatchError as e:
        raise shared.fail(e) from None
    typer.echo(
        json.dumps(found.to_json(), indent=1)
        if output_format == "json"
        else format_batch_status(found)
    )


@batch_app.command("cancel")
def cancel(
    out: OutDir,
    output_format: OutputFormat = "text",
    base_url: BatchBaseUrl = None,
    api_key_flag: ApiKeyFlag = None,
) -> None:
    """Cancel every live batch job of DIR at Google."""
    from pipeline.commands.batchjobs import batch_cancel, format_cancelled

    try:
        now = _checked(out, output_format)
        done = _with_route(out, base_url, api_key_flag, lambda r, c: batch_cancel(out, r, c, now))
    except NanobatchError as e:
        raise shared.fail(e) from None
    text = format_cancelled(done, out)
    typer.echo(json.dumps(done.to_json(), indent=1) if output_format == "json" else text)
    raise typer.Exit(1 if done.failed else 0)
