# ruff: noqa: RUF001 - the document is typeset: its multiplication signs and dashes are meant
"""docs/benchmarks.md and its plots, regenerated from benchmarks/results/*.json.

matplotlib is optional: without it the document is written and the plots are skipped
(the smoke test and CI never need it).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
PLOTS = ROOT / "docs" / "benchmarks"
ORDER = ("W50", "W1k", "W10k", "W10k-accounts")
HOURS_PER_MONTH = 730

# List prices, us-east-1, on-demand, looked up 2026-11-25; free tiers ignored.
PRICES = {
    "lambda_request": 0.20 / 1e6,  # aws.amazon.com/lambda/pricing
    "lambda_gb_second": 0.0000166667,  # x86, first tier; aws.amazon.com/lambda/pricing
    "lambda_memory_gb": 0.125,  # 128 MB, the smallest (cheapest) Lambda
    "eventbridge_invocation": 1.00 / 1e6,  # EventBridge Scheduler, per invocation
    "fargate_arm_vcpu_hour": 0.03238,  # aws.amazon.com/fargate/pricing, Linux/ARM
    "fargate_arm_gb_hour": 0.00356,
    "dynamodb_write_unit": 0.625 / 1e6,  # on-demand, since the Nov 2024 price cut
    "dynamodb_read_unit": 0.125 / 1e6,
    "sqs_request": 0.40 / 1e6,  # standard queue, per request (64 KB chunk)
    # An event a cross-region rule sends on, priced as a custom event (PRICES.md).
    "eventbridge_event": 1.00 / 1e6,
}

TARGETS = {
    "W1k": [
        ("DescribeJobs calls, baseline / drs-poller", "ratio_describe_jobs", ">=", 100),
        ("DynamoDB write units, baseline / drs-poller", "ratio_write_units", ">=", 4),
        ("drs-poller's month at list prices ($)", "monthly_cost", "<=", 20),
        ("drs-poller poll lateness p99 (s, real scale)", "lateness_p99", "<=", 0.1),
        ("drs-poller detection p99 beyond the phase interval (s)", "excess_p99", "<=", 1.0),
    ],
    # Issue 20: the daemon's own share of the lateness (analysis.PollShares), without the
    # wait for the local DynamoDB's writes; medians when the runs were repeated.
    "W10k": [
        ("drs-poller's own poll lateness p99 (s, real time)", "own_lateness_p99", "<=", 1.0),
        ("drs-poller peak RSS (MB)", "peak_rss_mb", "<=", 300),
        ("drs-poller CPU (% of one core)", "cpu_percent", "<=", 25),
    ],
    # W10k's targets, and issue 15's: one DescribeJobs per account-region per batch (the
    # calls the simulator saw over the (batch, place) pairs the daemon's /metrics
    # counts, run.batch_figures; else the wire-only upper bound,
    # analysis.describe_jobs_per_place), and AssumeRole bounded by accounts times
    # refreshes (a run of the default window needs the first AssumeRole per account, and
    # at most one refresh of one-hour credentials).
    "W10k-accounts": [
        ("drs-poller's own poll lateness p99 (s, real time)", "own_lateness_p99", "<=", 1.0),
        ("drs-poller peak RSS (MB)", "peak_rss_mb", "<=", 300),
        ("drs-poller CPU (% of one core)", "cpu_percent", "<=", 25),
        (
            "DescribeJobs per (account, region) per batch",
            "describe_jobs_per_place_batch",
            "<=",
            1.05,
        ),
        ("AssumeRole calls per account over the run", "assume_role_per_account", "<=", 2),
    ],
}


def load(results: Path) -> dict[str, dict[str, Any]]:
    found = {}
    for name in ORDER:
        path = results / f"{name}.json"
        if path.exists():
            found[name] = json.loads(path.read_text())
    return found


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def _s(value: float | None) -> str:
    if value is None:
        return "–"
    if abs(value) < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.1f} s"


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _own_lateness_p99(tracker: dict[str, Any]) -> float | None:
    shares = tracker.get("lateness_shares_real_s")
    return shares["own"]["p99"] if shares else None


def main_tracker(result: dict[str, Any]) -> str:
    """The tracker a workload's targets are checked on: drs-poller with every feature on
    where it ran alone (W10k), drs-poller otherwise (beside the baseline)."""
    trackers = result["trackers"]
    if "drs-poller-full" in trackers and "baseline" not in trackers:
        return "drs-poller-full"
    return "drs-poller"


def figures_of(result: dict[str, Any]) -> dict[str, Any]:
    """The figures the targets are checked on: a tracker's median over its runs when they
    were repeated (run.combine_runs), its one run's otherwise."""
    trackers = result["trackers"]
    mine, base = trackers.get(main_tracker(result)), trackers.get("baseline")
    out: dict[str, Any] = {}
    if mine:
        runs = mine.get("runs") or [mine]

        def median(extract: Any) -> float | None:
            return _median([extract(run) for run in runs])

        out["lateness_p99"] = median(lambda t: t["lateness_real_s"]["p99"])
        out["own_lateness_p99"] = median(_own_lateness_p99)
        out["excess_p99"] = median(lambda t: t["detection_real_s"]["excess_over_interval"]["p99"])
        out["peak_rss_mb"] = median(lambda t: t["peak_rss_mb"])
        out["cpu_percent"] = median(lambda t: t["cpu_percent_of_core"])
        out["monthly_cost"] = median(lambda t: monthly_cost(t)["total"])
        out["runs"] = len(runs)
        accounts = mine.get("accounts")
        if accounts:
            exact = mine["drs_calls"].get("per_batch") or {}
            out["describe_jobs_per_place_batch"] = (
                exact.get("per_place_per_batch") or accounts["describe_jobs"]["per_batch"]["mean"]
            )
            out["assume_role_per_account"] = accounts["assume_role"]["per_account"]
    if mine and base:
        out["ratio_describe_jobs"] = base["drs_calls"]["describe_jobs"] / max(
            1, mine["drs_calls"]["describe_jobs"]
        )
        out["ratio_write_units"] = base["dynamodb"]["write_units"] / max(
            1, mine["dynamodb"]["write_units"]
        )
        out["ratio_drs_calls"] = base["drs_calls"]["all"] / max(1, mine["drs_calls"]["all"])
    return out


