"""Phase hooks for the SIGKILL tests: ``checkpoint(phase)`` kills the process on the spot when
``NANOBATCH_KILL_AT=<phase>[:<n>]`` names that phase (at its n-th checkpoint, default the
first), so a test can place a kill deterministically in each phase of a batch run and prove
the resume. Without the variable a checkpoint does nothing (one dictionary lookup).

Phases, in the order a job meets them: ``writing`` (a request line written), ``uploading``
(an upload session opened, and each acknowledged chunk), ``creating`` (the create answered,
its ``created`` record not yet written: the window where a job exists that the book does not
name), ``polling`` (a job's state read), ``downloading`` (results on disk, not yet recorded),
``folding`` (a row's records handed to the writer).

``NANOBATCH_BATCH_POLL_S=<seconds>`` sets the poll loop's first wait (default 15 s), so a test
of real processes against an emulator whose jobs end in a second need not wait for minutes.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

KILL_ENV = "NANOBATCH_KILL_AT"
POLL_ENV = "NANOBATCH_BATCH_POLL_S"
PHASES = ("writing", "uploading", "creating", "polling", "downloading", "folding")

_reached: Counter[str] = Counter()  # checkpoints passed so far in this process, per phase


def checkpoint(phase: str) -> None:
    """Die here (SIGKILL: nothing is flushed, nothing cleaned up) if the test asked to."""
    spec = os.environ.get(KILL_ENV)
    if not spec:
        return
    name, _, count = spec.partition(":")
    if name != phase:
        return
    _reached[phase] += 1
    if _reached[phase] >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def first_poll_s(default: float) -> float:
    """The poll loop's first wait: ``default``, unless a test set ``NANOBATCH_BATCH_POLL_S``."""
    value = os.environ.get(POLL_ENV)
    return float(value) if value else default
