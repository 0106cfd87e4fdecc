"""The drill report (drs_poller/core/report*.py): golden files for Markdown and JSON,
the HTML page's safety rules, and robustness to items without the evidence.

The golden files are tests/golden/report/<sample>.md and .json, from the sample items
of tests/report_samples.py. Any difference fails. After a deliberate change, regenerate
them and review the diff:

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_unit_report.py -q
    git diff tests/golden/
"""

from __future__ import annotations

import copy
import json
import os
import re
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import pytest
from report_samples import HOSTILE_REASON, SAMPLES, T0

from drs_poller.core.report import (
    PHASES,
    as_of_time,
    build_report,
    fmt_duration,
    fmt_offset,
    report_json,
)
from drs_poller.core.report_html import CSP, render_html
from drs_poller.core.report_md import cell, render_markdown

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "report"
SCHEMA_DOC = ROOT / "docs" / "report.md"
UPDATE = os.environ.get("UPDATE_GOLDEN", "") not in ("", "0")


def _report(name: str) -> dict:
    item, as_of = SAMPLES[name]()
    return build_report(item, as_of=as_of)


def _check_golden(path: Path, rendered: str) -> None:
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rendered, encoding="utf-8")
        return
    assert path.exists(), f"{path} is missing: run with UPDATE_GOLDEN=1 to write it"
    expected = path.read_text(encoding="utf-8")
    assert rendered == expected, (
        f"{path.name} differs from its golden file; if the change is meant, "
        "regenerate with UPDATE_GOLDEN=1 and review the diff"
    )


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_markdown_matches_its_golden_file(name):
    _check_golden(GOLDEN / f"{name}.md", render_markdown(_report(name)))


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_json_matches_its_golden_file(name):
    _check_golden(GOLDEN / f"{name}.json", report_json(_report(name)))


def test_a_golden_difference_fails(tmp_path, monkeypatch):
    """The comparison itself can fail: one changed character is caught."""
    golden = tmp_path / "x.md"
    golden.write_text("a report\n", encoding="utf-8")
    monkeypatch.setattr("test_unit_report.UPDATE", False)
    with pytest.raises(AssertionError, match="differs from its golden file"):
        _check_golden(golden, "a repord\n")


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_rendering_is_deterministic_and_does_not_touch_the_item(name):
    item, as_of = SAMPLES[name]()
    before = copy.deepcopy(item)
    first = build_report(item, as_of=as_of)
    assert build_report(item, as_of=as_of) == first
    assert render_html(first) == render_html(build_report(item, as_of=as_of))
    assert item == before


def test_json_is_versioned_and_in_the_documented_key_order():
    report = json.loads(report_json(_report("drill-completed")))
    assert list(report)[:3] == ["schema", "version", "asOf"]
    assert (report["schema"], report["version"]) == ("drs-poller/report", 1)
    assert list(report["execution"])[:3] == ["executionId", "planId", "executionType"]


def _paths(value, prefix=""):
    if isinstance(value, dict):
        for key, member in value.items():
            yield key
            yield from _paths(member, f"{prefix}.{key}")
    elif isinstance(value, list):
        for member in value:
            yield from _paths(member, prefix)


def test_every_json_field_is_documented_in_docs_report_md():
    doc = SCHEMA_DOC.read_text(encoding="utf-8")
    names = {name for sample in SAMPLES for name in _paths(_report(sample))}
    missing = sorted(name for name in names if f"`{name}`" not in doc)
    assert missing == []
    assert "version 1" in doc


def test_summary_verdicts_and_figures():
    drill = _report("drill-completed")
    assert drill["rto"] == {"targetSeconds": 2400, "measuredSeconds": 1815, "verdict": "MET"}
    assert drill["rpo"]["verdict"] == "MET"
    assert drill["counts"] == {
        "waves": 2,
        "servers": 3,
        "succeeded": 3,
        "failed": 0,
        "active": 0,
        "notStarted": 0,
        "stalled": 0,
    }
    mixed = _report("recovery-mixed")
    assert mixed["rto"]["verdict"] == "NOT_JUDGED"  # a target, and the execution runs
    wave = mixed["waves"][0]
    assert wave["rto"] == {
        "targetSeconds": 1500,
        "measuredSeconds": 1230,
        "verdict": "MISSED",
        "note": "1 server failed",
    }
    assert "rto" not in mixed["waves"][1] or mixed["waves"][1]["rto"]["verdict"] == "NO_TARGET"


