"""Prometheus metrics for the poller, on a registry each :class:`Metrics` owns.

A private registry rather than the process-wide default lets tests (and the local
stack, which may run several pollers in one process) create as many instances as
they like without "Duplicated timeseries" errors.
"""

from __future__ import annotations

from importlib import metadata
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from prometheus_client.metrics_core import Metric

_PREFIX = "drs_poller_"

# Lateness is scheduler slack: well under a second when healthy, tens of seconds when
# the event loop or the AWS rate limits are saturated.
LATENESS_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

# A drill or recovery runs from a few minutes to half a day.
EXECUTION_DURATION_BUCKETS = (
    300.0,
    600.0,
    900.0,
    1200.0,
    1500.0,
    1800.0,
    2400.0,
    3600.0,
    7200.0,
    14400.0,
    43200.0,
)

# Measured recovery time (issue 13): DRS's published RTO is typically 5 to 20 minutes.
RECOVERY_TIME_BUCKETS = (
    60.0,
    120.0,
    300.0,
    600.0,
    900.0,
    1200.0,
    1800.0,
    2700.0,
    3600.0,
    7200.0,
    14400.0,
)
# Measured data-loss window: DRS's published RPO is seconds; a point in time chosen from
# the past is hours or days.
RECOVERY_POINT_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0)
EXECUTION_TYPES = ("DRILL", "RECOVERY")
STALL_PHASES = ("SNAPSHOT", "CONVERSION", "LAUNCH", "POST_LAUNCH_ACTIONS")

BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)

# drs_poller_unknown_values_total's value label: DRS's value cut to this many characters,
# and "other" once this many distinct (field, value) pairs have been counted.
UNKNOWN_VALUE_CHARS = 40
UNKNOWN_VALUE_CAP = 50


def _package_version() -> str:
    try:
        return metadata.version("drs-poller")
    except metadata.PackageNotFoundError:
        # Running from a source tree that was never installed.
        return "unknown"


class _BeforeCollect:
    """A collector that exports nothing and runs a hook each time the registry is
    collected (a scrape, or a test reading a sample). Registered first, so that the
    gauges the hook sets are collected after it: a ``CollectorRegistry`` collects in
    registration order (tests/observability/test_obs_metrics.py checks it)."""

    def __init__(self) -> None:
        self.hook: Callable[[], None] | None = None

    def describe(self) -> list[Metric]:
        return []  # nothing to describe; without it, registering would collect

    def collect(self) -> Iterator[Metric]:
        if self.hook is not None:
            self.hook()
        return iter(())