def monthly_cost(tracker: dict[str, Any]) -> dict[str, float]:
    hours = tracker["measured_real_scale_h"]
    per_hour = tracker["per_real_hour"]
    dynamodb = HOURS_PER_MONTH * (
        per_hour["read_units"] * PRICES["dynamodb_read_unit"]
        + per_hour["write_units"] * PRICES["dynamodb_write_unit"]
    )
    cost = {"dynamodb": dynamodb}
    if tracker["tracker"] == "baseline":
        lam = tracker.get("lambda", {})
        invocations = lam.get("finder_invocations", 0) + lam.get("poller_invocations", 0)
        seconds = lam.get("finder_seconds", 0) + lam.get("poller_seconds", 0)
        cost["lambda_requests"] = HOURS_PER_MONTH * invocations / hours * PRICES["lambda_request"]
        cost["lambda_duration"] = (
            HOURS_PER_MONTH
            * seconds
            / hours
            * PRICES["lambda_memory_gb"]
            * PRICES["lambda_gb_second"]
        )
        cost["eventbridge"] = HOURS_PER_MONTH * 60 * PRICES["eventbridge_invocation"]
    else:
        cost["fargate"] = HOURS_PER_MONTH * (
            0.25 * PRICES["fargate_arm_vcpu_hour"] + 0.5 * PRICES["fargate_arm_gb_hour"]
        )
    events = tracker.get("events")
    if events and "daemon_sqs_requests" in events:
        # The queue: one request per event the rule delivers, and the daemon's own
        # (long-poll receives, batch deletes, visibility changes). DRS's events on the
        # default bus and the rule to the queue are free; a cross-region forward is not.
        requests = events["put"] + sum(events["daemon_sqs_requests"].values())
        cost["sqs"] = HOURS_PER_MONTH * requests / hours * PRICES["sqs_request"]
        cost["eventbridge_forwarding"] = (
            HOURS_PER_MONTH * events["forwarded"] / hours * PRICES["eventbridge_event"]
        )
    cost["total"] = sum(cost.values())
    return cost


def _spread(values: list[float | None], shown: Any) -> str:
    """A figure over repeated runs: its median, and its range in brackets."""
    known = [v for v in values if v is not None]
    if not known:
        return "–"
    return f"{shown(statistics.median(known))} ({shown(min(known))}–{shown(max(known))})"


