from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from drs_poller.observability.metrics import UNKNOWN_VALUE_CAP, UNKNOWN_VALUE_CHARS, Metrics

EXPECTED_FAMILIES = {
    # The parser names counters without their _total suffix.
    "drs_poller_active_executions",
    "drs_poller_polls",
    "drs_poller_poll_lateness_seconds",
    "drs_poller_aws_calls",
    "drs_poller_aws_call_duration_seconds",
    "drs_poller_throttles",
    "drs_poller_aws_retries",
    "drs_poller_conditional_write_conflicts",
    "drs_poller_dynamodb_writes_landed_on_retry",
    "drs_poller_dynamodb_writes",
    "drs_poller_executions_finalized",
    "drs_poller_overdue_executions",
    "drs_poller_oldest_execution_age_seconds",
    "drs_poller_lease_renewals",
    "drs_poller_unobserved_calls",
    "drs_poller_replicas",
    "drs_poller_ownership_changes",
    "drs_poller_execution_duration_seconds",
    "drs_poller_malformed_items",
    "drs_poller_execution_errors",
    "drs_poller_discoveries",
    "drs_poller_last_discovery_timestamp_seconds",
    "drs_poller_last_poll_timestamp_seconds",
    "drs_poller_dispatch_batch_size",
    "drs_poller_batch_places",
    "drs_poller_inflight_batches",
    "drs_poller_task_token_answers",
    "drs_poller_task_token_heartbeats",
    "drs_poller_task_token_answer_delay_seconds",
    "drs_poller_task_token_queue_full",
    "drs_poller_task_token_sweeps",
    "drs_poller_unknown_values",
    "drs_poller_launch_actions_unavailable",
    "drs_poller_recovery_time_seconds",
    "drs_poller_recovery_point_seconds",
    "drs_poller_recovery_targets_missed",
    "drs_poller_stalls",
    "drs_poller_stalled_servers",
    "drs_poller_evidence_degraded",
    "drs_poller_report_puts",
    "drs_poller_events_published",
    "drs_poller_events_received",
    "drs_poller_events_discarded",
    "drs_poller_events_released",
    "drs_poller_events_hinted",
    "drs_poller_event_to_poll_seconds",
    "drs_poller_events_queue_errors",
    "drs_poller_events_queue_reachable",
    "drs_poller_account_credentials_failures",
    "drs_poller_account_reachable",
    "drs_poller_build_info",
}


def _family_names(metrics: Metrics) -> set[str]:
    body, _ = metrics.render()
    return {f.name for f in text_string_to_metric_families(body.decode())}


def test_every_family_is_prefixed_or_a_runtime_collector() -> None:
    names = _family_names(Metrics())
    assert names, "nothing rendered"
    bad = {n for n in names if not n.startswith(("drs_poller_", "process_", "python_"))}
    assert not bad
    assert any(n.startswith("process_") for n in names)
    assert any(n.startswith("python_") for n in names)


def test_all_service_families_are_registered() -> None:
    names = _family_names(Metrics())
    assert names >= EXPECTED_FAMILIES
    # The text format exposes counters' and histograms' _created samples as gauges of their own.
    service = {n for n in names if n.startswith("drs_poller_") and not n.endswith("_created")}
    assert service == EXPECTED_FAMILIES


def test_counter_sample_names_carry_total_suffix() -> None:
    metrics = Metrics()
    metrics.polls.labels(outcome="updated").inc()
    body, _ = metrics.render()
    assert b'drs_poller_polls_total{outcome="updated"} 1.0' in body


def test_two_instances_do_not_collide() -> None:
    first, second = Metrics(), Metrics()
    first.polls.labels(outcome="unchanged").inc(3)
    first.write_conflicts.inc()
    unchanged = {"outcome": "unchanged"}
    assert first.registry.get_sample_value("drs_poller_polls_total", unchanged) == 3
    assert second.registry.get_sample_value("drs_poller_polls_total", unchanged) is None
    assert second.registry.get_sample_value("drs_poller_conditional_write_conflicts_total") == 0


def test_set_active_sets_given_pairs_and_zeroes_stale_ones() -> None:
    metrics = Metrics()

    def active(execution_type: str, phase: str) -> float | None:
        return metrics.registry.get_sample_value(
            "drs_poller_active_executions", {"execution_type": execution_type, "phase": phase}
        )

    metrics.set_active({("drill", "launching"): 3, ("recovery", "converting"): 1})
    assert active("drill", "launching") == 3
    assert active("recovery", "converting") == 1

    metrics.set_active({("drill", "launching"): 2, ("drill", "running"): 5})
    assert active("drill", "launching") == 2
    assert active("drill", "running") == 5
    assert active("recovery", "converting") == 0

    metrics.set_active({})
    assert active("drill", "launching") == 0
    assert active("drill", "running") == 0
    assert active("recovery", "converting") == 0


