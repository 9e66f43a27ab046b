"""Whether a run's ``--mode`` can be served: batch mode needs a route with a Batch API and a
build with the batch executor. Checked before anything is read, written or sent, so a run that
cannot go as asked stops with one line (exit 2) instead of quietly going another way."""

from __future__ import annotations

import importlib

from pipeline.core.config import RunConfig, RunMode
from pipeline.core.errors import UsageError
from pipeline.core.routes import Route
from pipeline.providers.base import Provider
from pipeline.providers.registry import provider_for

# Why a route without a Batch API has none, for the one line a refusal gets.
_NO_BATCH = {
    Route.VERTEX: "Vertex AI's batch prediction reads from Cloud Storage or BigQuery, "
    "which nanobatch does not speak yet",
    Route.OPENAI_CHAT: "chat gateways have no batch endpoint for image models",
}

# Where the batch executor lives (``run.scheduler`` chooses it for --mode batch).
EXECUTOR_MODULE = "pipeline.run.batch.executor"


def check_mode(config: RunConfig, provider: Provider | None = None) -> None:
    """Raise ``UsageError`` when ``config.mode`` cannot be served by its route in this build."""
    if config.mode is not RunMode.BATCH:
        return
    provider = provider or provider_for(config)
    if not provider.capabilities.batch:
        why = _NO_BATCH.get(config.provider, "this build does not speak its Batch API yet")
        other = f", or --provider {Route.GEMINI.value}" if config.provider != Route.GEMINI else ""
        raise UsageError(
            f"--mode batch: --provider {provider.name} cannot take batch jobs ({why}); "
            f"use --mode online{other}"
        )
    if not batch_executor_available():
        raise UsageError(
            "--mode batch is not available in this build yet (no batch executor); use --mode online"
        )


def batch_executor_available() -> bool:
    """Whether this build has the batch executor (it is never run online in its place)."""
    try:
        module = importlib.import_module(EXECUTOR_MODULE)
    except ImportError:
        return False
    return hasattr(module, "BatchExecutor")