class _Table:
    """The figures table of one workload: a column per tracker."""

    def __init__(self, result: dict[str, Any]) -> None:
        self.trackers = list(result["trackers"].values())
        self.rows = [
            "| figure | " + " | ".join(result["trackers"]) + " |",
            "|---|" + "---|" * len(result["trackers"]),
        ]

    def _add(self, label: str, cells: list[str]) -> None:
        # A figure no tracker of this workload has (events without events, a figure
        # recorded only since a later run) is left out.
        if any(cell != "–" for cell in cells):
            self.rows.append(f"| {label} | " + " | ".join(cells) + " |")

    def row(self, label: str, fn: Any) -> None:
        """A row shown as the tracker's (its median run's, when repeated)."""
        self._add(label, [fn(t) for t in self.trackers])

    def figure(self, label: str, value: Any, shown: Any) -> None:
        """A row of one number: over repeated runs, its median and range."""
        self._add(
            label,
            [
                _spread([value(run) for run in t["runs"]], shown)
                if t.get("runs")
                else shown(value(t))
                for t in self.trackers
            ],
        )


def _two(value: float | None) -> str:
    return _num(value, 2)


def _one(value: float | None) -> str:
    return _num(value, 1)


def _tracker_rows(result: dict[str, Any]) -> list[str]:
    table = _Table(result)
    _count_rows(table, result)
    _timing_rows(table, result)
    if result["shape"].get("accounts"):
        table.row("DescribeJobs per (account, region) per batch (the daemon's batches)", _per_batch)
        table.row("… from the wire alone (upper bound): mean, max (batches)", _per_place)
        table.row("DescribeJobs per (account, region): mean, max over places", _per_place_total)
        table.row("AssumeRole calls: run, per account, per real hour (measured)", _assume_role)
        table.row("DRS calls in the daemon's own account / unplaced", _own_account_calls)
        table.row("waves started during the run: written, refused, max lag", _wave_starts)
    _resource_rows(table)
    return table.rows


def _count_rows(table: _Table, result: dict[str, Any]) -> None:
    executions = result["shape"]["executions"]
    table.row("local DynamoDB", lambda t: t.get("local_dynamodb", "moto server 5.1.22"))
    table.row("StatusIndex projection", lambda t: t.get("index_projection", "ALL"))
    table.row("final statuses correct", lambda t: _final(t, result))
    table.figure("finished in the run", lambda t: t["finished_executions"], _num)
    table.figure("DescribeJobs calls", lambda t: t["drs_calls"]["describe_jobs"], _num)
    table.figure("all DRS calls", lambda t: t["drs_calls"]["all"], _num)
    table.figure("polls (executions × polls)", lambda t: t.get("polls"), _num)
    table.row("DynamoDB requests", lambda t: _requests(t["dynamodb"]["requests"]))
    table.figure("DynamoDB read units", lambda t: t["dynamodb"]["read_units"], _one)
    table.row(
        "DynamoDB write units (table + StatusIndex)",
        lambda t: (
            f"{_num(t['dynamodb']['write_units'])} "
            f"({_num(t['dynamodb']['table_write_units'])} + "
            f"{_num(t['dynamodb']['index_write_units'])})"
        ),
    )
    table.figure(
        "write units per execution", lambda t: t["dynamodb"]["write_units"] / executions, _two
    )
    table.figure(
        "read units per execution", lambda t: t["dynamodb"]["read_units"] / executions, _two
    )
    table.row("writes by kind: count, units (table + index)", _by_kind)
    table.figure("DRS calls per execution", lambda t: t["drs_calls"]["all"] / executions, _two)
    table.row("final item size: mean, p95, max (bytes)", _item_sizes)
    table.figure("monthly cost at list prices", lambda t: monthly_cost(t)["total"], _dollars)
    for key, label in (
        ("describe_jobs", "DescribeJobs"),
        ("drs_calls", "DRS calls"),
        ("write_units", "write units"),
        ("read_units", "read units"),
    ):
        table.figure(f"{label} per real hour", lambda t, key=key: t["per_real_hour"][key], _num)