def test_phases_come_from_the_timeline_with_open_failed_and_stalled_marked():
    mixed = _report("recovery-mixed")
    wave1, wave2 = mixed["waves"]
    ok, launch_failed, actions_failed = wave1["servers"]
    assert [p["phase"] for p in ok["phases"]] == list(PHASES)
    assert {p["state"] for p in ok["phases"]} == {"ENDED"}
    assert launch_failed["phases"][-1] == {
        "phase": "LAUNCH",
        "start": T0 + 890,
        "end": T0 + 1010,
        "state": "FAILED",
    }
    assert actions_failed["phases"][-1]["state"] == "FAILED"
    stalled, in_actions = wave2["servers"]
    assert stalled["phases"][-1] == {
        "phase": "CONVERSION",
        "start": T0 + 1910,
        "state": "OPEN",
        "stalled": True,
    }
    assert stalled["stalled"] == {"phase": "CONVERSION", "since": T0 + 1910, "boundSeconds": 420}
    assert in_actions["phases"][-1]["state"] == "OPEN"
    # A DRILL has no post-launch actions bar, even with a Launched time.
    drill = _report("drill-completed")
    assert all(
        [p["phase"] for p in s["phases"]] == ["SNAPSHOT", "CONVERSION", "LAUNCH"]
        for w in drill["waves"]
        for s in w["servers"]
    )


def test_each_failure_keeps_its_own_reason():
    failures = _report("recovery-mixed")["failures"]
    assert [(f["scope"], f.get("sourceServerId"), f.get("action")) for f in failures] == [
        ("SERVER", "s-00000000000000a2", None),
        ("SERVER", "s-00000000000000a3", None),
        ("POST_LAUNCH_ACTION", "s-00000000000000a3", "run-db-migrations"),
        ("POST_LAUNCH_ACTION", "s-00000000000000a3", "tag-instance"),
    ]
    assert failures[0]["reason"].startswith("LAUNCH_FAILED: Failed to launch")
    assert failures[2]["reason"] == HOSTILE_REASON
    assert failures[3]["optional"] is True
    failed = _report("recovery-failed")
    assert [f["scope"] for f in failed["failures"]] == ["EXECUTION", "SERVER"]


def test_an_item_without_evidence_renders_with_figures_not_measured():
    legacy = _report("legacy-drill")
    server = legacy["waves"][0]["servers"][0]
    assert "timeline" not in server
    assert server["phases"] == []
    assert legacy["rto"] == {"targetSeconds": 3600, "verdict": "NOT_JUDGED"}
    markdown = render_markdown(legacy)
    assert "not measured" in markdown
    page = render_html(legacy)
    assert page.count('class="note no-timeline"') == 2


@pytest.mark.parametrize(
    "item",
    [
        {},
        {"ExecutionId": "x"},
        {"ExecutionId": "x", "Status": "SOMETHING_NEW", "Waves": "not a list"},
        {
            "ExecutionId": "x",
            "PlanId": "p",
            "Status": "POLLING",
            "StartTime": Decimal(T0),
            "Waves": [
                "not a map",
                {"Servers": [{"Status": "WEIRD"}, 7, {"SourceServerId": "s-1", "Timeline": "x"}]},
                {
                    "WaveName": "w",
                    "Servers": [
                        {
                            "SourceServerId": "s-2",
                            "Timeline": {"SnapshotEnd": Decimal(T0 + 9), "Bogus": Decimal(1)},
                            "Stalled": {"Phase": "SNAPSHOT"},
                            "PostLaunchActions": ["bad", {"Status": "FAILED"}],
                        }
                    ],
                },
            ],
        },
    ],
)
def test_odd_and_malformed_items_still_render(item):
    report = build_report(item, as_of=T0 + 100.0)
    for rendered in (report_json(report), render_markdown(report), render_html(report)):
        assert rendered.endswith("\n")
    if item.get("Status") == "SOMETHING_NEW":
        assert "SOMETHING_NEW" in render_markdown(report)  # an unknown status, as it is


