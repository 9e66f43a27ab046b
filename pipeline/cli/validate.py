"""``nanobatch validate``: the run's manifest flags to a check of every row and a cost estimate
(and, with ``--out``, what a run on that folder would send now). Sends nothing; exit 2 when a
row is invalid or the manifest has a problem a run would stop on."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import typer

from pipeline.cli import params as flags
from pipeline.cli.routing import route_from
from pipeline.core.config import RunConfig
from pipeline.core.errors import NanobatchError
from pipeline.core.logs import setup as setup_logging
from pipeline.core.models import DEFAULT_MODEL
from pipeline.core.options import parse_mode
from pipeline.core.prices import PriceTable
from pipeline.core.tiers import parse_tier


def validate(
    manifest: flags.Manifest,
    model: flags.Model = DEFAULT_MODEL,
    image_size: flags.ImageSize = None,
    aspect_ratio: flags.AspectRatio = None,
    limit: flags.Limit = None,
    ids: flags.Ids = None,
    id_column: flags.IdColumn = None,
    sheet: flags.Sheet = None,
    prompt_template: flags.PromptTemplate = None,
    name_template: flags.NameTemplate = None,
    fit_images: flags.FitImages = False,
    prices: flags.Prices = None,
    provider: flags.ProviderName = None,
    project: flags.Project = None,
    location: flags.Location = None,
    api_version: flags.ApiVersion = None,
    tier: flags.TierName = "standard",
    mode: flags.ModeName = "online",
    output_format: flags.OutputFormat = "text",
    out: flags.PreviewOut = None,
    verbose: flags.Verbose = 0,
) -> None:
    """Check every row and estimate the cost; sends nothing."""
    from pipeline.commands.preview import format_preview, preview
    from pipeline.commands.validate import format_validation
    from pipeline.commands.validate import validate as validate_manifest
    from pipeline.providers.registry import check_available

    setup_logging(verbose, [])
    try:
        flags.check_format(output_format)
        route = route_from(provider, project, location, api_version, None)
        check_available(route.provider)
        table = PriceTable.load(prices)
        config = RunConfig(
            manifest=manifest,
            out_dir=Path("."),
            provider=route.provider,
            project=route.project,
            location=route.location,
            api_version=route.api_version,
            tier=parse_tier(tier),
            mode=parse_mode(mode, None, None, None)[0],
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
        raise flags.fail(e) from None
    if output_format == "json":
        extra = {"out": ahead.to_json()} if ahead else {}
        typer.echo(json.dumps(found.to_json(table) | extra, indent=1))
    else:
        typer.echo(format_validation(found, table, manifest))
        if ahead and out:
            typer.echo(format_preview(ahead, out))
    if found.problems:  # a run would stop on these before sending anything
        flags.say_err(f"nanobatch: {manifest}: " + "; ".join(found.problems))
    raise typer.Exit(2 if found.invalid_count or found.problems else 0)
