"""Every setting of the daemon, read once from ``DRS_POLLER_*`` environment variables.

The model is built in ``main`` and passed down; nothing imports a global settings
object. Each field says what it means, its unit and its valid range; a bad value
stops start-up with a message that names the environment variable.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from drs_poller.core.backoff import BackoffPolicy
from drs_poller.core.deciding import Policy
from drs_poller.core.evidence import StallBounds
from drs_poller.core.phases import Intervals

ENV_PREFIX = "DRS_POLLER_"


class SettingsError(Exception):
    """Start-up configuration is invalid; the message names each bad variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # --- where the work is ---------------------------------------------------
    table_name: str = Field(
        min_length=3,
        max_length=255,
        pattern=r"^[a-zA-Z0-9_.-]+$",
        description="Execution-history DynamoDB table (required).",
    )
    status_index: str = Field(
        default="StatusIndex",
        min_length=3,
        max_length=255,
        description="The GSI on Status/StartTime through which POLLING executions are found.",
    )
    dynamodb_endpoint_url: str | None = Field(
        default=None, description="DynamoDB endpoint override (local stacks). Unset: AWS."
    )
    drs_endpoint_url: str | None = Field(
        default=None, description="DRS endpoint override for every region (local stacks)."
    )
    ec2_endpoint_url: str | None = Field(
        default=None, description="EC2 endpoint override for every region (local stacks)."
    )
    stepfunctions_endpoint_url: str | None = Field(
        default=None,
        description="Step Functions endpoint override (local stacks), for task-token answers.",
    )

    s3_endpoint_url: str | None = Field(
        default=None,
        description="S3 endpoint override (local stacks), for the drill reports.",
    )

    sqs_endpoint_url: str | None = Field(
        default=None,
        description="SQS endpoint override (local stacks), for the DRS events queue.",
    )

    # --- member accounts (issue 15; docs/operations.md) ------------------------------
    account_role_name: str = Field(
        default="drs-poller-member",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_+=,.@-]+$",
        description=(
            "Role the daemon assumes in a wave's AccountId (another account than its own):"
            " arn:<partition>:iam::<AccountId>:role/<this>, through the regional STS"
            " endpoint of the daemon's region. deploy/cloudformation/drs-poller-member.yaml"
            " creates it."
        ),
    )
    account_role_external_id: str | None = Field(
        default=None,
        min_length=2,
        max_length=1224,
        pattern=r"^[A-Za-z0-9_+=,.@:/-]+$",
        description=(
            "ExternalId sent with every AssumeRole into a member account (the member"
            " role's trust policy requires it when set). Unset: none sent."
        ),
    )
    sts_endpoint_url: str | None = Field(
        default=None,
        description=(
            "STS endpoint override (local stacks), for AssumeRole into member accounts."
            " Unset: the regional STS endpoint of the daemon's region."
        ),
    )

    # --- DRS events in (docs/events.md) --------------------------------------------
    events_queue_url: str | None = Field(
        default=None,
        max_length=1024,
        pattern=r"^https?://\S+$",
        description=(
            "SQS queue URL of DRS events (an EventBridge rule on source aws.drs sends them"
            " there, docs/events.md): each is a hint to poll the executions it concerns at"
            " once. Unset: no events are read; polling alone."
        ),
    )

    # --- drill reports (docs/report.md) ------------------------------------------
    report_bucket: str | None = Field(
        default=None,
        min_length=3,
        max_length=63,
        pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
        description=(
            "S3 bucket the daemon puts each finished execution's report into (HTML and"
            " JSON, docs/report.md). Unset: no reports are put."
        ),
    )
    report_prefix: str = Field(
        default="drs-poller/reports/",
        max_length=512,
        pattern=r"^[A-Za-z0-9!_.'()/-]*$",
        description=(
            "Key prefix of the reports in REPORT_BUCKET: <prefix><ExecutionId>.html and"
            " .json. The task role may put objects under it only."
        ),
    )

    # --- finalization events out (docs/events.md) ------------------------------------
    event_bus: str | None = Field(
        default=None,
        min_length=1,
        max_length=1600,
        pattern=r"^(arn:aws[a-z-]*:events:[a-z0-9-]+:\d{12}:event-bus/)?[A-Za-z0-9._/-]{1,256}$",
        description=(
            "EventBridge bus (name or ARN) the daemon puts an event on when a wave or an"
            " execution reaches its final status (docs/events.md). Unset: no events."
        ),
    )
    events_endpoint_url: str | None = Field(
        default=None,
        description="EventBridge endpoint override (local stacks), for the finalization events.",
    )

    # --- task tokens (contract §5) ----------------------------------------------
    task_heartbeat_interval: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description=(
            "Seconds between SendTaskHeartbeat calls for each task token whose wave or"
            " execution still runs (sent when it is polled; 0: none). Keep the state's"
            " HeartbeatSeconds above this plus the longest poll interval."
        ),
    )
    task_token_sweep_interval: float = Field(
        default=1800.0,
        ge=0,
        le=86400,
        description=(
            "Seconds between sweeps of the StatusIndex for finished executions whose task"
            " token was not answered (a crash between the final write and the answer); the"
            " first runs at start-up. 0: no sweep."
        ),
    )

    # --- replicas (several daemons on one table) ------------------------------
    lease_table_name: str | None = Field(
        default=None,
        min_length=3,
        max_length=255,
        pattern=r"^[a-zA-Z0-9_.-]+$",
        description=(
            "DynamoDB table of replica leases (hash LeaseGroup S, range ReplicaId S)."
            " Unset: no leases, every replica polls every execution (still correct)."
        ),
    )
    lease_group: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="Replicas sharing work share a group. Unset: the execution table's name.",
    )
    lease_time: float = Field(
        default=30.0,
        ge=3,
        le=3600,
        description=(
            "Seconds a replica's lease counter may stand still, as a peer observes it,"
            " before the peer takes over its executions. Renewed every third of it (or"
            " every half DISCOVERY_INTERVAL, if shorter)."
        ),
    )
    shard_jobs: int = Field(
        default=1000,
        ge=1,
        le=1000,
        description=(
            "Jobs per work shard. Replicas share work by shard: a place's executions (an"
            " account and region: the first wave's AccountId and Region) form one shard,"
            " or one per this many jobs, so that a shard's due jobs fit one DescribeJobs"
            " call (1000 ids) and sharing never splits a call."
        ),
    )
    replica_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        pattern=r"^[a-zA-Z0-9_.:-]+$",
        description=(
            "This replica's name in the lease table. Unset: host name, pid and a random suffix."
        ),
    )

    # --- schedule ------------------------------------------------------------
    interval_pending: float = Field(
        default=45.0, gt=0, le=3600, description="Seconds between polls in phase PENDING."
    )
    interval_started: float = Field(
        default=15.0, gt=0, le=3600, description="Seconds between polls in phase STARTED."
    )
    interval_in_progress: float = Field(
        default=30.0, gt=0, le=3600, description="Seconds between polls in phase IN_PROGRESS."
    )
    interval_post_launch: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description=(
            "Seconds between polls in phase POST_LAUNCH (RECOVERY, launched, actions running)."
        ),
    )
    discovery_interval: float = Field(
        default=30.0, gt=0, le=3600, description="Seconds between StatusIndex queries."
    )
    full_discovery_interval: float = Field(
        default=300.0,
        ge=0,
        le=86400,
        description=(
            "Seconds between discovery passes that read every POLLING item whole; the "
            "passes between read each item's key (and PollerRevision where the index "
            "projects it) only, and BatchGetItem just the new, peer-written or waiting ones. "
            "0: every pass reads whole items."
        ),
    )
    coalesce_window: float = Field(
        default=2.0,
        ge=0,
        le=60,
        description=(
            "Seconds. Executions due within this window of the first due one are polled "
            "together (early, never late), so one DescribeJobs call per region serves them all. "
            "A DRS event pulls the executions it concerns forward to half this window after it "
            "arrives, so that the events of a burst are polled together."
        ),
    )
    heartbeat_interval: float = Field(
        default=900.0,
        ge=1,
        le=3600,
        description=(
            "Seconds. When a poll changes nothing, LastPolledTime is still written at most this "
            "often, counted from the last write (from StartTime before the first), so a reader "
            "can tell a quiet execution from an abandoned one (LastPolledTime, or StartTime "
            "without one, older than this: abandoned). Each such write costs the whole item in "
            "write units."
        ),
    )

    # --- completion ----------------------------------------------------------
    overdue_after: float = Field(
        default=1800.0,
        gt=0,
        le=7 * 86400,
        description=(
            "Seconds from StartTime before an execution is reported overdue (never failed for it)."
        ),
    )
    post_launch_grace: float = Field(
        default=600.0,
        ge=0,
        le=86400,
        description=(
            "Seconds a launched RECOVERY server may show no action"
            " runs before it counts as NOT_CONFIGURED."
        ),
    )
    launch_actions_wait: float = Field(
        default=600.0,
        ge=0,
        le=86400,
        description=(
            "Seconds a launched RECOVERY server whose listed action runs have all ended waits"
            " for the runs of its source server's other active launch actions"
            " (ListLaunchActions); then a missing required action fails it."
        ),
    )
    max_execution_age: float = Field(
        default=43200.0,
        gt=0,
        le=30 * 86400,
        description=(
            "Seconds from StartTime after which an execution that cannot finish is ended as FAILED."
        ),
    )
    unknown_job_max_polls: int = Field(
        default=8,
        ge=1,
        le=1000,
        description=(
            "Consecutive polls in which DRS does not know a server's job before the server fails."
        ),
    )
    history_limit: int = Field(
        default=20,
        ge=2,
        le=200,
        description=(
            "Entries kept in each server's TransitionHistory (the newest; bounds the item size)."
        ),
    )

    # --- evidence: timeline, RTO/RPO, stalls (issue 13) -------------------------
    # No per-phase durations are published for DRS; the published whole-job figures
    # are an RTO "typically ranging between 5-20 minutes" and an average recovered
    # server that "normally boots within 5 minutes" (Linux) or "within 20 minutes"
    # (Windows) (docs/reference.md cites the pages). Each bound is that whole-job upper
    # figure, 20 minutes, times 1.5: a single phase outlasting the typical whole job.
    stall_snapshot_seconds: float = Field(
        default=1800.0,
        gt=0,
        le=7 * 86400,
        description=(
            "Seconds a server's snapshot phase (job log SNAPSHOT_START with no SNAPSHOT_END"
            " yet) may last before it is marked Stalled (never failed for it)."
        ),
    )
    stall_conversion_seconds: float = Field(
        default=1800.0,
        gt=0,
        le=7 * 86400,
        description=(
            "Seconds a server's conversion phase (SNAPSHOT_END or CONVERSION_START with no"
            " CONVERSION_END yet) may last before it is marked Stalled."
        ),
    )
    stall_launch_seconds: float = Field(
        default=1800.0,
        gt=0,
        le=7 * 86400,
        description=(
            "Seconds a server's launch phase (CONVERSION_END or LAUNCH_START, not LAUNCHED"
            " yet) may last before it is marked Stalled."
        ),
    )
    stall_post_launch_actions_seconds: float = Field(
        default=1800.0,
        gt=0,
        le=7 * 86400,
        description=(
            "Seconds a launched RECOVERY server's post-launch actions may run before it is"
            " marked Stalled."
        ),
    )
    stall_check_interval: float = Field(
        default=300.0,
        ge=30,
        le=86400,
        description=(
            "Seconds between reads of the job log (DescribeJobLogItems) of a job with a"
            " server not launched yet, for its stall, once a stall could be declared (its"
            " phase logged longer ago than the smallest bound left); other reads happen at"
            " a job's first sight, when a server reaches a launch result (LAUNCHED, FAILED,"
            " TERMINATED) and once at the job's end."
        ),
    )

    # --- concurrency and AWS calls -------------------------------------------
    max_concurrent_calls: int = Field(
        default=32,
        ge=1,
        le=1024,
        description="AWS calls in flight at once, all services and regions.",
    )
    max_concurrent_calls_per_region: int = Field(
        default=8,
        ge=1,
        le=256,
        description=(
            "DRS/EC2 calls in flight at once in one region of one account (DRS quotas are"
            " per account and region)."
        ),
    )
    max_concurrent_writes: int = Field(
        default=16, ge=1, le=1024, description="DynamoDB writes in flight at once."
    )
    max_inflight_batches: int = Field(
        default=4,
        ge=1,
        le=64,
        description=(
            "Poll batches waiting for DRS at once (the worker pool); a batch's writes go on"
            " after DRS has answered."
        ),
    )
    max_batch_executions: int = Field(
        default=1000,
        ge=1,
        le=100000,
        description=(
            "Executions polled in one batch at most: more due at once (every execution"
            " after a start or a failover) are split into batches of this many, which bounds"
            " the DRS answers held in memory at once (with MAX_INFLIGHT_BATCHES)."
        ),
    )
    backoff_base: float = Field(
        default=0.5, gt=0, le=60, description="Seconds. First retry delay ceiling (full jitter)."
    )
    backoff_cap: float = Field(
        default=20.0, gt=0, le=600, description="Seconds. Largest retry delay ceiling."
    )
    max_retry_after: float = Field(
        default=60.0,
        ge=0,
        le=900,
        description="Seconds. Upper bound on an honoured retryAfterSeconds / Retry-After.",
    )
    max_attempts: int = Field(
        default=5,
        ge=1,
        le=20,
        description=(
            "Attempts per AWS call for throttling, 5xx and timeouts (the SDK itself makes one)."
        ),
    )
    connect_timeout: float = Field(
        default=3.0, gt=0, le=120, description="Seconds to open a connection to an AWS endpoint."
    )
    read_timeout: float = Field(
        default=10.0, gt=0, le=300, description="Seconds to wait for an AWS response."
    )
    write_attempts: int = Field(
        default=5,
        ge=1,
        le=50,
        description="Times one poll's result is re-decided after a lost conditional write.",
    )

    # --- process ---------------------------------------------------------------
    metrics_host: str = Field(
        default="0.0.0.0",  # noqa: S104 - the scrape endpoint must be reachable from Prometheus
        description="Address /metrics, /healthz and /readyz listen on.",
    )
    metrics_port: int = Field(
        default=9100, ge=0, le=65535, description="Port of /metrics, /healthz and /readyz (0: any)."
    )
    log_format: Literal["json", "console"] = Field(
        default="json", description="`json` (one JSON object a line) or `console`."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Lowest level logged."
    )
    shutdown_grace: float = Field(
        default=20.0,
        ge=0,
        lt=30,
        description=(
            "Seconds in-flight polls get after SIGTERM before they are"
            " cancelled (below ECS's 30 s stop timeout)."
        ),
    )
    liveness_timeout: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="Seconds without a turn of the main loop before /healthz fails.",
    )

    @field_validator(
        "dynamodb_endpoint_url",
        "drs_endpoint_url",
        "ec2_endpoint_url",
        "stepfunctions_endpoint_url",
        "s3_endpoint_url",
        "events_endpoint_url",
        "sqs_endpoint_url",
        "sts_endpoint_url",
    )
    @classmethod
    def _endpoint_is_a_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None  # noqa: S101 - narrowing for mypy; None returned above
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("account_role_external_id", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # The stack passes its parameter's default "" when no external id is wanted.
        return None if value == "" else value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.backoff_cap < self.backoff_base:
            raise ValueError("DRS_POLLER_BACKOFF_CAP must be at least DRS_POLLER_BACKOFF_BASE")
        if self.max_execution_age <= self.overdue_after:
            raise ValueError(
                "DRS_POLLER_MAX_EXECUTION_AGE must be larger than DRS_POLLER_OVERDUE_AFTER"
            )
        return self


def load_settings(**overrides: object) -> Settings:
    """Build the settings from the environment (and explicit overrides, for tests and the demo).

    A ``pydantic.ValidationError`` names model fields; operators set environment
    variables, so the error is rewritten in their terms.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            name = f"{ENV_PREFIX}{field.upper()}" if field else "settings"
            message = error["msg"].removeprefix("Value error, ")
            given = error.get("input")
            shown = "" if field == "" or isinstance(given, dict) else f" (got {given!r})"
            lines.append(f"{name}: {message}{shown}")
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(lines)) from None


def backoff_from(settings: Settings) -> BackoffPolicy:
    """The retry policy of every AWS call, from the settings."""
    return BackoffPolicy(
        base=settings.backoff_base,
        cap=settings.backoff_cap,
        max_attempts=settings.max_attempts,
        max_retry_after=settings.max_retry_after,
    )


def policy_from(settings: Settings) -> Policy:
    """The core's policy, from the settings: its every value has its default here alone."""
    return Policy(
        intervals=Intervals(
            pending=settings.interval_pending,
            started=settings.interval_started,
            in_progress=settings.interval_in_progress,
            post_launch=settings.interval_post_launch,
        ),
        post_launch_grace=settings.post_launch_grace,
        launch_actions_wait=settings.launch_actions_wait,
        unknown_job_max_polls=settings.unknown_job_max_polls,
        history_limit=settings.history_limit,
        overdue_after=settings.overdue_after,
        max_execution_age=settings.max_execution_age,
        heartbeat_interval=settings.heartbeat_interval,
        stall_bounds=StallBounds(
            snapshot=settings.stall_snapshot_seconds,
            conversion=settings.stall_conversion_seconds,
            launch=settings.stall_launch_seconds,
            post_launch_actions=settings.stall_post_launch_actions_seconds,
        ),
    )
