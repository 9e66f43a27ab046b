"""The frozen run configuration, built once by the CLI and passed down explicitly."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from pipeline.core.clock import SYSTEM_CLOCK, Clock
from pipeline.core.idscheme import IdScheme
from pipeline.core.models import DEFAULT_MODEL
from pipeline.core.prices import PriceTable
from pipeline.core.routes import DEFAULT_LOCATION, Route
from pipeline.core.tiers import FLEX_TIMEOUT_S, MAX_SHEDS
from pipeline.core.types import Status, Tier

GEMINI_BASE_URL = "https://generativelanguage.googleapis.com"

# A request the client abandons is still billed when the server finishes it, so the timeout
# must outlast the slowest honest generation at each resolution (4K on Pro takes up to 150 s),
# and a Flex request's wait for capacity (``tiers.request_timeout``).
DEFAULT_TIMEOUTS_S: dict[str, float] = {
    "512": 120.0, "1K": 120.0, "2K": 180.0, "4K": 360.0, "flex": FLEX_TIMEOUT_S,
}  # fmt: skip


class RunMode(StrEnum):
    """How rows are sent: one request each (online), or collected into Batch API jobs."""

    ONLINE = "online"
    BATCH = "batch"


class Fallback(StrEnum):
    """What the rows of a failed, expired or cancelled batch job do (``--fallback``): go online,
    or (none) go back to pending for a new job. Rows late for ``--deadline`` always go online."""

    ONLINE = "online"
    NONE = "none"


# Batch jobs are cut so that one result file streams comfortably (~1 GB of JSON: a few hundred
# 4K images, thousands at 1K) and a job's rows stay a count a person can reason about.
DEFAULT_BATCH_MAX_OUTPUT_BYTES = 1_000_000_000
DEFAULT_BATCH_MAX_REQUESTS = 10_000
DEFAULT_FALLBACK_MARGIN_S = 7200.0  # --fallback-margin 2h: time the online fallback gets


class AuthStyle(StrEnum):
    """How the key travels: Google's header, a gateway's Bearer token, or ``?key=``."""

    HEADER = "header"
    BEARER = "bearer"
    QUERY = "query"


class ApiKey:
    """An API key that cannot leak through repr, str, logging or exceptions."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str) -> None:
        self._value = value
        self.source = source  # "--api-key", "GEMINI_API_KEY", ...: safe to print

    def reveal(self) -> str:
        """The key itself: only for the request header."""
        return self._value

    def __repr__(self) -> str:
        return f"ApiKey(<redacted>, source={self.source!r})"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class RetryConfig:
    """How hard to try before a row is recorded as failed."""

    max_attempts: int = 5  # attempts that end in a transient error (5xx, timeout, connection)
    backoff_base_s: float = 3.0  # first backoff; doubles per attempt
    backoff_cap_s: float = 60.0
    jitter_s: float = 1.0  # uniform extra wait, so workers do not return in lockstep
    # A per-minute 429 is the server pacing us, not a fault of the row: it does not use the
    # attempt budget, but a row gives up after waiting this long in total.
    max_rate_limit_wait_s: float = 1800.0
    wait_for_daily_quota: bool = False  # --on-quota wait: sleep to the reset instead of stopping
    text_only_retries: int = 1  # extra attempts for NO_IMAGE / TEXT_ONLY answers
    # Sheds are Flex's way of saying "not now", not a fault: they have their own allowance.
    max_sheds: int = MAX_SHEDS
    # --tier-fallback standard: a row shed MAX_SHEDS times, or whose tier the route refuses,
    # is resent at standard instead of failing (or stopping the run).
    fallback: Tier | None = None
    timeouts_s: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_TIMEOUTS_S))


@dataclass(frozen=True, slots=True)
class RunConfig:
    """Everything a run needs, resolved from flags and environment by the CLI."""

    manifest: Path
    out_dir: Path
    model: str = DEFAULT_MODEL
    image_size: str | None = None
    aspect_ratio: str | None = None
    concurrency: int = 16
    rpm: float | None = None
    tier: Tier = Tier.STANDARD  # --tier: rows without a tier column of their own
    provider: Route = Route.GEMINI  # the route (--provider, or the SDK's variables)
    project: str | None = None  # Vertex: --project / GOOGLE_CLOUD_PROJECT (None: ADC's)
    location: str = DEFAULT_LOCATION  # Vertex: --location / GOOGLE_CLOUD_LOCATION
    api_version: str | None = None  # --api-version; None: by model (routes.api_version)
    base_url: str = GEMINI_BASE_URL
    api_key: ApiKey | None = None
    auth: AuthStyle = AuthStyle.HEADER
    limit: int | None = None
    retry: RetryConfig = field(default_factory=RetryConfig)
    prompt_template: str | None = None  # "Studio photo of {title}": filled from the row
    name_template: str | None = None  # "{sku}-{variant}": output file names
    fit_images: bool = False  # downscale source images over the per-image limit
    follow_image_links: bool = False  # an answer's image links are its images (some gateways)
    strict: bool = False  # any invalid row stops the run before the first request
    max_cost_usd: float | None = None  # spending cap: committed spend never passes it
    prices: PriceTable = field(default_factory=PriceTable)
    rerun: frozenset[Status] = frozenset({Status.FAILED})  # finished statuses to send again
    # --rerun-before: succeeded/refused rows finished since then are not sent again (a
    # continued rerun already redid them)
    rerun_before: datetime | None = None
    ids_file: Path | None = None  # restrict the run to these row ids
    stop_at: datetime | None = None  # --stop-after / --stop-at, as an aware wall-clock time
    handle_signals: bool = False  # the CLI's runs drain on SIGINT/SIGTERM
    drain_grace_s: float = 60.0  # how long a drain waits for in-flight requests
    batch_rows: int = 4096  # manifest rows read per batch
    disk_headroom_bytes: int | None = None  # space kept for a full disk; None: by concurrency
    sheet: str | None = None  # --sheet: the xlsx sheet to read (default: the first)
    id_column: str | None = None  # --id-column: the column holding row ids
    ids: IdScheme | None = None  # the id scheme settled for this run (plan.checkpass.open_settled)
    mode: RunMode = RunMode.ONLINE  # --mode
    deadline: datetime | None = None  # --deadline, aware: every row done by then (batch mode)
    fallback_margin_s: float = DEFAULT_FALLBACK_MARGIN_S  # --fallback-margin: before deadline
    fallback: Fallback = Fallback.NONE  # --fallback: failed/expired/cancelled jobs' rows
    batch_max_requests: int = DEFAULT_BATCH_MAX_REQUESTS  # requests per batch job at most
    batch_max_output_bytes: int = DEFAULT_BATCH_MAX_OUTPUT_BYTES  # a job's estimated results
    # The run's time: every wait, deadline and recorded time (a VirtualClock in tests).
    clock: Clock = field(default=SYSTEM_CLOCK, repr=False, compare=False)