class Metrics:
    """Every metric family the poller exports, registered on :attr:`registry`."""

    def __init__(self, *, version: str | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self._before_collect = _BeforeCollect()
        reg.register(self._before_collect)
        ProcessCollector(registry=reg)
        PlatformCollector(registry=reg)
        GCCollector(registry=reg)

        self.active_executions = Gauge(
            _PREFIX + "active_executions",
            "Executions currently tracked by this poller, by execution type and DRS phase.",
            ["execution_type", "phase"],
            registry=reg,
        )
        self.polls = Counter(
            _PREFIX + "polls_total",
            "Polls of a single execution, by what the poll did "
            "(unchanged, updated, finalized, conflict, gone, error).",
            ["outcome"],
            registry=reg,
        )
        self.poll_lateness = Histogram(
            _PREFIX + "poll_lateness_seconds",
            "Seconds between when a poll was due and when it actually started.",
            buckets=LATENESS_BUCKETS,
            registry=reg,
        )
        self.aws_calls = Counter(
            _PREFIX + "aws_calls_total",
            "AWS API calls, by service, operation, account (the wave's AccountId, self for"
            " the daemon's own), region and outcome "
            "(success, throttled, error, timeout, rejected: a lost conditional write).",
            ["service", "operation", "account", "region", "outcome"],
            registry=reg,
        )
        self.aws_call_duration = Histogram(
            _PREFIX + "aws_call_duration_seconds",
            "Wall time of one AWS API call attempt, by service and operation.",
            ["service", "operation"],
            registry=reg,
        )
        self.throttles = Counter(
            _PREFIX + "throttles_total",
            "AWS API calls rejected with a throttling error, by account (self: the daemon's"
            " own) and region.",
            ["service", "operation", "account", "region"],
            registry=reg,
        )
        self.aws_retries = Counter(
            _PREFIX + "aws_retries_total",
            "AWS API call attempts that were retries of an earlier attempt.",
            ["service", "operation"],
            registry=reg,
        )
        self.write_conflicts = Counter(
            _PREFIX + "conditional_write_conflicts_total",
            "DynamoDB conditional writes lost to another writer (condition check failed).",
            registry=reg,
        )
        self.writes_landed_on_retry = Counter(
            _PREFIX + "dynamodb_writes_landed_on_retry_total",
            "DynamoDB conditional writes whose answer was lost (a timeout, a dropped "
            "connection) and whose retry found the write had landed: applied once, and "
            "counted here instead of as a conflict. A rise means DynamoDB answers slowly.",
            registry=reg,
        )
        self.writes = Counter(
            _PREFIX + "dynamodb_writes_total",
            "Successful DynamoDB writes, by kind (state, heartbeat, finalize).",
            ["kind"],
            registry=reg,
        )
        self.finalized = Counter(
            _PREFIX + "executions_finalized_total",
            "Executions driven to a final status, by execution type and final status.",
            ["execution_type", "status"],
            registry=reg,
        )
        self.overdue = Gauge(
            _PREFIX + "overdue_executions",
            "Tracked executions older than DRS_POLLER_OVERDUE_AFTER (from StartTime); "
            "they are still polled, never failed for it.",
            registry=reg,
        )
        self.oldest_age = Gauge(
            _PREFIX + "oldest_execution_age_seconds",
            "Seconds since StartTime of the oldest execution this replica tracks in POLLING "
            "(0 when it tracks none); take max() across replicas.",
            registry=reg,
        )
        self.unobserved = Counter(
            _PREFIX + "unobserved_calls_total",
            "Batched DRS lookups of a poll that failed for good, so that nothing was concluded"
            " from them this poll, by operation and kind (throttled, transient, permanent,"
            " invalid_drs_data, account_unreachable, unexpected).",
            ["operation", "kind"],
            registry=reg,
        )
        self.lease_renewals = Counter(
            _PREFIX + "lease_renewals_total",
            "Renewals of this replica's lease: success, error; and released at shutdown.",
            ["outcome"],
            registry=reg,
        )
        self.replicas = Gauge(
            _PREFIX + "replicas",
            "Replicas this one counts as live in its lease group, itself included while its"
            " lease is valid (0: it polls nothing).",
            registry=reg,
        )
        self.ownership_changes = Counter(
            _PREFIX + "ownership_changes_total",
            "Executions taken over from a peer (taken) or handed to one (handed).",
            ["direction"],
            registry=reg,
        )
        self.execution_duration = Histogram(
            _PREFIX + "execution_duration_seconds",
            "Seconds from start to final status of finalized executions.",
            ["execution_type", "status"],
            buckets=EXECUTION_DURATION_BUCKETS,
            registry=reg,
        )
        self.malformed_items = Counter(
            _PREFIX + "malformed_items_total",
            "DynamoDB items skipped because they could not be parsed.",
            registry=reg,
        )
        self.execution_errors = Counter(
            _PREFIX + "execution_errors_total",
            "Errors while handling one execution, by kind: throttled, transient or permanent "
            "(an AWS call that failed for good), invalid_drs_data, unexpected.",
            ["kind"],
            registry=reg,
        )
        self.discoveries = Counter(
            _PREFIX + "discoveries_total",
            "Discovery passes over the table for executions to track, by outcome.",
            ["outcome"],
            registry=reg,
        )
        self.last_discovery = Gauge(
            _PREFIX + "last_discovery_timestamp_seconds",
            "Unix time of the last successful discovery pass.",
            registry=reg,
        )
        self.last_poll = Gauge(
            _PREFIX + "last_poll_timestamp_seconds",
            "Unix time of the last completed poll of any execution.",
            registry=reg,
        )
        self.dispatch_batch_size = Histogram(
            _PREFIX + "dispatch_batch_size",
            "Executions per dispatched poll batch.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=reg,
        )
        self.batch_places = Histogram(
            _PREFIX + "batch_places",
            "Places (account, region) asked with DescribeJobs per dispatched poll batch: one"
            " DescribeJobs (plus pages and retries) per place per batch.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=reg,
        )
        self.inflight_batches = Gauge(
            _PREFIX + "inflight_batches",
            "Poll batches dispatched and not yet completed.",
            registry=reg,
        )
        self.task_token_answers = Counter(
            _PREFIX + "task_token_answers_total",
            "Task-token answers, by kind (wave, execution) and outcome: success, failure"
            " (SendTaskSuccess / SendTaskFailure accepted), invalid_token, task_timed_out,"
            " task_does_not_exist (rejected; recorded, not retried), error (sent again later).",
            ["kind", "outcome"],
            registry=reg,
        )
        self.task_token_heartbeats = Counter(
            _PREFIX + "task_token_heartbeats_total",
            "SendTaskHeartbeat calls, by outcome: success, invalid_token, task_timed_out,"
            " task_does_not_exist (recorded like an answer), error.",
            ["outcome"],
            registry=reg,
        )
        self.task_token_answer_delay = Histogram(
            _PREFIX + "task_token_answer_delay_seconds",
            "Seconds from the write that made a wave or execution final to Step Functions"
            " accepting its answer.",
            buckets=LATENESS_BUCKETS,
            registry=reg,
        )
        self.task_token_dropped = Counter(
            _PREFIX + "task_token_queue_full_total",
            "Task-token answers or heartbeats not queued because the queue was full"
            " (queued again at the next poll or sweep).",
            registry=reg,
        )
        self.task_token_sweeps = Counter(
            _PREFIX + "task_token_sweeps_total",
            "Sweeps of the StatusIndex for finished executions with a task token not answered.",
            registry=reg,
        )
        self.unknown_values = Counter(
            _PREFIX + "unknown_values_total",
            "Values outside the DRS model's enums, by field and value, counted once per"
            f" execution that saw them. value is cut to {UNKNOWN_VALUE_CHARS} characters;"
            f" past {UNKNOWN_VALUE_CAP} distinct pairs it is 'other'.",
            ["field", "value"],
            registry=reg,
        )
        self.launch_actions_unavailable = Counter(
            _PREFIX + "launch_actions_unavailable_total",
            "Source servers whose ListLaunchActions could not be read for good, so their"
            " RECOVERY server is judged on the runs DRS lists, by reason (access_denied,"
            " not_found, validation, retries_exhausted, other).",
            ["reason"],
            registry=reg,
        )
        self._register_evidence(reg)
        self.events_published = Counter(
            _PREFIX + "events_published_total",
            "Finalization events put on DRS_POLLER_EVENT_BUS (docs/events.md), by type"
            " (execution, wave) and outcome: sent (EventBridge accepted it), retried (an entry"
            " EventBridge rejected, sent again), failed (rejected or not sent after the"
            " retries; sent again at the next poll or by the sweep), dropped (the queue was"
            " full).",
            ["type", "outcome"],
            registry=reg,
        )
        for kind in ("execution", "wave"):
            for outcome in ("failed", "dropped"):
                self.events_published.labels(kind, outcome)  # 0 from the start: increase()
        self._register_events_in(reg)
        self.report_puts = Counter(
            _PREFIX + "report_puts_total",
            "Drill reports put to DRS_POLLER_REPORT_BUCKET when an execution ended, by format"
            " (html, json) and outcome: success, error (after the retries; not tried again),"
            " dropped (the queue was full), render_error.",
            ["format", "outcome"],
            registry=reg,
        )
        self.build_info = Gauge(
            _PREFIX + "build_info",
            "Always 1; the version label carries the running drs-poller version.",
            ["version"],
            registry=reg,
        )
        self.build_info.labels(version=version or _package_version()).set(1)

        # Every (execution_type, phase) pair ever set, so set_active can zero the ones
        # that disappear instead of leaving their last count frozen in place.
        self._active_keys: set[tuple[str, str]] = set()
        self._unknown_pairs: set[tuple[str, str]] = set()

    def _register_events_in(self, reg: CollectorRegistry) -> None:
        """DRS events in through SQS (issue 14, docs/events.md)."""
        self.events_received = Counter(
            _PREFIX + "events_received_total",
            "Messages received from DRS_POLLER_EVENTS_QUEUE_URL, by the DRS event's"
            " detail_type ('unrecognised' for a message that is not a DRS event).",
            ["detail_type"],
            registry=reg,
        )
        self.events_discarded = Counter(
            _PREFIX + "events_discarded_total",
            "Messages deleted without pulling a poll forward, by reason: malformed_json,"
            " not_an_event, unknown_source, unknown_detail_type, other_account, no_resources,"
            " no_execution, owned_elsewhere (another replica's, past the receive bound).",
            ["reason"],
            registry=reg,
        )
        self.events_released = Counter(
            _PREFIX + "events_released_total",
            "Messages made visible again at once (ChangeMessageVisibility 0) for the replica"
            " that owns the executions they concern.",
            registry=reg,
        )
        self.events_hinted = Counter(
            _PREFIX + "events_hinted_total",
            "Executions a DRS event pulled forward in the poll queue (or marked to be polled"
            " again at once, when a poll of theirs was in flight).",
            registry=reg,
        )
        self.event_lag = Histogram(
            _PREFIX + "event_to_poll_seconds",
            "Seconds from a DRS event's time to the start of the poll it caused.",
            buckets=LATENESS_BUCKETS,
            registry=reg,
        )
        self.events_queue_errors = Counter(
            _PREFIX + "events_queue_errors_total",
            "Failed calls to the events queue (after the Caller's retries), by reason:"
            " queue_missing, access_denied, throttled, transient, other.",
            ["reason"],
            registry=reg,
        )
        self.account_credentials_failures = Counter(
            _PREFIX + "account_credentials_failures_total",
            "AssumeRole into a member account that failed for good (after the Caller's"
            " retries), by account and reason: denied, throttled, error. Its executions keep"
            " their status and are retried with backoff.",
            ["account", "reason"],
            registry=reg,
        )
        self.account_reachable = Gauge(
            _PREFIX + "account_reachable",
            "1 while the daemon holds valid credentials for a member account (a wave's"
            " AccountId), 0 after AssumeRole into it failed and the credentials ran out.",
            ["account"],
            registry=reg,
        )
        self.events_queue_reachable = Gauge(
            _PREFIX + "events_queue_reachable",
            "1 while the last ReceiveMessage on the events queue (queue: its name) succeeded,"
            " 0 after it failed; absent when DRS_POLLER_EVENTS_QUEUE_URL is unset.",
            ["queue"],
            registry=reg,
        )

    def _register_evidence(self, reg: CollectorRegistry) -> None:
        """The evidence families (issue 13: RTO, RPO, targets, stalls)."""
        self.recovery_time = Histogram(
            _PREFIX + "recovery_time_seconds",
            "Measured recovery time of each server (its wave's StartTime to launched),"
            " observed once per server, by execution type and DRS account and region.",
            ["execution_type", "account", "region"],
            buckets=RECOVERY_TIME_BUCKETS,
            registry=reg,
        )
        self.recovery_point = Histogram(
            _PREFIX + "recovery_point_seconds",
            "Measured data-loss window of each server (its job's start minus the data time"
            " of the snapshot it launched from), observed once per server, by execution type"
            " and DRS account and region.",
            ["execution_type", "account", "region"],
            buckets=RECOVERY_POINT_BUCKETS,
            registry=reg,
        )
        self.targets_missed = Counter(
            _PREFIX + "recovery_targets_missed_total",
            "RtoTargetSeconds / RpoTargetSeconds (on a wave or an execution) judged missed,"
            " once each, by target (rto, rpo) and execution type.",
            ["target", "execution_type"],
            registry=reg,
        )
        self.stalls = Counter(
            _PREFIX + "stalls_total",
            "Servers marked Stalled (a phase lasted longer than its DRS_POLLER_STALL_*"
            " bound), counted when the mark is written, by phase.",
            ["phase"],
            registry=reg,
        )
        self.stalled_servers = Gauge(
            _PREFIX + "stalled_servers",
            "Servers of the executions this replica tracks that are marked Stalled now, by"
            " phase (never failed for it: DRS stays the source of truth).",
            ["phase"],
            registry=reg,
        )
        self.evidence_degraded = Counter(
            _PREFIX + "evidence_degraded_total",
            "Evidence (timeline, RTO/RPO, stalls) left unknown, by reason: job_log_event"
            " (a job-log event with a name outside the model or a time that does not"
            " parse), rules (the evidence could not be built for a poll; statuses were"
            " written). A job log that could not be read counts in"
            ' drs_poller_unobserved_calls_total{operation="DescribeJobLogItems"}.',
            ["reason"],
            registry=reg,
        )
        for target in ("rto", "rpo"):
            for kind in EXECUTION_TYPES:
                self.targets_missed.labels(target, kind)  # 0 from the start: increase() works
        for phase in STALL_PHASES:
            self.stalls.labels(phase)
            self.stalled_servers.labels(phase).set(0)

    def count_unknown_value(self, field: str, value: str) -> None:
        """One execution saw ``value`` in ``field``; the label set stays bounded."""
        pair = (field[:UNKNOWN_VALUE_CHARS], value[:UNKNOWN_VALUE_CHARS])
        if pair not in self._unknown_pairs:
            if len(self._unknown_pairs) >= UNKNOWN_VALUE_CAP:
                pair = (pair[0], "other")
            else:
                self._unknown_pairs.add(pair)
        self.unknown_values.labels(*pair).inc()

    def set_active(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Replace the active-execution gauge with ``counts`` keyed by (type, phase)."""
        for key in self._active_keys - counts.keys():
            self.active_executions.labels(execution_type=key[0], phase=key[1]).set(0)
        for (execution_type, phase), count in counts.items():
            self.active_executions.labels(execution_type=execution_type, phase=phase).set(count)
        self._active_keys.update(counts.keys())

    def set_stalled(self, counts: Mapping[str, int]) -> None:
        """Replace the stalled-servers gauge with ``counts`` keyed by phase (the four
        phases only: the label set stays bounded whatever an item holds)."""
        for phase in STALL_PHASES:
            self.stalled_servers.labels(phase).set(counts.get(phase, 0))

    def refresh_on_collect(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` before each collection: gauges computed from the engine's state
        are set when they are read, not after every batch of polls (at 10,000
        executions, a pass over them after every batch was 1.7 % of the daemon's CPU)."""
        self._before_collect.hook = hook

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition of this registry and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