def test_as_of_is_the_end_time_of_a_finished_execution_else_now():
    item, _ = SAMPLES["drill-completed"]()
    assert as_of_time(item, now=T0 + 99_999) == T0 + 1830
    running, _ = SAMPLES["recovery-mixed"]()
    assert as_of_time(running, now=T0 + 99_999) == T0 + 99_999


def test_formatting():
    assert fmt_duration(45) == "45 s"
    assert fmt_duration(750) == "12 min 30 s"
    assert fmt_duration(7500) == "2 h 05 min"
    assert fmt_duration(None) == "—"
    assert fmt_offset(750) == "+0:12:30"
    assert fmt_offset(-5) == "-0:00:05"
    assert cell("a|b\nc<d>`e\\") == "a\\|b c&lt;d&gt;\\`e\\\\"
    assert cell(None) == "—"


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_html_is_self_contained_and_escapes_the_items_strings(name):
    item, as_of = SAMPLES[name]()
    page = render_html(build_report(item, as_of=as_of))
    assert f'<meta http-equiv="Content-Security-Policy" content="{CSP}">' in page
    assert "default-src 'none'" in CSP
    assert not re.search(r"(?i)(https?:|ftp:|//[a-z0-9])", page), "no URL of any kind"
    assert "<script" not in page.lower()
    assert "<link" not in page.lower()
    assert "@import" not in page
    assert "url(" not in page
    parsed = _Page()
    parsed.feed(page)
    tags = {tag for tag, _ in parsed.tags}
    assert not tags & {"script", "link", "img", "iframe", "object", "embed", "image", "use"}
    assert not any(k.startswith("on") for _, attrs in parsed.tags for k in attrs)


def test_html_has_one_lane_per_server_and_one_bar_per_phase():
    report = _report("recovery-mixed")
    parsed = _Page()
    parsed.feed(render_html(report))
    lanes = [attrs for tag, attrs in parsed.tags if tag == "g" and "lane" in (attrs["class"] or "")]
    expected = [(s["sourceServerId"], w["waveName"]) for w in report["waves"] for s in w["servers"]]
    assert [(lane["data-server"], lane["data-wave"]) for lane in lanes] == expected
    bars = [attrs for tag, attrs in parsed.tags if tag == "rect" and "data-phase" in attrs]
    assert len(bars) == sum(len(s["phases"]) for w in report["waves"] for s in w["servers"])
    assert {bar["data-state"] for bar in bars} == {"ENDED", "FAILED", "OPEN"}
    stalled = [lane for lane in lanes if "stalled" in (lane["class"] or "")]
    assert [lane["data-server"] for lane in stalled] == ["s-00000000000000b1"]


def test_hostile_strings_are_escaped_in_html():
    item, as_of = SAMPLES["recovery-mixed"]()
    item["Waves"][0]["WaveName"] = '"><svg onload=alert(1)>'
    page = render_html(build_report(item, as_of=as_of))
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<svg onload" not in page
    assert 'data-wave="&quot;&gt;&lt;svg onload=alert(1)&gt;"' in page


def test_a_failure_ends_the_open_phase_and_a_stall_without_a_start_draws_from_since():
    failed = _report("recovery-failed")["waves"][0]["servers"][0]
    assert failed["phases"] == [
        {"phase": "SNAPSHOT", "start": T0 + 15, "end": T0 + 950, "state": "FAILED"}
    ]
    item, as_of = SAMPLES["recovery-mixed"]()
    stalled = item["Waves"][1]["Servers"][0]
    del stalled["Timeline"]["ConversionStart"]  # counted from SnapshotEnd by the daemon
    stalled["Stalled"]["Since"] = stalled["Timeline"]["SnapshotEnd"]
    server = build_report(item, as_of=as_of)["waves"][1]["servers"][0]
    assert server["phases"][-1] == {
        "phase": "CONVERSION",
        "start": T0 + 1900,
        "state": "OPEN",
        "stalled": True,
    }
