"""A run's entry point: open the output directory's ledger, make the one pass over the manifest,
choose the executor by ``--mode`` (online: one request per row; batch: rows collected into
Batch API jobs), run it in the shell, turn
a failed task group into the one error the user caused, and count what is left from the pass."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

import anyio
import httpx

from pipeline.core.config import RunConfig, RunMode
from pipeline.core.errors import user_error
from pipeline.plan.checkpass import CheckedManifest
from pipeline.providers.base import Provider
from pipeline.providers.http import ClientPool
from pipeline.providers.registry import provider_for
from pipeline.providers.wire import default_tls
from pipeline.run import start as runstart
from pipeline.run.batch.executor import BatchExecutor
from pipeline.run.online import OnlineExecutor, workers
from pipeline.run.online.adaptive import AdaptiveLimit
from pipeline.run.result import RunResult
from pipeline.run.shell import Observer, RunShell
from pipeline.store.diskspace import open_ledger
from pipeline.store.ledger import Ledger


class Pipeline:
    """One manifest through the executor its ``--mode`` names into an opened ledger."""

    def __init__(
        self,
        config: RunConfig,
        clients: ClientPool,
        ledger: Ledger,
        provider: Provider | None = None,
    ) -> None:
        self.shell = RunShell(config, ledger)
        provider = provider or provider_for(config)
        self.executor: OnlineExecutor | BatchExecutor
        if config.mode is RunMode.BATCH:
            self.executor = BatchExecutor(config, clients, provider)
        else:
            self.executor = OnlineExecutor(config, clients, provider)

    @property
    def adaptive(self) -> AdaptiveLimit:
        """The online executor's request slots (a test may give it others before ``run``)."""
        assert isinstance(self.executor, OnlineExecutor)
        return self.executor.adaptive

    @adaptive.setter
    def adaptive(self, limit: AdaptiveLimit) -> None:
        assert isinstance(self.executor, OnlineExecutor)
        self.executor.adaptive = limit

    async def run(
        self, observers: Sequence[Observer] = (), checked: CheckedManifest | None = None
    ) -> RunResult:
        """Check the route, then process every pending row (see ``RunShell.run``).

        The route check is one unbilled request before the first paid one (Vertex reads the
        model through its project, location and credentials); a route that cannot serve the
        run raises ``UsageError`` (exit 2) before anything is sent or recorded.
        """
        executor = self.executor
        executor.provider = await executor.provider.preflight(executor.clients.for_worker(0))
        return await self.shell.run(executor, observers, checked)


async def run_manifest(
    config: RunConfig,
    transport: httpx.AsyncBaseTransport | None = None,
    observers: Sequence[Observer] = (),
) -> RunResult:
    """Open the output directory, run the manifest, and fold the ledger.

    ``transport`` is httpx's: None for the network, or the in-process emulator's.
    """
    ledger = Ledger(config.out_dir)
    await anyio.to_thread.run_sync(open_ledger, ledger)
    started_at = config.clock.now()
    checked: CheckedManifest | None = None
    try:
        try:
            # The one pass over the manifest (with --strict, every row checked); its rows are
            # kept until what is left after the run has been counted from them.
            checked = await anyio.to_thread.run_sync(runstart.check, config, ledger)
            if transport is None and urlsplit(config.base_url).scheme == "https":
                # Else the first connection loads it, after its request was noted as sent: a
                # CA bundle that does not load (SSL_CERT_FILE) stops the run here, unsent.
                default_tls()
            async with ClientPool(transport, workers(config)) as pool:
                result = await Pipeline(checked.config, pool, ledger).run(observers, checked)
        except BaseExceptionGroup as group:
            # Other tasks then find the record stream closed: consequences, not causes.
            closed = (anyio.BrokenResourceError, anyio.ClosedResourceError)
            if (error := user_error(group, closed)) is None:
                raise
            raise error from None
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(ledger.close)
        # After the fold: the ledger as a rerun will find it.
        await anyio.to_thread.run_sync(runstart.left_after, checked, result, started_at)
        return result
    finally:
        if checked is not None:
            checked.close()
