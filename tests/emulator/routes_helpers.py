"""Helpers for the tests of routes, tiers, OAuth and the chat gateway."""

from __future__ import annotations

from typing import Any, cast

from pipeline.emulator import EmulatorApp

TOKEN = {"authorization": "Bearer ya29.any"}
GLOBAL = "/v1/projects/p/locations/global/publishers/google/models/{model}:generateContent"


def stats(app: EmulatorApp) -> dict[str, Any]:
    """The stats snapshot, typed for nested indexing."""
    return cast(dict[str, Any], app.stats_snapshot())
