"""``python -m benchmarks`` (``./dev bench``): drs-poller against the Lambda design it
replaces, side by side on the same workload. See benchmarks/README.md."""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
from pathlib import Path

from benchmarks import profiles
from benchmarks.local_dynamodb import BACKENDS, LocalDynamoDBError
from benchmarks.run import TRACKERS, run_workload
from benchmarks.workloads import WORKLOADS

RESULTS = Path(__file__).resolve().parent / "results"
# Speeds a workload runs at unless --speed says otherwise (see README: why these).
DEFAULT_SPEEDS = {"W50": 20.0, "W1k": 2.0, "W10k": 1.0, "W10k-accounts": 1.0}
# drs-poller on its lean index and the baseline on the seeds' ALL; add drs-poller-all
# (drs-poller on ALL) to tell the index's effect from the daemon's.
DEFAULT_TRACKERS = ("drs-poller", "baseline")
# W10k measures the daemon with every feature on, as a user would run it (issue 20).
STEADY_TRACKERS = {"W10k": ("drs-poller-full",)}
# W10k's local DynamoDB is dynalite: moto's write latency there was most of the
# lateness (benchmarks/local_dynamodb.py, FINDINGS.md, issue 20).
DEFAULT_DYNAMODB = {"W10k": "dynalite"}


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="./dev bench",
        description="Run drs-poller and the Lambda finder/poller baseline on one workload, "
        "write benchmarks/results/<workload>.json, and regenerate docs/benchmarks.md.",
    )
    p.add_argument(
        "--workload",
        choices=[*WORKLOADS, "all"],
        default="W50",
        help="W50, W1k, W10k or W10k-accounts (default W50); 'all' runs each in turn.",
    )
    p.add_argument(
        "--speed",
        type=_positive,
        help="time compression factor for DRS and both trackers' intervals "
        "(default: W50 20, W1k 2, W10k and W10k-accounts 1).",
    )
    p.add_argument(
        "--trackers",
        default=None,
        help="comma-separated subset of drs-poller,drs-poller-all,baseline,"
        "drs-poller-events,drs-poller-events-drop30,drs-poller-events-dup,drs-poller-full "
        "(default: drs-poller,baseline; W10k runs drs-poller-full alone, W10k-accounts "
        "drs-poller alone). drs-poller-all is "
        "drs-poller on a StatusIndex projected ALL; the drs-poller-events* trackers take "
        "DRS launch-result events through SQS (all of them, 30 %% dropped, each twice); "
        "drs-poller-full takes them all, and puts drill reports to S3 and finalization "
        "events on an EventBridge bus (every feature on, as a user would run it). "
        "A tracker not rerun keeps its figures from an earlier result file of the same "
        "workload, speed and seed.",
    )
    p.add_argument("--seed", type=int, default=7, help="workload seed (default 7).")
    p.add_argument(
        "--warmup",
        type=_positive,
        default=None,
        help="seconds before the steady-state window starts (default: W10k and "
        "W10k-accounts 180; "
        "others run to completion).",
    )
    p.add_argument(
        "--window",
        type=_positive,
        default=None,
        help="seconds of steady state to measure, then stop (default: W10k and W10k-accounts 300).",
    )
    p.add_argument(
        "--repeat",
        type=_count,
        default=1,
        help="run each tracker this many times, each on a fresh moto server (default 1); "
        "the report gives each figure's median and range over the runs, and the median "
        "run's figures in full. W10k's documented command is --repeat 3.",
    )
    p.add_argument(
        "--dynamodb",
        choices=BACKENDS,
        default=None,
        help="the local DynamoDB behind the recording proxy: moto server (default; W10k: "
        "dynalite) or dynalite (Node.js 20+ and npm; installed on first use into "
        "benchmarks/dynalite/node_modules and patched, see benchmarks/local_dynamodb.py). "
        "STS, SQS and EC2 stay on moto.",
    )
    p.add_argument(
        "--out", type=Path, default=RESULTS, help="results directory (default benchmarks/results)."
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="record py-spy profiles (collapsed stacks) of the tracker, moto server and the "
        "benchmark process over the measured period, into <out>/profiles/ "
        "(py-spy comes with the bench extra, which ./dev bench installs).",
    )
    p.add_argument(
        "--no-report", action="store_true", help="do not regenerate docs/benchmarks.md and plots."
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.profile and profiles.executable() is None:
        parser().error(
            "--profile needs py-spy, which the bench extra installs: run ./dev bench, or "
            "pip install -c requirements/lock.txt -e '.[bench]'"
        )
    names = list(WORKLOADS) if args.workload == "all" else [args.workload]
    command = "./dev bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    for name in names:
        steady = WORKLOADS[name].steady
        trackers: tuple[str, ...]
        if args.trackers:
            trackers = tuple(t.strip() for t in args.trackers.split(",") if t.strip())
            unknown = set(trackers) - set(TRACKERS)
            if unknown or not trackers:
                parser().error(f"--trackers: unknown tracker(s) {sorted(unknown)}; use {TRACKERS}")
        else:
            trackers = STEADY_TRACKERS.get(name, ("drs-poller",)) if steady else DEFAULT_TRACKERS
        warmup = args.warmup or (180.0 if steady else None)
        window = args.window or (300.0 if steady else None)
        args.out.mkdir(parents=True, exist_ok=True)
        try:
            asyncio.run(
                run_workload(
                    name,
                    speed=args.speed or DEFAULT_SPEEDS[name],
                    seed=args.seed,
                    trackers=trackers,
                    out=args.out,
                    warmup=warmup if window else None,
                    window=window,
                    command=command,
                    profile=args.profile,
                    repeat=args.repeat,
                    dynamodb=args.dynamodb or DEFAULT_DYNAMODB.get(name, "moto"),
                    log=lambda text: print(text, flush=True),  # noqa: T201 - progress for the user
                )
            )
        except LocalDynamoDBError as error:
            print(f"./dev bench: {error}", file=sys.stderr)  # noqa: T201 - the reason, for the user
            return 2
    if not args.no_report:
        from benchmarks.report import write_report  # noqa: PLC0415 - matplotlib is optional

        write_report(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
