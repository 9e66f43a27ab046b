"""What the emulator remembers about a run: counters for ``/_emulator/stats`` and, per request
fingerprint, how often it was seen, whether it was billed and when a 429 told it to come back.

Billing model: a request is billed the moment it is admitted to a successful generation
(including a ``hang``), so a client that times out or disconnects is still charged, as with
Google. Refusals, 4xx, 429 and 5xx are not billed. ``reset`` and ``truncate`` (an answer cut
off after its 200 went out) are not billed either, unless ``cut_answers_billed`` says they are,
as Google bills them: the model ran. A Batch API result
is billed (at the batch price, in ``batch_billed``) when its job ends with it. ``billed_duplicates``
is billed generations, online and batch, minus distinct billed fingerprints: how often the client
paid twice for the same request, whatever the mode.
"""

from __future__ import annotations

from collections import Counter

from pipeline.emulator.routestats import RouteCounters

# A retry this much before its RetryInfo delay elapsed is still on time (clock granularity).
EARLY_RETRY_SLACK_S = 0.010
_PRUNE_AT = 4096


class RunState:
    """Counters and per-fingerprint memory; ``reset`` starts a fresh run."""

    def __init__(self) -> None:
        self.in_flight = 0  # survives reset: those requests are still running
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.by_status: Counter[str] = Counter()
        self.billed = 0
        self.early_retries = 0
        self.refused = 0
        self.rate_limited = 0
        self.faults: Counter[str] = Counter()
        self.routes = RouteCounters()
        self.max_in_flight = self.in_flight
        # The Batch and Files APIs.
        self.batch_jobs_created = 0
        self.batch_requests = 0
        self.batch_billed = 0
        self.files_uploaded = 0
        self.upload_bytes = 0
        self.download_bytes = 0
        self._billed_fingerprints: set[bytes] = set()
        self._seen: Counter[bytes] = Counter()
        # fingerprint -> clock time before which a retry is early (set by every 429 answer)
        self._not_before: dict[bytes, float] = {}

    def arrived(self) -> None:
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def finished(self) -> None:
        self.in_flight -= 1

    def answered(self, key: str) -> None:
        """Record how a request ended: a status code, ``reset`` or ``disconnected``."""
        self.by_status[key] += 1

    def bill(
        self, fingerprint: bytes, *, route: str = "gemini", tier: str = "standard", micros: int = 0
    ) -> None:
        self.billed += 1
        self._billed_fingerprints.add(fingerprint)
        self.routes.billed(route, tier, micros)

    def bill_batch(self, fingerprint: bytes, *, micros: int = 0) -> None:
        """A batch result billed (at the batch price); the same fingerprints as online."""
        self.batch_billed += 1
        self._billed_fingerprints.add(fingerprint)
        self.routes.billed("gemini", "batch", micros)

    def occurrence(self, fingerprint: bytes) -> int:
        """How many times this request was seen before (0 the first time), counting this one."""
        seen = self._seen[fingerprint]
        self._seen[fingerprint] = seen + 1
        return seen

    def told_to_wait(self, fingerprint: bytes, now: float, delay_s: float) -> None:
        if len(self._not_before) >= _PRUNE_AT:
            self._not_before = {fp: t for fp, t in self._not_before.items() if t > now}
        self._not_before[fingerprint] = now + delay_s

    def check_retry(self, fingerprint: bytes, now: float) -> None:
        """Count an early retry if this fingerprint was told to wait and came back too soon."""
        not_before = self._not_before.get(fingerprint)
        if not_before is None:
            return
        if now < not_before - EARLY_RETRY_SLACK_S:
            self.early_retries += 1
        else:
            del self._not_before[fingerprint]

    def snapshot(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "by_status": dict(sorted(self.by_status.items())),
            "billed": self.billed,
            "billed_duplicates": self.billed + self.batch_billed - len(self._billed_fingerprints),
            "distinct_billed": len(self._billed_fingerprints),
            "early_retries": self.early_retries,
            "refused": self.refused,
            "rate_limited": self.rate_limited,
            "faults": dict(sorted(self.faults.items())),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "batch_jobs_created": self.batch_jobs_created,
            "batch_requests": self.batch_requests,
            "batch_billed": self.batch_billed,
            "files_uploaded": self.files_uploaded,
            "upload_bytes": self.upload_bytes,
            "download_bytes": self.download_bytes,
            **self.routes.snapshot(),
        }