def test_build_info_carries_version() -> None:
    metrics = Metrics(version="1.2.3")
    assert metrics.registry.get_sample_value("drs_poller_build_info", {"version": "1.2.3"}) == 1


def test_build_info_defaults_to_installed_version() -> None:
    body, _ = Metrics().render()
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    [sample] = families["drs_poller_build_info"].samples
    assert sample.value == 1
    assert sample.labels["version"]


def test_histogram_buckets() -> None:
    metrics = Metrics()
    metrics.poll_lateness.observe(0.0005)
    metrics.execution_duration.labels(execution_type="drill", status="completed").observe(1000)
    metrics.dispatch_batch_size.observe(7)
    reg = metrics.registry
    assert reg.get_sample_value("drs_poller_poll_lateness_seconds_bucket", {"le": "0.001"}) == 1
    assert reg.get_sample_value("drs_poller_poll_lateness_seconds_bucket", {"le": "60.0"}) == 1
    labels = {"execution_type": "drill", "status": "completed"}
    assert (
        reg.get_sample_value(
            "drs_poller_execution_duration_seconds_bucket", {**labels, "le": "900.0"}
        )
        == 0
    )
    assert (
        reg.get_sample_value(
            "drs_poller_execution_duration_seconds_bucket", {**labels, "le": "1200.0"}
        )
        == 1
    )
    assert reg.get_sample_value("drs_poller_dispatch_batch_size_bucket", {"le": "10.0"}) == 1
    assert reg.get_sample_value("drs_poller_dispatch_batch_size_bucket", {"le": "5.0"}) == 0


def test_render_content_type_is_prometheus_text() -> None:
    _, content_type = Metrics().render()
    assert content_type.startswith("text/plain")


def test_unknown_values_keep_a_bounded_label_set() -> None:
    metrics = Metrics()
    metrics.count_unknown_value("launchStatus", "B" * 100)
    metrics.count_unknown_value("launchStatus", "B" * 100)
    sample = metrics.registry.get_sample_value(
        "drs_poller_unknown_values_total",
        {"field": "launchStatus", "value": "B" * UNKNOWN_VALUE_CHARS},
    )
    assert sample == 2
    for n in range(UNKNOWN_VALUE_CAP + 5):
        metrics.count_unknown_value("runs.status", f"V{n}")
    values = {
        sample.labels["value"]
        for family in metrics.registry.collect()
        if family.name == "drs_poller_unknown_values"
        for sample in family.samples
        if sample.name.endswith("_total")
    }
    assert len(values) == UNKNOWN_VALUE_CAP + 1  # the cap, plus "other"
    assert "other" in values


def test_evidence_series_start_at_zero_and_stay_bounded() -> None:
    metrics = Metrics()
    sample = metrics.registry.get_sample_value
    for target in ("rto", "rpo"):
        for kind in ("DRILL", "RECOVERY"):
            labels = {"target": target, "execution_type": kind}
            assert sample("drs_poller_recovery_targets_missed_total", labels) == 0
    metrics.set_stalled({"CONVERSION": 2, "SOMETHING_AN_ITEM_HELD": 5})
    assert sample("drs_poller_stalled_servers", {"phase": "CONVERSION"}) == 2
    assert sample("drs_poller_stalled_servers", {"phase": "LAUNCH"}) == 0
    assert sample("drs_poller_stalled_servers", {"phase": "SOMETHING_AN_ITEM_HELD"}) is None
    metrics.set_stalled({})
    assert sample("drs_poller_stalled_servers", {"phase": "CONVERSION"}) == 0


def test_the_state_gauges_are_set_when_read() -> None:
    """The engine's gauges are computed by the hook at each collection, before the
    gauges themselves are collected: a scrape, or a read of one sample, sees what the
    hook set at that moment."""
    metrics = Metrics()
    calls = 0

    def hook() -> None:
        nonlocal calls
        calls += 1
        metrics.overdue.set(calls)
        metrics.set_stalled({"LAUNCH": calls})

    metrics.refresh_on_collect(hook)
    assert calls == 0  # registering it collected nothing
    assert metrics.registry.get_sample_value("drs_poller_overdue_executions") == 1
    assert metrics.registry.get_sample_value("drs_poller_stalled_servers", {"phase": "LAUNCH"}) == 2
    body, _ = metrics.render()
    assert calls == 3
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert families["drs_poller_overdue_executions"].samples[0].value == 3
