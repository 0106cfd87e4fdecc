"""docs/operations.md has a runbook entry for every alert and alarm, and its links resolve.

Alerts link to ``docs/operations.md#<alert name lower-cased>`` (their ``runbook_url``),
the stack's CloudWatch alarms to the anchor in their description; a renamed heading
would leave whoever is paged on a dead link.
"""

from __future__ import annotations

import re

import pytest
import yaml
from test_cloudformation import ROOT, Stack, load_template

OPERATIONS = ROOT / "docs" / "operations.md"
RULES = ROOT / "deploy" / "prometheus" / "rules" / "drs-poller.rules.yml"
ALERTS = (
    "DrsPollerExecutionStuck",
    "DrsPollerNotPolling",
    "DrsPollerDrsThrottling",
    "DrsPollerLatenessGrowing",
    "DrsPollerRecoveryTargetMissed",
    "DrsPollerServerStalled",
    "DrsPollerEventsQueueUnreachable",
)


def github_anchor(heading: str) -> str:
    """The id GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def sections() -> dict[str, str]:
    """Anchor → the text under that heading, up to the next heading of any level."""
    out: dict[str, str] = {}
    anchor = None
    lines: list[str] = []
    in_code = False
    for line in OPERATIONS.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        heading = None if in_code else re.match(r"^#{1,6} (.+)$", line)
        if heading:
            if anchor is not None:
                out[anchor] = "\n".join(lines)
            anchor, lines = github_anchor(heading.group(1)), []
        else:
            lines.append(line)
    if anchor is not None:
        out[anchor] = "\n".join(lines)
    return out


@pytest.mark.parametrize("alert", ALERTS)
def test_every_alert_has_a_runbook_entry_under_its_lower_cased_name(alert):
    entry = sections().get(alert.lower())
    assert entry is not None, f"no '## {alert}' heading"
    for part in ("**What it means.**", "**What to look at.**", "**What to do.**"):
        assert part in entry
    assert "| filter " in entry or "| filter" in entry, "a Logs Insights query to run"


@pytest.mark.parametrize(
    "alarm", ["TasksBelowDesiredAlarm", "ErrorLinesAlarm", "TaskRestartsAlarm"]
)
def test_every_cloudwatch_alarm_links_to_its_runbook_entry(alarm):
    description = Stack().properties(alarm)["AlarmDescription"]
    (anchor,) = re.findall(r"docs/operations\.md#([\w-]+)", description)
    entry = sections().get(anchor)
    assert entry is not None, f"{alarm} links to #{anchor}, which is no heading"
    assert "**What it means.**" in entry
    assert "**What to do.**" in entry


def test_links_inside_the_operations_guide_resolve():
    text = OPERATIONS.read_text(encoding="utf-8")
    anchors = set(sections())
    targets = set(re.findall(r"\]\(#([\w-]+)\)", text))
    assert targets, "the guide links its sections"
    assert targets - anchors == set()
    for path in re.findall(r"\]\((\.\./[^)#]+)", text):
        assert (OPERATIONS.parent / path).resolve().exists() or "shared" in path, path


def test_alert_runbook_urls_point_at_existing_entries():
    if not RULES.exists():
        pytest.skip(f"{RULES.relative_to(ROOT)} comes from the local-deploy branch")
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    found = {}
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                found[rule["alert"]] = rule["annotations"]["runbook_url"]
    assert set(ALERTS) <= set(found)
    anchors = set(sections())
    for alert, url in found.items():
        assert url.split("#", 1)[0].endswith("docs/operations.md"), url
        assert url.split("#", 1)[1] in anchors, f"{alert}: {url}"


def test_the_cost_arithmetic_matches_the_task_size():
    """The guide prices the task the template defines; change one, change the other."""
    task = Stack().properties("TaskDefinition")
    vcpu, memory_gb = int(task["Cpu"]) / 1024, int(task["Memory"]) / 1024
    desired = int(load_template()["Parameters"]["DesiredCount"]["Default"])
    vcpu_hour, gb_hour, hours = 0.03238, 0.00356, 730
    per_task = (vcpu * vcpu_hour + memory_gb * gb_hour) * hours
    text = OPERATIONS.read_text(encoding="utf-8")
    assert f"${vcpu_hour}" in text
    assert f"${gb_hour}" in text
    assert f"**${per_task:.2f}**" in text
    assert f"**${per_task * desired:.2f}**" in text
    assert "7.15" in text  # the measured writes per execution
    assert "7.15" in (ROOT / "README.md").read_text(encoding="utf-8")
