"""Each live batch job as last seen at Google: what the poll loop compares to tell whether
anything moved (its wait grows while nothing does), and what the progress views show of it
(``RunResult.batch_jobs``: state and request counts per job)."""

from __future__ import annotations

from pipeline.providers.batchapi import RemoteJob
from pipeline.run.result import RunResult


class SeenJobs:
    """The last answer about each job, by the book's job id."""

    def __init__(self, result: RunResult) -> None:
        self.result = result
        self._remote: dict[str, RemoteJob] = {}

    def get(self, job_id: str) -> RemoteJob | None:
        return self._remote.get(job_id)

    def polled(self, job_id: str, remote: RemoteJob) -> bool:
        """A poll's answer, shown in the progress views; whether the job moved since the last."""
        before = self._remote.get(job_id)
        self._remote[job_id] = remote
        counts = remote.counts
        self.result.batch_jobs[job_id] = {
            "state": remote.state.value,
            "requests": counts.requests,
            "succeeded": counts.succeeded,
            "failed": counts.failed,
            "pending": counts.pending,
        }
        return before is None or (before.state, before.counts) != (remote.state, remote.counts)

    def fetched(self, job_id: str, remote: RemoteJob) -> None:
        """An ended job looked up again to fold it (not a poll: the views keep what they had)."""
        self._remote[job_id] = remote

    def forget(self, job_id: str) -> None:
        """Look the job up again next time (a finished job whose file was not there yet)."""
        self._remote.pop(job_id, None)

    def cleaned(self, job_id: str) -> None:
        """The job is done with: gone from the views too."""
        self._remote.pop(job_id, None)
        self.result.batch_jobs.pop(job_id, None)
