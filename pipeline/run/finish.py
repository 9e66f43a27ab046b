"""What a run settles once its task group is done: why it stopped, the unclaimed images of a
crashed run set aside, and the plan state saved so that the next resume can trust the done
rows without checking each one."""

from __future__ import annotations

import anyio

from pipeline.plan import planstate
from pipeline.run.control import Halt
from pipeline.run.executor import Executor, RunServices
from pipeline.run.recovery import set_aside
from pipeline.run.start import RunStart


def settle_halt(services: RunServices, executor: Executor) -> None:
    """The run's halt: the control's, else the executor's end-of-run verdict."""
    result = services.result
    result.halt = services.control.halt
    if result.halt is None and (stopped := executor.stopped()) is not None:
        result.stopped, result.halt = stopped, Halt.API


def whole_manifest(services: RunServices) -> bool:
    """Whether this run planned every row of the manifest (no --limit, no --ids)."""
    return services.config.limit is None and services.config.ids_file is None


async def set_orphans_aside(services: RunServices, begun: RunStart) -> None:
    """Images a crashed run left that no row of the manifest claimed go to ``DIR/orphans/``;
    only after a whole, undrained plan: a row not planned could still claim them."""
    if begun.orphans and whole_manifest(services) and not services.control.draining:
        await anyio.to_thread.run_sync(set_aside, services.config.out_dir, begun.orphans)


async def save_plan_state(services: RunServices, begun: RunStart) -> None:
    """Once every done row of the whole manifest was checked against these inputs, say so:
    the next resume can trust them."""
    planner = begun.planner
    if begun.trusted or not planner.finished or not whole_manifest(services):
        return
    if services.disk.error:
        return  # rows may have gone unrecorded: nothing to vouch for
    await anyio.to_thread.run_sync(
        planstate.save,
        services.config.out_dir,
        begun.inputs,
        planner.source_paths,
        begun.sources,
    )
