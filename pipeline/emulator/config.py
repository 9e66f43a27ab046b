"""The emulator's frozen configuration, built once (by the CLI or a test) and passed down."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import anyio

from pipeline.emulator.batchspecs import (
    DEFAULT_BATCH_DELAY,
    BatchFaultSpec,
    parse_batch_delay,
)
from pipeline.emulator.specs import FaultSpec, LatencySpec, parse_latency

# Flex holds a request for minutes (Google's target: 1 to 15) before answering.
DEFAULT_FLEX_LATENCY = "lognormal:240:0.7"


class Payload(StrEnum):
    """How generated images are encoded.

    ``realistic`` gives real-world byte sizes (a 1K PNG is ~1 MB, ~1.4 MB in base64) so clients
    are benchmarked on realistic bodies; ``compact`` compresses the same pixels to a few KB so a
    test suite stays fast.
    """

    REALISTIC = "realistic"
    COMPACT = "compact"


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """Everything that shapes the emulator's answers.

    ``clock`` and ``sleep`` are injectable so tests of the rpm window, retry delays and latency
    need no real waiting; ``sleep`` is used for latency and hangs only.
    """

    api_key: str | None = None
    seed: int = 0
    latency: LatencySpec = field(default_factory=LatencySpec)
    faults: FaultSpec = field(default_factory=FaultSpec)
    rpm: int | None = None
    # Models this project has a quota of 0 for (a free-tier metric on a paid project): every
    # request for them is a 429 whose QuotaFailure says quotaValue "0", without RetryInfo.
    no_quota_models: frozenset[str] = frozenset()
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep
    payload: Payload = Payload.REALISTIC
    # Encoded images kept for reuse by content key (least recently used dropped first).
    image_cache_bytes: int = 256 * 1024 * 1024
    # The simulation's speed: every emulated wait (latency, Flex, hangs, the retry delays it
    # asks for, the --rpm window, batch job delays, a late file's wait) is multiplied by it, so
    # 0.01 plays an hour in 36 s.
    time_scale: float = 1.0
    # Batch API: seconds from a job's creation to its end (drawn per job), job-level faults,
    # whether a cancelled job bills the requests it had completed (UNCONFIRMED at Google), and
    # how many unfinished jobs a project may have.
    batch_delay: LatencySpec = field(default_factory=lambda: parse_batch_delay(DEFAULT_BATCH_DELAY))
    batch_faults: BatchFaultSpec = field(default_factory=BatchFaultSpec)
    batch_cancel_bills: bool = True
    batch_max_jobs: int = 100
    # The Files API's storage per project (20 GB at Google): an upload past it is a 429.
    files_quota_bytes: int = 20 * 1024**3
    # Where the Files API keeps its bytes: a temporary directory made under this one (None: the
    # system's temporary directory), removed when the app is garbage-collected or Python exits.
    files_dir: Path | None = None
    # Routes and tiers (see routes.py, tiers.py, oauth.py, chat.py).
    flex_latency: LatencySpec = field(default_factory=lambda: parse_latency(DEFAULT_FLEX_LATENCY))
    shed_status: int = 503
    no_flex_models: frozenset[str] = frozenset()
    token_ttl_s: float = 3600.0
    bearer: str = "any"  # "any": any bearer token on Vertex; "issued": only ours, unexpired
    vertex_projects: frozenset[str] = frozenset()  # empty: every project exists
    error_array: float = 0.0  # share of Vertex errors sent as a JSON array [{"error": ...}]
    chat_shape: str = "images"  # images | parts | markdown | link
    chat_errors: str = "raw"  # raw | upstream | mixed
    wall_clock: Callable[[], float] = time.time  # JWT iat/exp are wall-clock times
    # Whether an answer cut off after its 200 went out (the reset and truncate faults) is
    # billed. Google bills it (the model ran and answered 200); off by default, the emulator's
    # older model of those faults as network accidents that cost nothing.
    cut_answers_billed: bool = False

    def __post_init__(self) -> None:
        if self.rpm is not None and self.rpm < 1:
            raise ValueError(f"rpm must be a positive integer, got {self.rpm}")
        if not self.time_scale > 0:
            raise ValueError(f"time scale must be > 0, got {self.time_scale}")
        if self.shed_status not in (429, 503):
            raise ValueError(f"shed status must be 429 or 503, got {self.shed_status}")
        if not self.token_ttl_s > 0:
            raise ValueError(f"token ttl must be > 0 seconds, got {self.token_ttl_s}")
        if not 0 <= self.error_array <= 1:
            raise ValueError(f"error array rate must be in [0, 1], got {self.error_array}")
        for name, value, allowed in (
            ("bearer", self.bearer, ("any", "issued")),
            ("chat shape", self.chat_shape, ("images", "parts", "markdown", "link")),
            ("chat errors", self.chat_errors, ("raw", "upstream", "mixed")),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