def _timing_rows(table: _Table, result: dict[str, Any]) -> None:
    for q in ("p50", "p99", "max"):
        table.figure(f"poll lateness {q} (real scale)", lambda t, q=q: t["lateness_real_s"][q], _s)
    for share, label in (
        ("own", "… the daemon's own share (due to DRS asked, past the write)"),
        ("write_wait", "… waiting for the previous write to land"),
        ("at_table", "… … of which at the local DynamoDB"),
    ):
        for q in ("p50", "p99"):
            table.figure(f"{label}, {q}", lambda t, s=share, q=q: _share(t, s, q), _s)
    for q in ("p50", "p99"):
        table.figure(
            f"detection latency {q} (real scale)",
            lambda t, q=q: t["detection_real_s"]["latency"][q],
            _s,
        )
    for part, label in (
        ("seen_by_poll", "… until the poll that saw it had DRS's answer"),
        ("stored_by_write", "… then until the write that stored it landed"),
    ):
        for q in ("p50", "p99"):
            table.figure(
                f"{label}, {q}",
                lambda t, part=part, q=q: (t["detection_real_s"].get(part) or {}).get(q),
                _s,
            )
    table.figure(
        "detection p99 beyond the phase interval",
        lambda t: t["detection_real_s"]["excess_over_interval"]["p99"],
        _s,
    )
    for status in ("LAUNCHED", "FAILED"):
        table.row(
            f"detection of {status}: p50, p99, max (real scale)",
            lambda t, status=status: _quantile_triple(
                (t["detection_real_s"].get("by_status") or {}).get(status)
            ),
        )
    table.row("DRS events: planned, dropped, put (copies counted)", _events)
    for status in ("LAUNCHED", "FAILED"):
        table.row(
            f"launch result ({status}) to the table: p50, p99, max (wall clock)",
            lambda t, status=status: _quantile_triple(
                _unscaled((t["detection_real_s"].get("by_status") or {}).get(status), result)
            ),
        )
    table.row("SQS requests: deliveries + the daemon's", _sqs_requests)
    table.row("drill report objects put; S3 and EventBridge requests", _outputs)
    table.row("events in, a month at list prices (queue, cross-region forwarding)", _events_cost)
    table.row("state changes detected / missed", _detected)


def _resource_rows(table: _Table) -> None:
    for operation in ("UpdateItem", "BatchGetItem", "Query"):
        for q in ("p50", "p99"):
            table.figure(
                f"local DynamoDB {operation} latency {q} (wall clock)",
                lambda t, op=operation, q=q: _latency(t["dynamodb"], op, q),
                _ms,
            )
    table.figure(
        "DRS simulator DescribeJobs latency p99 (wall clock)",
        lambda t: _latency(t["drs_calls"], "DescribeJobs", "p99"),
        _ms,
    )
    table.figure("tracker CPU seconds (measured period)", lambda t: t["cpu_seconds"], _one)
    table.figure("tracker CPU, % of one core", lambda t: t["cpu_percent_of_core"], _one)
    for helper, label in (
        ("moto", "moto server's CPU, % of one core"),
        ("dynalite", "dynalite's CPU, % of one core"),
        ("moto-sqs", "the events queue's moto server's CPU, % of one core"),
        ("bench", "the benchmark process's CPU (DRS simulator, proxies), % of one core"),
        ("others", "everything else on the machine, % of one core"),
    ):
        table.figure(label, lambda t, h=helper: _machine_cpu(t, h), _one)
    table.figure("tracker peak RSS", lambda t: t["peak_rss_mb"], lambda v: f"{v:.0f} MB")
    table.row("wall time measured", lambda t: f"{t['measured_wall_s']:.0f} s")


def _share(tracker: dict[str, Any], share: str, q: str) -> float | None:
    shares = tracker.get("lateness_shares_real_s")  # recorded since 2026-12-06
    return shares[share][q] if shares else None


def _latency(calls: dict[str, Any], operation: str, q: str) -> float | None:
    figures = (calls.get("latency_ms") or {}).get(operation)  # recorded since 2026-12-06
    return figures[q] if figures else None


def _machine_cpu(tracker: dict[str, Any], who: str) -> float | None:
    machine = tracker.get("machine_cpu")  # recorded since 2026-12-06
    return machine["percent_of_core"].get(who) if machine else None


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} %"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f} ms"


