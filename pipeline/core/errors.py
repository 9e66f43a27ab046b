"""Run-level exceptions. Per-row problems are values (``Outcome``, invalid rows), never these.

NanobatchError                 anything that stops a run with a message for the user
├── UsageError                 bad flags, unreadable or malformed manifest (exit 2)
│   └── LedgerDamaged          ledger.parquet fails its checksums, found before anything was sent
├── LedgerNotFolded            ledger.parquet went bad mid-run; records kept in the journal (exit 1)
├── OutDirLocked               another run holds the output directory (exit 2)
└── DiskFull                   the output disk has no room for the run's reserve (exit 5)

An API that refuses the whole run (key, permission, model, quota) is not one of these: the run
ends as ``Halt.API`` (run/control.py) with its finished rows flushed, exit 3.
"""

from __future__ import annotations

from collections.abc import Iterator


class NanobatchError(Exception):
    """Base of every error that ends a run with a one-line message instead of a traceback."""

    exit_code = 1


class UsageError(NanobatchError):
    """The command or its input is wrong; nothing was sent."""

    exit_code = 2


class LedgerDamaged(UsageError):
    """``ledger.parquet`` is damaged; found when a run starts (nothing sent) or by verify/report."""


class LedgerNotFolded(NanobatchError):
    """The end-of-run fold failed (the Parquet file went bad meanwhile): requests were sent, so
    not exit 2; every record of the run is kept in ``ledger.journal`` for the next run."""

    exit_code = 1


class OutDirLocked(NanobatchError):
    """Another live process is writing to the same output directory."""

    exit_code = 2


class DiskFull(NanobatchError):
    """The output disk is full (or read-only): nothing more can be kept, so nothing is sent."""

    exit_code = 5


def user_error(
    group: BaseExceptionGroup[BaseException], consequences: tuple[type[BaseException], ...] = ()
) -> NanobatchError | None:
    """The error to show when a task group failed because of a ``NanobatchError``.

    anyio's task groups wrap whatever their tasks raise in an exception group; a run-level error
    raised inside the pool must still reach the user as one line, not a group traceback. The
    group may also hold ``consequences`` of that error (other tasks finding a stream closed);
    anything else (a bug) means None: the group propagates as it is, loudly.
    """
    leaves = [e for e in _leaves(group) if not isinstance(e, consequences)]
    if leaves and all(isinstance(e, NanobatchError) for e in leaves):
        error = leaves[0]
        assert isinstance(error, NanobatchError)
        return error
    return None


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for e in group.exceptions:
        if isinstance(e, BaseExceptionGroup):
            yield from _leaves(e)
        else:
            yield e
