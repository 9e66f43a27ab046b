"""A run's entry point: open the output directory's ledger, choose the executor (online: one
request per row; batch comes next), run it in the shell, and turn a failed task group into
the one error the user caused."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import httpx

from pipeline.core.config import RunConfig
from pipeline.core.errors import user_error
from pipeline.providers.base import Provider
from pipeline.providers.http import ClientPool
from pipeline.providers.registry import provider_for
from pipeline.run.online import OnlineExecutor, workers
from pipeline.run.online.adaptive import AdaptiveLimit
from pipeline.run.result import RunResult
from pipeline.run.shell import Observer, RunShell
from pipeline.store.diskspace import open_ledger
from pipeline.store.ledger import Ledger


class Pipeline:
    """One manifest through the online executor into an opened ledger."""

    def __init__(
        self,
        config: RunConfig,
        clients: ClientPool,
        ledger: Ledger,
        provider: Provider | None = None,
    ) -> None:
        self.shell = RunShell(config, ledger)
        self.executor = OnlineExecutor(config, clients, provider or provider_for(config))

    @property
    def adaptive(self) -> AdaptiveLimit:
        """The online executor's request slots (a test may give it others before ``run``)."""
        return self.executor.adaptive

    @adaptive.setter
    def adaptive(self, limit: AdaptiveLimit) -> None:
        self.executor.adaptive = limit

    async def run(self, observers: Sequence[Observer] = ()) -> RunResult:
        """Process every pending row (see ``RunShell.run``)."""
        return await self.shell.run(self.executor, observers)


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
    try:
        async with ClientPool(transport, workers(config)) as pool:
            return await Pipeline(config, pool, ledger).run(observers)
    except BaseExceptionGroup as group:
        # Other tasks then find the record stream closed: consequences, not causes.
        closed = (anyio.BrokenResourceError, anyio.ClosedResourceError)
        if (error := user_error(group, closed)) is None:
            raise
        raise error from None
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(ledger.close)