def _dollars(value: float | None) -> str:
    return "–" if value is None else f"${value:.2f}"


def _runs_table(result: dict[str, Any]) -> list[str]:
    """Each repeated run of each tracker: when, on how loaded a machine, and its headline
    figures; the run reported in full is marked."""
    lines: list[str] = []
    for tracker, figures in result["trackers"].items():
        runs = figures.get("runs")
        if not runs:
            continue
        lines += [
            (
                f"{tracker}, run by run ({len(runs)} runs; the median run, by the daemon's own "
                "lateness p99, is the one shown in full above and in the plots):"
            ),
            "",
            (
                "| run | measured at | load average at start (1, 5, 15 min) | others' CPU | "
                "moto's CPU | dynalite's CPU | benchmark's CPU | tracker CPU | peak RSS | "
                "lateness p99 | own p99 | write wait p99 | machine |"
            ),
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for number, run in enumerate(runs, start=1):
            load = ", ".join(f"{x:.2f}" for x in run.get("load_average_at_start") or ())
            machine = run.get("machine_cpu") or {}
            loaded = "loaded" if machine.get("loaded") else "quiet"
            marker = " (median)" if number - 1 == figures.get("median_run") else ""
            lines.append(
                f"| {number}{marker} | {run['measured_at']} | {load} | "
                f"{_percent(_machine_cpu(run, 'others'))} | "
                f"{_percent(_machine_cpu(run, 'moto'))} | "
                f"{_percent(_machine_cpu(run, 'dynalite'))} | "
                f"{_percent(_machine_cpu(run, 'bench'))} | "
                f"{run['cpu_percent_of_core']:.1f} % | {run['peak_rss_mb']:.0f} MB | "
                f"{_s(run['lateness_real_s']['p99'])} | {_s(_share(run, 'own', 'p99'))} | "
                f"{_s(_share(run, 'write_wait', 'p99'))} | {loaded} |"
            )
        bound = (runs[0].get("machine_cpu") or {}).get("loaded_from_percent")
        lines += [
            "",
            (
                "A run is marked loaded when processes other than the tracker, the local "
                "servers (moto, dynalite, the events queue's moto) and the benchmark process "
                f"used {_num(bound)} % of a core or more over the measured period."
            ),
            "",
        ]
    return lines


def _per_batch(tracker: dict[str, Any]) -> str:
    figures = tracker["drs_calls"].get("per_batch")
    if not figures or figures["per_place_per_batch"] is None:
        return "–"
    return (
        f"{figures['per_place_per_batch']:.3f} ({figures['wire_describe_jobs']:,} calls,"
        f" {figures['places_asked']:,} places asked in {figures['batches']:,} batches)"
    )


def _per_place(tracker: dict[str, Any]) -> str:
    figures = (tracker.get("accounts") or {}).get("describe_jobs")
    if not figures or figures["per_batch"]["mean"] is None:
        return "–"
    per = figures["per_batch"]
    return f"{per['mean']:.3f}, {per['max']} ({figures['batches']:,} batches)"


def _per_place_total(tracker: dict[str, Any]) -> str:
    figures = (tracker.get("accounts") or {}).get("describe_jobs")
    if not figures or figures["per_place"]["mean"] is None:
        return "–"
    per = figures["per_place"]
    return f"{per['mean']:,.1f}, {per['max']:,} ({figures['places']} places)"


def _assume_role(tracker: dict[str, Any]) -> str:
    figures = (tracker.get("accounts") or {}).get("assume_role")
    if not figures:
        return "–"
    return (
        f"{figures['calls']:,}, {figures['per_account']:.2f}, {_num(figures['per_real_hour'], 1)}"
    )


def _own_account_calls(tracker: dict[str, Any]) -> str:
    figures = tracker.get("accounts")
    if not figures:
        return "–"
    return f"{figures['drs_calls_in_own_account']:,} / {figures['drs_calls_unplaced']:,}"


def _wave_starts(tracker: dict[str, Any]) -> str:
    starts = (tracker.get("accounts") or {}).get("wave_starts")
    if not starts:
        return "–"
    return f"{starts['written']:,}, {starts['refused']:,}, {_s(starts['max_lag_s'])}"


def _quantile_triple(figures: dict[str, Any] | None) -> str:
    if not figures:
        return "–"
    return ", ".join(_s(figures.get(q)) for q in ("p50", "p99", "max"))


def _unscaled(figures: dict[str, Any] | None, result: dict[str, Any]) -> dict[str, Any] | None:
    """Real-scale quantiles back on the wall clock: the run's time is compressed by
    ``speed``, the daemon's own work (receive, poll, write) is not."""
    if not figures:
        return None
    speed = float(result.get("speed") or 1.0)
    return {q: None if v is None else v / speed for q, v in figures.items() if q != "count"}


def _sqs_requests(tracker: dict[str, Any]) -> str:
    events = tracker.get("events") or {}
    daemon = events.get("daemon_sqs_requests")
    if daemon is None:
        return "–"
    ops = ", ".join(f"{op} {n:,}" for op, n in daemon.items())
    return f"{events['put']:,} + {sum(daemon.values()):,} ({ops})"


def _outputs(tracker: dict[str, Any]) -> str:
    outputs = tracker.get("outputs")
    if not outputs:
        return "–"
    requests = outputs["requests"]
    return (
        f"{outputs['report_objects']:,}; S3 {requests.get('unknown', 0):,}, "
        f"PutEvents {requests.get('PutEvents', 0):,}"
    )


def _events_cost(tracker: dict[str, Any]) -> str:
    cost = monthly_cost(tracker)
    if "sqs" not in cost:
        return "–"
    return f"${cost['sqs']:.2f}, ${cost['eventbridge_forwarding']:.2f}"


def _events(tracker: dict[str, Any]) -> str:
    events = tracker.get("events")
    if not events:
        return "–"
    return f"{events['planned']:,}, {events['dropped']:,}, {events['put']:,}"


def _final(tracker: dict[str, Any], result: dict[str, Any]) -> str:
    total = result["shape"]["executions"]
    wrong = len(tracker["wrong_final_statuses"])
    if tracker.get("window"):
        return f"{tracker['finished_executions'] - wrong} finished in the run, {wrong} wrong"
    return f"{total - wrong}/{total}" + (" **VOID**" if wrong else "")


def _item_sizes(tracker: dict[str, Any]) -> str:
    sizes = tracker["dynamodb"].get("final_item_bytes") or {}
    # p95 is recorded since 2026-12-05; earlier runs have the mean and the maximum only.
    return ", ".join(_num(sizes[k]) if k in sizes else "–" for k in ("mean", "p95", "max"))


def _by_kind(tracker: dict[str, Any]) -> str:
    kinds = tracker["dynamodb"].get("write_units_by_kind")
    if not kinds:
        return "–"
    return "; ".join(
        f"{kind} {k['writes']:,}, {k['table'] + k['index']:,} ({k['table']:,} + {k['index']:,})"
        for kind, k in sorted(kinds.items())
    )


def _detected(tracker: dict[str, Any]) -> str:
    d = tracker["detection_real_s"]
    return f"{d['latency']['count']:,} / {d['missed']}"


def _requests(requests: dict[str, int]) -> str:
    return ", ".join(f"{op} {count:,}" for op, count in sorted(requests.items()))


def _target_lines(name: str, result: dict[str, Any]) -> list[str]:
    figures = figures_of(result)
    lines = []
    for label, key, op, bound in TARGETS.get(name, []):
        value = figures.get(key)
        if value is None:
            lines.append(f"- {label}: not measured")
            continue
        met = value >= bound if op == ">=" else value <= bound
        shown = f"{value:.1f}×" if key.startswith("ratio") else f"{value:.3g}"
        lines.append(f"- {label}: **{shown}** (target {op} {bound}) — {'met' if met else 'MISSED'}")
    return lines


def plots(results: dict[str, dict[str, Any]]) -> list[str]:
    try:
        import matplotlib as mpl  # noqa: PLC0415 - optional

        mpl.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return []
    PLOTS.mkdir(parents=True, exist_ok=True)
    made = []
    for name, result in results.items():
        fig, ax = plt.subplots(figsize=(7, 4))
        for tracker, figures in result["trackers"].items():
            points = figures["lateness_real_s"]["percentiles"]
            if not points:
                continue
            qs = [q / 100 for q in range(101)] + [0.999]
            ax.plot(points, sorted(qs)[: len(points)], label=tracker)
        ax.set_xscale("symlog", linthresh=0.1)
        ax.set_xlabel("poll lateness, seconds on the real DRS time scale (symlog)")
        ax.set_ylabel("fraction of polls")
        ax.set_title(f"{name}: poll lateness (speed {result['speed']:g}×)")
        ax.grid(visible=True, alpha=0.3)
        ax.legend()
        path = PLOTS / f"{name}-lateness.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(path.name)

        fig, ax = plt.subplots(figsize=(7, 4))
        for tracker, figures in result["trackers"].items():
            series = figures["series"]["drs_calls_per_real_minute"]
            ax.plot(range(len(series)), series, label=f"{tracker}: all DRS calls")
        ax.set_yscale("symlog", linthresh=10)
        ax.set_xlabel("minutes since start (real DRS time scale)")
        ax.set_ylabel("DRS calls per minute (symlog)")
        ax.set_title(f"{name}: DRS calls over time (speed {result['speed']:g}×)")
        ax.grid(visible=True, alpha=0.3)
        ax.legend()
        path = PLOTS / f"{name}-drs-calls.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(path.name)
    return made


def _measured(result: dict[str, Any], load: str) -> str:
    m = result["machine"]
    machine = f"{m['nproc']} cores ({m['cpu_model']}), {m['memory_gb']} GB, Python {m['python']}"
    runs = {
        tracker: figures
        for tracker, figures in result["trackers"].items()
        if figures.get("measured_at") and figures.get("command")
    }
    if not runs:
        return (
            f"Measured {result['measured_at']} with `{result['command']}` on {machine}; "
            f"load average at start {load}. No other test or benchmark ran on the machine "
            "meanwhile; the load average includes work that ended just before."
        )
    each = "; ".join(
        f"{tracker} at {figures['measured_at']} with `{figures['command']}`, load average at "
        f"start {', '.join(f'{x:.2f}' for x in figures.get('load_average_at_start') or ())}"
        for tracker, figures in runs.items()
    )
    shared = "" if not result.get("shared_machine") else f" {result['shared_machine']}"
    return (
        f"Measured on {machine}, each tracker in its own run: {each}.{shared} Request and "
        "unit counts do not depend on the machine's load; timings (lateness, detection, "
        "CPU) do."
    )


def render(results: dict[str, dict[str, Any]], made: list[str]) -> str:
    lines = [
        "# Benchmarks: drs-poller against the Lambda finder/poller design",
        "",
        (
            "<!-- Generated by `./dev bench` (benchmarks/report.py) from benchmarks/results/*.json;"
            " edit those scripts, not this file. -->"
        ),
        "",
        *_summary(results),
        (ROOT / "benchmarks" / "METHOD.md").read_text().strip(),
        "",
    ]
    for name, result in results.items():
        m = result["machine"]
        load = ", ".join(f"{x:.2f}" for x in m["load_average_at_start"])
        shape = result["shape"]
        lines += [
            (
                f"## {name}: {shape['executions']:,} executions × "
                f"{shape['waves'] * shape['servers_per_wave']} servers "
                f"({shape['waves']} waves, {shape['jobs']:,} jobs), speed {result['speed']:g}×"
            ),
            "",
            _measured(result, load),
            "",
        ]
        any_tracker = next(iter(result["trackers"].values()))
        if shape.get("accounts"):
            lines += [
                (
                    f"Over {shape['accounts']} member accounts × "
                    f"{shape['account_regions'] // shape['accounts']} regions "
                    f"({shape['account_regions']} account-regions), each within DRS's quotas "
                    "at every moment: every execution's item is POLLING from the start, and "
                    "its waves' jobs start in turn as the account-region's quota frees "
                    "(METHOD.md, W10k-accounts)."
                ),
                "",
            ]
        if any_tracker.get("window"):
            w = any_tracker["window"]
            started = (
                "each account-region's lanes of jobs started up to"
                if shape.get("accounts")
                else "executions started over"
            )
            lines += [
                (
                    f"Steady state: {started} the previous "
                    f"{shape['started_over_real_s'] / 60:.0f} real minutes, so every phase is "
                    f"present at once; figures cover a {w['window_s']:.0f} s window after "
                    f"{w['warmup_s']:.0f} s of warm-up, not the whole timeline."
                ),
                "",
            ]
        lines += _tracker_rows(result)
        lines.append("")
        lines += _runs_table(result)
        targets = _target_lines(name, result)
        if targets:
            lines += ["Targets:", "", *targets, ""]
        figures = figures_of(result)
        if "ratio_drs_calls" in figures:
            lines += [
                (
                    "Ratios, baseline / drs-poller: DescribeJobs "
                    f"{figures['ratio_describe_jobs']:.0f}×,"
                    f" all DRS calls {figures['ratio_drs_calls']:.0f}×, DynamoDB write units "
                    f"{figures['ratio_write_units']:.1f}×."
                ),
                "",
            ]
        base = result["trackers"].get("baseline", {}).get("lambda")
        if base:
            lines += [
                (
                    f"Baseline Lambda: {base['finder_invocations']:,} finder and "
                    f"{base['poller_invocations']:,} poller invocations, "
                    f"{base['finder_seconds'] + base['poller_seconds']:,.0f} s of invocation time "
                    f"(wall clock, loopback calls; poller p50 {_s(base['poller_duration_p50'])},"
                    f" p99 {_s(base['poller_duration_p99'])}), peak concurrency "
                    f"{base['peak_concurrency']}, {base['poller_errors']} failed invocations."
                ),
                "",
            ]
        for plot in made:
            if plot in (f"{name}-lateness.png", f"{name}-drs-calls.png"):
                lines += [f"![{plot}](benchmarks/{plot})", ""]
    lines += _cost_section(results)
    analysis = ROOT / "benchmarks" / "FINDINGS.md"
    if analysis.exists():
        lines += ["", analysis.read_text().strip(), ""]
    return "\n".join(lines).rstrip() + "\n"


def _summary(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "## At a glance",
        "",
        (
            "| workload | speed | DescribeJobs, baseline / drs-poller | write units, baseline / "
            "drs-poller | drs-poller lateness p99 (its own share) | drs-poller detection p99 "
            "beyond interval | drs-poller CPU | drs-poller peak RSS | runs | final statuses |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        figures = figures_of(result)
        mine = result["trackers"].get(main_tracker(result))
        if not mine:
            continue
        statuses = "; ".join(f"{t}: {_final(f, result)}" for t, f in result["trackers"].items())
        own = "" if figures["own_lateness_p99"] is None else f" ({_s(figures['own_lateness_p99'])})"
        dj = figures.get("ratio_describe_jobs")
        wu = figures.get("ratio_write_units")
        lines.append(
            f"| {name} | {result['speed']:g}× | {'–' if dj is None else f'{dj:.0f}×'} | "
            f"{'–' if wu is None else f'{wu:.1f}×'} | {_s(figures['lateness_p99'])}{own} | "
            f"{_s(figures['excess_p99'])} | "
            f"{figures['cpu_percent']:.0f} % of a core | {figures['peak_rss_mb']:.0f} MB | "
            f"{figures['runs']}{' (medians)' if figures['runs'] > 1 else ''} | {statuses} |"
        )
    return [*lines, ""]


def _cost_section(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        (ROOT / "benchmarks" / "PRICES.md").read_text().strip(),
        "",
        "| workload | tracker | compute | DynamoDB | total / month |",
        "|---|---|---|---|---|",
    ]
    for name in ("W50", "W1k"):
        result = results.get(name)
        if not result:
            continue
        for tracker, figures in result["trackers"].items():
            cost = monthly_cost(figures)
            if tracker == "baseline":
                compute = (
                    f"Lambda requests ${cost['lambda_requests']:.2f} + duration "
                    f"${cost['lambda_duration']:.2f} + EventBridge ${cost['eventbridge']:.2f}"
                )
            else:
                compute = f"Fargate ARM ${cost['fargate']:.2f}"
            lines.append(
                f"| {name} | {tracker} | {compute} | ${cost['dynamodb']:.2f} | "
                f"**${cost['total']:.2f}** |"
            )
    return [*lines, ""]


def write_report(results_dir: Path) -> Path:
    results = load(results_dir)
    made = plots(results)
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(render(results, made))
    return DOC


if __name__ == "__main__":
    print(write_report(ROOT / "benchmarks" / "results"))  # noqa: T201
