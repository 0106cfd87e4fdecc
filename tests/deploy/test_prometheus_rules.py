"""The alert rules and the Grafana dashboard: promtool checks them and runs the rules'
unit tests, and every metric and label they use is one the daemon really exports."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from drs_poller.observability.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "deploy/prometheus"
RULES = PROMETHEUS_DIR / "rules/drs-poller.rules.yml"
RULE_TESTS = PROMETHEUS_DIR / "tests/drs-poller.rules.test.yml"
COMPOSE_PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
DASHBOARD = REPO / "deploy/grafana/dashboards/drs-poller.json"
DATASOURCES = REPO / "deploy/grafana/provisioning/datasources/prometheus.yml"

ALERTS = {
    "DrsPollerExecutionStuck",
    "DrsPollerNotPolling",
    "DrsPollerDrsThrottling",
    "DrsPollerLatenessGrowing",
    "DrsPollerRecoveryTargetMissed",
    "DrsPollerServerStalled",
    "DrsPollerEventsNotPublished",
    "DrsPollerEventsQueueUnreachable",
    "DrsPollerAccountUnreachable",
}
# Labels Prometheus adds to every scraped series, or that only exist on its own series.
TARGET_LABELS = {"job", "instance"}


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """promtool, by the path the tool fixture found; never shell input."""
    return subprocess.run(argv, capture_output=True, text=True, check=False, cwd=REPO)  # noqa: S603


def _series_labels() -> dict[str, set[str]]:
    """Every series name the daemon exports, with its label names."""
    series: dict[str, set[str]] = {}
    for metric in vars(Metrics()).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        name, labels = metric._name, set(metric._labelnames)
        if metric._type == "counter":
            series[name + "_total"] = labels
        elif metric._type == "histogram":
            series[name + "_bucket"] = labels | {"le"}
            series[name + "_sum"] = labels
            series[name + "_count"] = labels
        else:
            series[name] = labels
    return series


SERIES = _series_labels()


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def check_expression(expr: str) -> None:
    """Every drs_poller_ series in ``expr`` exists, and every label it selects or groups by
    is one that each of those series has."""
    names = set(re.findall(r"\b(drs_poller_[a-z0-9_]+)", expr))
    for name in names:
        assert name in SERIES, f"{name} is not a series the daemon exports"
    if not names:
        return
    common = set.intersection(*(SERIES[n] for n in names)) | TARGET_LABELS
    for name, selector in re.findall(r"\b(drs_poller_[a-z0-9_]+)\{([^}]*)\}", expr):
        for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", selector):
            assert label in SERIES[name], f"{name} has no label {label!r}"
    for grouping in re.findall(r"\b(?:by|on|without|ignoring)\s*\(([^)]*)\)", expr):
        for label in filter(None, (part.strip() for part in grouping.split(","))):
            assert label in common, f"{label!r} is not a label of {sorted(names)}"


# --- promtool --------------------------------------------------------------------------


def test_promtool_checks_the_rules(promtool):
    result = run([promtool, "check", "rules", str(RULES)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_runs_the_rules_unit_tests(promtool):
    result = run([promtool, "test", "rules", str(RULE_TESTS)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_catch_a_wrong_threshold(promtool, tmp_path):
    # The unit tests run against a copy whose stuck threshold is 45 minutes instead of 35:
    # they must fail, or they would not be testing the rules at all.
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    text = RULES.read_text()
    assert "> 35 * 60" in text
    (tmp_path / "rules" / RULES.name).write_text(text.replace("> 35 * 60", "> 45 * 60"))
    (tmp_path / "tests" / RULE_TESTS.name).write_text(RULE_TESTS.read_text())
    result = run([promtool, "test", "rules", str(tmp_path / "tests" / RULE_TESTS.name)])
    assert result.returncode != 0
    assert "DrsPollerExecutionStuck" in result.stdout + result.stderr


def test_promtool_checks_the_compose_prometheus_config(promtool):
    result = run([promtool, "check", "config", str(COMPOSE_PROMETHEUS_CONFIG)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


# --- the rules' content -------------------------------------------------------------------


def test_the_alerts_and_only_them():
    assert {rule["alert"] for rule in _rules()} == ALERTS
    assert all("alert" in rule for rule in _rules()), "no recording rules in this file"


@pytest.mark.parametrize("rule", _rules(), ids=lambda rule: rule["alert"])
def test_each_alert_has_severity_summary_description_and_runbook(rule):
    assert rule["labels"]["severity"] in {"critical", "warning", "info"}
    annotations = rule["annotations"]
    assert annotations["summary"].strip()
    assert len(annotations["description"]) > len(annotations["summary"])
    assert annotations["runbook_url"] == f"docs/operations.md#{rule['alert'].lower()}"


@pytest.mark.parametrize("rule", _rules(), ids=lambda rule: rule["alert"])
def test_each_alert_uses_metrics_and_labels_the_daemon_exports(rule):
    check_expression(rule["expr"])


def test_the_expression_check_catches_wrong_names():
    for wrong in (
        "drs_poller_stuck_executions > 0",  # no such family
        'sum(rate(drs_poller_throttles_total{outcome="x"}[5m]))',  # no such label
        "sum by (region) (drs_poller_poll_lateness_seconds_bucket)",  # not grouped that way
    ):
        with pytest.raises(AssertionError):
            check_expression(wrong)


def test_every_alert_is_unit_tested_firing_and_quiet():
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert fires == ALERTS
    assert quiet == ALERTS


def test_rule_tests_load_the_rules_file():
    rule_files = yaml.safe_load(RULE_TESTS.read_text())["rule_files"]
    assert [(RULE_TESTS.parent / f).resolve() for f in rule_files] == [RULES.resolve()]


# --- the Grafana dashboard -----------------------------------------------------------------


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _targets() -> list[dict[str, Any]]:
    return [target for panel in _dashboard()["panels"] for target in panel["targets"]]


def test_dashboard_panels_are_laid_out_and_unique():
    panels = _dashboard()["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    assert len({p["title"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area


@pytest.mark.parametrize(
    ("topic", "series"),
    [
        ("active executions by phase", "drs_poller_active_executions"),
        ("poll lateness", "drs_poller_poll_lateness_seconds_bucket"),
        ("DRS calls", "drs_poller_aws_calls_total"),
        ("DRS throttles", "drs_poller_throttles_total"),
        ("finalized executions by status", "drs_poller_executions_finalized_total"),
        ("overdue executions", "drs_poller_overdue_executions"),
        ("measured recovery time", "drs_poller_recovery_time_seconds_bucket"),
        ("measured recovery point", "drs_poller_recovery_point_seconds_bucket"),
        ("missed targets", "drs_poller_recovery_targets_missed_total"),
        ("stalled servers", "drs_poller_stalled_servers"),
    ],
)
def test_dashboard_shows(topic, series):
    assert any(series in target["expr"] for target in _targets()), topic


def test_dashboard_queries_the_provisioned_datasource():
    (datasource,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    for panel in _dashboard()["panels"]:
        for source in (panel["datasource"], *(t["datasource"] for t in panel["targets"])):
            assert source == {"type": datasource["type"], "uid": datasource["uid"]}


def test_dashboard_queries_use_metrics_and_labels_the_daemon_exports():
    for target in _targets():
        check_expression(target["expr"])


def test_dashboard_queries_are_valid_promql(promtool, tmp_path):
    # promtool parses every query as a recording rule; Grafana's $__rate_interval becomes
    # the range it stands for.
    rules = [
        {"record": f"dashboard:query_{n}", "expr": t["expr"].replace("$__rate_interval", "20s")}
        for n, t in enumerate(_targets())
    ]
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run([promtool, "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules)} rules found" in result.stdout


def test_tool_rule_skips_on_a_developer_machine_and_fails_in_ci(tool_rule, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="not installed"):
        tool_rule("drs-poller-no-such-tool")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        tool_rule("drs-poller-no-such-tool")
    assert Path(tool_rule("sh")).name == "sh"
