"""The benchmark's smoke run: W50 at 60x, drs-poller and the Lambda baseline side by side.

It asserts ratios (baseline / drs-poller), never absolute times, so it holds on a slow
or shared machine, and it fails when batching (one DescribeJobs per region per batch)
or write-on-change breaks: one call per execution per poll would bring the DescribeJobs
ratio to about 4, and a write on every poll would bring the write-unit ratio below 1
(drs-poller polls more often than the baseline's 60 s finder). Measured ratios at this
speed: DescribeJobs 26-29x, write units 2.6-3.1x. It does not need matplotlib.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MIN_DESCRIBE_JOBS_RATIO = 10
MIN_WRITE_UNITS_RATIO = 1.8


def test_w50_ratios_baseline_over_drs_poller(tmp_path):
    completed = subprocess.run(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--workload=W50",
            "--speed=60",
            f"--out={tmp_path}",
            "--no-report",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    result = json.loads((tmp_path / "W50.json").read_text())
    mine, baseline = result["trackers"]["drs-poller"], result["trackers"]["baseline"]

    for figures in (mine, baseline):
        assert not figures["wrong_final_statuses"], figures["wrong_final_statuses"]
        assert figures["finished_executions"] == 50
        # Every request the trackers make is priced (a non-JSON moto error is only counted).
        unpriced = figures["dynamodb"]["unpriced_operations"]
        assert not [op for op in unpriced if "not JSON" not in op], unpriced
        assert figures["detection_real_s"]["missed"] == 0

    describe_jobs_ratio = (
        baseline["drs_calls"]["describe_jobs"] / mine["drs_calls"]["describe_jobs"]
    )
    write_units_ratio = baseline["dynamodb"]["write_units"] / mine["dynamodb"]["write_units"]
    assert describe_jobs_ratio >= MIN_DESCRIBE_JOBS_RATIO, describe_jobs_ratio
    assert write_units_ratio >= MIN_WRITE_UNITS_RATIO, write_units_ratio
    # Under the seeds' projection ALL the index doubles every write of an item in it; on
    # drs-poller's KEYS_ONLY index only the final Status change writes it (a delete and
    # a put of one unit each).
    assert baseline["dynamodb"]["index_write_units"] >= baseline["dynamodb"]["table_write_units"]
    assert mine["index_projection"] == "KEYS_ONLY"
    assert mine["dynamodb"]["index_write_units"] == 2 * 50
