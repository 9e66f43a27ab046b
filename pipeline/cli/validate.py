"""``nanobatch validate``: the run's manifest flags to a check of every row and a cost estimate
(and, with ``--out``, what a run on that folder would send now). Sends nothing; exit 2 when a
row is invalid or the manifest has a problem a run would stop on."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import typer

from pipeline.cli.params import (
    ApiVersion,
    AspectRatio,
    FitImages,
    IdColumn,
    Ids,
    ImageSize,
    Limit,
    Location,
    Manifest,
    Model,
    NameTemplate,
    OutputFormat,
    PreviewOut,
    Prices,
    Project,
    PromptTemplate,
    ProviderName,
    Sheet,
    TierName,
    Verbose,
    check_format,
    fail,
    say_err,
)
from pipeline.cli.routing import route_from
from pipeline.core.config import RunConfig
from pipeline.core.errors import NanobatchError
from pipeline.core.logs import setup as setup_logging
from pipeline.core.models import DEFAULT_MODEL
from pipeline.core.prices import PriceTable
from pipeline.core.tiers import parse_tier


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
    provider: ProviderName = None,
    project: Project = None,
    location: Location = None,
    api_version: ApiVersion = None,
    tier: TierName = "standard",
    output_format: OutputFormat = "text",
    out: PreviewOut = None,
    verbose: Verbose = 0,
) -> None:
    """Check every row and estimate the cost; sends nothing."""
    from pipeline.commands.preview import format_preview, preview
    from pipeline.commands.validate import format_validation
    from pipeline.commands.validate import validate as validate_manifest
    from pipeline.providers.registry import check_available

    setup_logging(verbose, [])
    try:
        check_format(output_format)
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
        raise fail(e) from None
    if output_format == "json":
        extra = {"out": ahead.to_json()} if ahead else {}
        typer.echo(json.dumps(found.to_json(table) | extra, indent=1))
    else:
        typer.echo(format_validation(found, table, manifest))
        if ahead and out:
            typer.echo(format_preview(ahead, out))
    if found.problems:  # a run would stop on these before sending anything
        say_err(f"nanobatch: {manifest}: " + "; ".join(found.problems))
    raise typer.Exit(2 if found.invalid_count or found.problems else 0)
