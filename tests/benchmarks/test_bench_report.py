# ruff: noqa: RUF001 - the report is typeset: its ranges use an en dash
"""docs/benchmarks.md over repeated runs (benchmarks/report.py): medians and ranges, the
targets on the medians, and the table of runs with their machine's load."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from benchmarks import __main__ as bench
from benchmarks import profiles, report, run
from drs_poller.settings import load_settings

if TYPE_CHECKING:
    from pathlib import Path


def _run(own: float, cpu: float, rss: float, *, others: float) -> dict[str, Any]:
    return {
        "tracker": "drs-poller",
        "measured_at": "2026-12-06T03:00:00Z",
        "load_average_at_start": [0.5, 0.4, 0.3],
        "lateness_real_s": {"p99": own + 2.0},
        "lateness_shares_real_s": {"own": {"p99": own}, "write_wait": {"p99": 2.0}},
        "detection_real_s": {"excess_over_interval": {"p99": 1.0}},
        "peak_rss_mb": rss,
        "cpu_percent_of_core": cpu,
        "measured_real_scale_h": 1.0,
        "per_real_hour": {"read_units": 1000.0, "write_units": 2000.0},
        "machine_cpu": {
            "percent_of_core": {"tracker": cpu, "moto": 50.0, "bench": 20.0, "others": others},
            "loaded": others >= 10.0,
            "loaded_from_percent": 10.0,
        },
    }


@pytest.fixture
def result() -> dict[str, Any]:
    runs = [
        _run(0.9, 24.0, 310.0, others=2.0),
        _run(0.4, 20.0, 280.0, others=30.0),
        _run(0.6, 22.0, 290.0, others=1.0),
    ]
    return {"trackers": {"drs-poller": {**runs[2], "runs": runs, "median_run": 2}}}


def test_targets_are_checked_on_the_medians(result: dict[str, Any]) -> None:
    figures = report.figures_of(result)

    assert figures["own_lateness_p99"] == pytest.approx(0.6)
    assert figures["lateness_p99"] == pytest.approx(2.6)
    assert figures["cpu_percent"] == pytest.approx(22.0)
    assert figures["peak_rss_mb"] == pytest.approx(290.0)
    assert figures["runs"] == 3


def test_a_figure_shows_its_median_and_range_and_an_empty_figure_is_left_out(
    result: dict[str, Any],
) -> None:
    table = report._Table(result)

    table.figure("peak RSS", lambda t: t["peak_rss_mb"], lambda v: f"{v:.0f} MB")
    table.figure("never recorded", lambda t: t.get("absent"), report._s)

    assert table.rows[2:] == ["| peak RSS | 290 MB (280 MB–310 MB) |"]


def test_one_run_shows_its_figure_alone() -> None:
    table = report._Table({"trackers": {"drs-poller": _run(0.5, 20.0, 250.0, others=0.0)}})

    table.figure("peak RSS", lambda t: t["peak_rss_mb"], lambda v: f"{v:.0f} MB")

    assert table.rows[2:] == ["| peak RSS | 250 MB |"]


def test_the_runs_table_marks_the_median_run_and_the_loaded_one(result: dict[str, Any]) -> None:
    lines = report._runs_table(result)

    rows = [line for line in lines if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 3
    assert rows[0].endswith("| quiet |")
    assert "30.0 %" in rows[1]
    assert rows[1].endswith("| loaded |")
    assert rows[2].startswith("| 3 (median) |")
    assert "600 ms" in rows[2]  # its own lateness p99
    assert any("10 % of a core or more" in line for line in lines)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["--repeat", "0"], "--repeat: must be at least 1, got 0", id="zero runs"),
        pytest.param(["--repeat", "two"], "--repeat: not a whole number: 'two'", id="words"),
    ],
)
def test_a_bad_repeat_is_refused_naming_it(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        bench.main(argv)

    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


def test_profile_without_py_spy_is_refused_saying_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(profiles, "executable", lambda: None)

    with pytest.raises(SystemExit) as stopped:
        bench.main(["--profile", "--no-report"])

    assert stopped.value.code == 2
    assert "--profile needs py-spy, which the bench extra installs" in capsys.readouterr().err


def test_the_full_tracker_puts_reports_and_events_through_the_counting_proxy(
    tmp_path: Path,
) -> None:
    common: dict[str, Any] = {
        "dynamodb_url": "http://127.0.0.1:1",
        "drs_url": "http://127.0.0.1:2",
        "speed": 1.0,
        "summary": tmp_path / "summary.json",
    }
    _, env = run.tracker_command(
        "drs-poller-full",
        table="bench-w10k-drs-poller-full-1",
        events_queue_url="http://127.0.0.1:3/000000000000/q",
        sqs_url="http://127.0.0.1:3",
        outputs_url="http://127.0.0.1:4",
        outputs_name="bench-w10k-drs-poller-full-1",
        **common,
    )
    _, plain = run.tracker_command("drs-poller", table="t", **common)

    assert env["DRS_POLLER_REPORT_BUCKET"] == "bench-w10k-drs-poller-full-1"
    assert env["DRS_POLLER_EVENT_BUS"] == "bench-w10k-drs-poller-full-1"
    assert env["DRS_POLLER_S3_ENDPOINT_URL"] == "http://127.0.0.1:4"
    assert env["DRS_POLLER_EVENTS_ENDPOINT_URL"] == "http://127.0.0.1:4"
    assert env["DRS_POLLER_EVENTS_QUEUE_URL"] == "http://127.0.0.1:3/000000000000/q"
    assert not {"DRS_POLLER_REPORT_BUCKET", "DRS_POLLER_EVENT_BUS"} & set(plain)
    # The settings the daemon will read are valid (the bucket and bus names included).
    load_settings(
        **{
            key.removeprefix("DRS_POLLER_").lower(): value
            for key, value in env.items()
            if key.startswith("DRS_POLLER_")
        }
    )
