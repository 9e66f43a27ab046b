"""Models no row can use in this run: unknown at the endpoint (a 404), or without any quota
on this route (a 429 whose ``quotaValue`` is 0, e.g. a free-tier metric on a paid project).

One bad ``model`` cell must not cost the other rows their run. The first such answer fails its
row; every later row of that model fails without being sent, for the same reason, and the
other models go on. The run stops (exit 3, its rows left pending) only when the model is the
run's default (``--model``), or, at the end, when every model the run used proved unusable.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pipeline.core.types import Job, Outcome


@dataclass(frozen=True, slots=True)
class _Found:
    outcome: Outcome  # the answer that showed it
    job: Job  # the row that got it


class UnusableModels:
    """What the server said about models, shared by every worker."""

    def __init__(self, default_model: str) -> None:
        self.default = default_model  # the id rows without a ``model`` column are sent with
        self._found: dict[str, _Found] = {}
        self._used: set[str] = set()  # models of the rows this run tried to send

    def check(self, job: Job) -> Outcome | None:
        """The failure of a row whose model is known to be unusable (sent nothing); None: send."""
        self._used.add(job.model)
        found = self._found.get(job.model)
        return None if found is None else replace(self.for_row(job), http_status=None)

    def found(self, job: Job, outcome: Outcome) -> bool:
        """Note that ``job``'s model is unusable; True when the run must stop (the default)."""
        self._found.setdefault(job.model, _Found(outcome, job))
        return job.model == self.default

    def for_row(self, job: Job) -> Outcome:
        """The row's failure: what is wrong, naming the model and the column it came from."""
        found = self._found[job.model]
        where = f"this row's `model` column ({job.model!r})"
        text = f"{_what(found.outcome, where)}; the other models' rows went on. Fix the column "
        text += "(or remove these rows) and rerun" + _server_said(found.outcome)
        return replace(found.outcome, message=text)

    def stopping(self, job: Job) -> Outcome:
        """Why the run stops: the default model is unusable, as row ``job`` found."""
        found = self._found[job.model]
        where = f"the default model {job.model!r} (--model, for rows without a `model` column)"
        text = f"{_what(found.outcome, where)}, first seen on row {job.line} (id {job.row_id})"
        return replace(found.outcome, message=text + _server_said(found.outcome))

    def all_unusable(self) -> Outcome | None:
        """When every model this run used proved unusable, why (for the row that found it)."""
        if not self._used or not self._used <= self._found.keys():
            return None
        found = self._found[min(self._used)]
        job = found.job
        where = f"row {job.line} (id {job.row_id}), `model` column: {job.model!r}"
        text = f"{_what(found.outcome, where)}; no row of this run could be sent"
        return replace(found.outcome, message=text + _server_said(found.outcome))


def _what(outcome: Outcome, model: str) -> str:
    if outcome.reason == "NO_QUOTA":
        return f"the project has no quota on this route for {model} (its limit is 0)"
    return f"the endpoint does not know {model}"


def _server_said(outcome: Outcome) -> str:
    return f". The server said: {outcome.message}" if outcome.message else ""
