"""``drs-poller``: the command line.

``run`` runs the daemon until SIGTERM/SIGINT (settings from ``DRS_POLLER_*``).
``report`` writes one execution's drill report (docs/report.md). The local-stack
commands: ``simulate`` (the DRS simulator as a service), ``init-table`` (the
execution-history table, and the lease table), ``initiate`` (starts a demo mix of
executions like the API that starts them), and ``demo`` (all of it in one process,
with a live view).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Only light standard modules at import time: `drs-poller run` must catch SIGTERM before
# the heavy imports (asyncio, pydantic, botocore) that the commands need.

if TYPE_CHECKING:
    from collections.abc import Coroutine, Sequence
    from types import FrameType

    from drs_poller.engine.daemon import Daemon
    from drs_poller.settings import Settings

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_CONFIG = 2
LOCAL_DEFAULT_REGION = "us-east-1"
# Real seconds `initiate --wait` waits for the slowest execution, divided by --speed.
REAL_WAIT_LIMIT = 3 * 3600.0


def _settings_help() -> str:
    from drs_poller.settings import Settings  # noqa: PLC0415 - see the imports above

    lines = ["settings (environment variables):"]
    for name, field in Settings.model_fields.items():
        default = "required" if field.is_required() else f"default {field.default!r}"
        lines.append(f"  DRS_POLLER_{name.upper():<34} {default}")
    return "\n".join(lines)


def _probability(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (got {text})")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0 (got {text})")
    return value


def _add_simulate(commands: Any) -> None:
    simulate = commands.add_parser(
        "simulate",
        help="the DRS simulator as a standalone service (rest-json, any region)",
        description=(
            "Serve a simulated AWS Elastic Disaster Recovery API: StartRecovery, DescribeJobs, "
            "DescribeJobLogItems, DescribeRecoveryInstances, TerminateRecoveryInstances and "
            "DescribeSourceServers, with DRS's default quotas, real-length timelines divided "
            "by --speed, and scripted or random outcomes. Runs until SIGTERM/SIGINT, then "
            "exits 0. Logs JSON lines (DRS_POLLER_LOG_FORMAT=console for humans)."
        ),
    )
    simulate.add_argument("--host", default="127.0.0.1", help="address to listen on")
    simulate.add_argument("--port", type=int, default=8081, help="port (default 8081; 0: any)")
    simulate.add_argument(
        "--speed", type=_positive, default=1.0, help="divide every DRS duration by this (default 1)"
    )
    simulate.add_argument(
        "--seed", type=int, default=0, help="seed of ids, outcome draws and fault dice"
    )
    simulate.add_argument(
        "--ec2-endpoint-url",
        help="create recovery instances in this EC2 endpoint (moto server) when servers launch",
    )
    simulate.add_argument(
        "--sts-endpoint-url",
        help="tell accounts apart: a request is in the account that this STS endpoint's "
        "GetCallerIdentity (moto server) gives its access key id (default: the "
        "--ec2-endpoint-url; without either, every request is in account 123456789012)",
    )
    simulate.add_argument(
        "--events-endpoint-url",
        help="put a 'DRS Source Server Launch Result' event on this EventBridge endpoint's "
        "default bus (moto server) when a server's launch ends (docs/events.md)",
    )
    simulate.add_argument(
        "--scenario", type=Path, help="JSON scenario file: per-server/per-job behaviour, durations"
    )
    simulate.add_argument(
        "--no-quotas",
        dest="quotas",
        action="store_false",
        help="do not enforce DRS's quotas (20 active jobs, 100 servers a job, 500 in active "
        "jobs, one active job per source server)",
    )
    simulate.add_argument(
        "--source-servers",
        type=int,
        default=64,
        help="generated source servers per region (default 64; 1 in 8 each launch-fails, "
        "action-fails, no-actions, shown by the drs-sim:behaviour tag)",
    )
    for flag, what in (
        ("--throttle-rate", "chance that a request is throttled (429 ThrottlingException)"),
        ("--error-rate", "chance that a request fails (500 InternalServerException)"),
        ("--launch-failure-rate", "chance that an untagged server's launch fails"),
        ("--action-failure-rate", "chance that an untagged server's post-launch action fails"),
        ("--stall-rate", "chance that an untagged server's conversion never ends"),
    ):
        simulate.add_argument(flag, type=_probability, default=0.0, help=what + " (default 0)")
    simulate.add_argument(
        "--latency", type=float, default=0.0, help="seconds added to every response (default 0)"
    )


def _add_init_table(commands: Any) -> None:
    init = commands.add_parser(
        "init-table",
        help="create the execution-history table (and the lease table); idempotent",
        description=(
            "Create the execution-history table and its StatusIndex exactly as contract §1 "
            "says (and the replica lease table when named), and wait until ACTIVE. A table "
            "that exists with the right schema is fine (exit 0); one with another schema is "
            "exit 2, naming the difference."
        ),
    )
    init.add_argument(
        "--table",
        default=os.environ.get("DRS_POLLER_TABLE_NAME"),
        help="table name (default $DRS_POLLER_TABLE_NAME)",
    )
    init.add_argument(
        "--index",
        default=os.environ.get("DRS_POLLER_STATUS_INDEX", "StatusIndex"),
        help="the status GSI's name (default $DRS_POLLER_STATUS_INDEX or StatusIndex)",
    )
    init.add_argument(
        "--index-projection",
        choices=("KEYS_ONLY", "INCLUDE", "ALL"),
        default="KEYS_ONLY",
        help="what the StatusIndex projects, for a table created now (default KEYS_ONLY, "
        "the cheapest; INCLUDE adds PollerRevision; ALL copies whole items for other "
        "readers of the index; docs/contract.md §1 says what each costs). An existing "
        "table keeps its projection.",
    )
    init.add_argument(
        "--endpoint-url",
        default=os.environ.get("DRS_POLLER_DYNAMODB_ENDPOINT_URL"),
        help="DynamoDB endpoint (default $DRS_POLLER_DYNAMODB_ENDPOINT_URL; unset: AWS)",
    )
    init.add_argument(
        "--lease-table",
        default=os.environ.get("DRS_POLLER_LEASE_TABLE_NAME"),
        help="also create the replica lease table (default $DRS_POLLER_LEASE_TABLE_NAME; "
        "unset: none)",
    )


def _add_initiate(commands: Any) -> None:
    initiate = commands.add_parser(
        "initiate",
        help="start the demo mix of drills and recoveries, as the API that starts them would",
        description=(
            "List source servers (DescribeSourceServers), start a mix of drills and recoveries "
            "through StartRecovery, write their POLLING items, start later waves when the wave "
            "before is final, and wait out DRS quota and conflict errors. Uses "
            "DRS_POLLER_DRS_ENDPOINT_URL, DRS_POLLER_TABLE_NAME and "
            "DRS_POLLER_DYNAMODB_ENDPOINT_URL. Runs until every wave is started."
        ),
    )
    initiate.add_argument("--executions", type=int, default=8, help="executions (default 8)")
    initiate.add_argument(
        "--speed",
        type=_positive,
        default=1.0,
        help="the simulator's --speed: scales start spread, retries and waits (default 1)",
    )
    initiate.add_argument("--seed", type=int, default=7, help="seed of the mix (default 7)")
    initiate.add_argument(
        "--wait",
        action="store_true",
        help="wait for every execution's final status; exit 0 only if each ended as expected",
    )


def _add_report(commands: Any) -> None:
    report = commands.add_parser(
        "report",
        help="write one execution's drill report (md, html or json; docs/report.md)",
        description=(
            "Read the execution's item from DRS_POLLER_TABLE_NAME (a consistent Query on "
            "ExecutionId, in AWS_REGION; DRS_POLLER_DYNAMODB_ENDPOINT_URL for a local stack) "
            "and write its drill report: the final status, RTO and RPO against their targets, "
            "every wave and server with its timeline, each failure with DRS's reason, the "
            "post-launch action results. Exit 2 when there is no such execution (or several "
            "items share the id and --plan-id chose none), 1 when DynamoDB fails."
        ),
    )
    report.add_argument("execution_id", metavar="EXECUTION_ID", help="the item's ExecutionId")
    report.add_argument("--plan-id", help="the item's PlanId, when several share the id")
    report.add_argument(
        "--format",
        choices=("md", "html", "json"),
        default="md",
        help="md (Markdown tables; the default), html (one self-contained page with an SVG "
        "timeline), json (schema drs-poller/report version 1)",
    )
    report.add_argument(
        "--output", "-o", type=Path, help="write the report to this file (default: stdout)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="drs-poller",
        description="Track AWS Elastic Disaster Recovery drills and recoveries to a final status.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "run",
        help="run the daemon until SIGTERM or SIGINT",
        description="Run the daemon until SIGTERM or SIGINT, then stop cleanly and exit 0.",
        epilog=_settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo = commands.add_parser(
        "demo",
        help="run the daemon on an embedded local stack (no AWS account, no Docker)",
        description=(
            "Start moto server (DynamoDB, EC2) and the DRS simulator on loopback, create the "
            "table, start a mix of drills and recoveries through StartRecovery, run the real "
            "daemon with a live view until every execution finishes, and print a summary. "
            "Exits 0 when each ended as expected."
        ),
    )
    demo.add_argument("--executions", type=int, default=8, help="executions to start (default 8)")
    demo.add_argument(
        "--speed",
        type=float,
        default=60.0,
        help="time compression: DRS timelines and poll intervals run this many times faster "
        "(default 60: a 20-minute drill takes 20 s; the whole demo about a minute)",
    )
    demo.add_argument(
        "--keep-running",
        action="store_true",
        help="keep the stack and the daemon running after the summary, until Ctrl-C",
    )
    demo.add_argument("--seed", type=int, default=7, help="random seed of the workload")
    demo.add_argument(
        "--reports",
        type=Path,
        default=Path("demo-reports"),
        help="write every execution's HTML drill report into this folder (default "
        "./demo-reports; its path is printed)",
    )
    _add_report(commands)
    _add_simulate(commands)
    _add_init_table(commands)
    _add_initiate(commands)
    return parser


# Signals that arrived before the daemon's own handlers were installed.
_early_signals: list[str] = []


def _note_early_signal(signum: int, _frame: FrameType | None) -> None:
    _early_signals.append(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:  # noqa: PLR0911 - a return per command
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments[:1] == ["run"]:
        # A SIGTERM while Python is still importing would take the default action
        # (exit 143); note it, and the daemon stops cleanly as soon as it can.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, _note_early_signal)
    args = build_parser().parse_args(arguments)
    if args.command == "run":
        return _run()
    if args.command == "demo":
        from drs_poller.local.demo import run_demo  # noqa: PLC0415 - needs the [local] extra

        return _run_coroutine(
            run_demo(
                executions=args.executions,
                speed=args.speed,
                keep_running=args.keep_running,
                seed=args.seed,
                reports=args.reports,
            )
        )
    if args.command == "report":
        return _report(args)
    if args.command == "simulate":
        return _simulate(args)
    if args.command == "init-table":
        return _init_table(args)
    if args.command == "initiate":
        return _initiate(args)
    return EXIT_CONFIG  # pragma: no cover - argparse rejects unknown commands


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _complain(command: str, text: str) -> None:
    sys.stderr.write(f"drs-poller {command}: {text}\n")


def _local_session(*, local_endpoint: bool) -> Any:
    """A session for the local-stack commands: AWS_REGION (default us-east-1). Against a
    local endpoint with no credentials configured, fake ones (moto and the simulator
    accept any), so a fresh shell needs no AWS set-up."""
    import aioboto3  # noqa: PLC0415 - fast --help

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    options: dict[str, str] = {"region_name": region or LOCAL_DEFAULT_REGION}
    configured = any(
        os.environ.get(name)
        for name in ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
    )
    if local_endpoint and not configured:
        options |= {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    return aioboto3.Session(**options)


def _simulate(args: argparse.Namespace) -> int:
    from drs_poller.observability.logs import configure_logging  # noqa: PLC0415
    from drs_poller.simulator.standalone import (  # noqa: PLC0415 - fast --help
        SimulatorOptions,
        serve_simulator,
    )

    log_format = os.environ.get("DRS_POLLER_LOG_FORMAT", "json")
    if log_format not in {"json", "console"}:
        _complain("simulate", f"DRS_POLLER_LOG_FORMAT must be json or console (got {log_format!r})")
        return EXIT_CONFIG
    configure_logging(fmt="console" if log_format == "console" else "json", level="INFO")
    options = SimulatorOptions(
        host=args.host,
        port=args.port,
        speed=args.speed,
        seed=args.seed,
        ec2_endpoint_url=args.ec2_endpoint_url,
        sts_endpoint_url=args.sts_endpoint_url,
        events_endpoint_url=args.events_endpoint_url,
        scenario=args.scenario,
        quotas=args.quotas,
        source_servers=args.source_servers,
        throttle_rate=args.throttle_rate,
        error_rate=args.error_rate,
        latency=args.latency,
        launch_failure_rate=args.launch_failure_rate,
        action_failure_rate=args.action_failure_rate,
        stall_rate=args.stall_rate,
    )
    problems = options.problems()
    if problems:
        for problem in problems:
            _complain("simulate", problem)
        return EXIT_CONFIG
    if options.scenario is not None:
        from drs_poller.simulator.scenario_file import (  # noqa: PLC0415
            ScenarioFileError,
            load_scenario,
        )

        try:
            load_scenario(options.scenario)
        except ScenarioFileError as error:
            _complain("simulate", f"bad --scenario: {error}")
            return EXIT_CONFIG
    return _run_coroutine(serve_simulator(options))


def _init_table(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    from drs_poller.local.table import SchemaMismatch, init_tables  # noqa: PLC0415

    if not args.table:
        _complain("init-table", "no table name: pass --table or set DRS_POLLER_TABLE_NAME")
        return EXIT_CONFIG

    async def create() -> int:
        session = _local_session(local_endpoint=bool(args.endpoint_url))
        async with session.client("dynamodb", endpoint_url=args.endpoint_url) as dynamodb:
            try:
                outcomes = await init_tables(
                    dynamodb,
                    table=args.table,
                    index=args.index,
                    lease_table=args.lease_table,
                    projection=args.index_projection,
                )
            except SchemaMismatch as error:
                _complain("init-table", str(error))
                return EXIT_CONFIG
        for outcome in outcomes:
            verb = "created" if outcome.created else "already exists with the expected schema"
            _say(f"table {outcome.table}: {verb}; ACTIVE")
            for note in outcome.notes:
                _say(f"table {outcome.table}: {note}")
        return EXIT_OK

    try:
        return _run_coroutine(create())
    except (BotoCoreError, ClientError) as error:
        _complain("init-table", f"DynamoDB failed: {error}")
        return EXIT_UNEXPECTED


def _initiate(args: argparse.Namespace) -> int:
    from drs_poller.settings import SettingsError, load_settings  # noqa: PLC0415

    if not 1 <= args.executions <= 500:
        _complain("initiate", f"--executions must be between 1 and 500 (got {args.executions})")
        return EXIT_CONFIG
    try:
        settings = load_settings()
    except SettingsError as error:
        _complain("initiate", str(error))
        return EXIT_CONFIG
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    from drs_poller.local.initiate import NotEnoughSourceServers  # noqa: PLC0415

    try:
        return _run_coroutine(_initiate_async(args, settings))
    except (BotoCoreError, ClientError, NotEnoughSourceServers) as error:
        _complain("initiate", str(error))
        return EXIT_UNEXPECTED


async def _initiate_async(args: argparse.Namespace, settings: Settings) -> int:
    import random  # noqa: PLC0415
    import time  # noqa: PLC0415

    from drs_poller.local.initiate import Initiator  # noqa: PLC0415 - fast --help
    from drs_poller.local.scenarios import plan_workload  # noqa: PLC0415

    plans = plan_workload(
        executions=args.executions,
        rng=random.Random(args.seed),  # noqa: S311 - a reproducible mix
    )
    session = _local_session(
        local_endpoint=bool(settings.dynamodb_endpoint_url or settings.drs_endpoint_url)
    )
    started = time.monotonic()

    def report(text: str) -> None:
        _say(f"[{time.monotonic() - started:6.1f} s] {text}")

    async with (
        session.client("dynamodb", endpoint_url=settings.dynamodb_endpoint_url) as dynamodb,
        Initiator(
            session=session,
            drs_endpoint_url=settings.drs_endpoint_url,
            dynamodb=dynamodb,
            table_name=settings.table_name,
            speed=args.speed,
            report=report,
            watch_interval=max(0.2, 15.0 / args.speed),
        ) as initiator,
    ):
        for plan in plans:
            report(f"plan {plan.execution_id}: {plan.kind.value}, expected {plan.expected_status}")
        await initiator.run(plans, started_at=time.time())
        report(f"every wave of {len(plans)} executions started")
        if not args.wait:
            return EXIT_OK
        items = await initiator.wait_until_final(
            plans, deadline=time.monotonic() + REAL_WAIT_LIMIT / args.speed
        )
    unexpected = 0
    for plan in plans:
        item = items.get(plan.execution_id)
        status = None if item is None else item.get("Status")
        ok = status == plan.expected_status
        unexpected += not ok
        _say(
            f"{plan.execution_id}  {status or 'not written'}  expected {plan.expected_status}  "
            f"{'ok' if ok else 'NOT AS EXPECTED'}  ({plan.kind.value})"
        )
    if unexpected:
        _say(f"{unexpected} of {len(plans)} executions did not end as expected")
        return EXIT_UNEXPECTED
    _say(f"all {len(plans)} executions ended as expected")
    return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    import time  # noqa: PLC0415 - see the imports above

    from drs_poller.settings import SettingsError, load_settings  # noqa: PLC0415

    try:
        settings = load_settings()
    except SettingsError as error:
        _complain("report", str(error))
        return EXIT_CONFIG
    local = bool(settings.dynamodb_endpoint_url)
    if not local and not (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
        _complain("report", "no AWS region: set AWS_REGION (the table's region)")
        return EXIT_CONFIG
    import asyncio  # noqa: PLC0415 - see the imports above

    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    from drs_poller.clients.calling import AwsCallError  # noqa: PLC0415
    from drs_poller.core.report import as_of_time, build_report, report_json  # noqa: PLC0415
    from drs_poller.core.report_html import render_html  # noqa: PLC0415
    from drs_poller.core.report_md import render_markdown  # noqa: PLC0415
    from drs_poller.engine.reporting import (  # noqa: PLC0415 - fast --help
        ExecutionNotFoundError,
        read_execution,
    )

    try:
        item = asyncio.run(
            read_execution(
                settings,
                session=_local_session(local_endpoint=local),
                execution_id=args.execution_id,
                plan_id=args.plan_id,
            )
        )
    except ExecutionNotFoundError as error:
        _complain("report", str(error))
        return EXIT_CONFIG
    except (AwsCallError, BotoCoreError, ClientError) as error:
        _complain("report", f"DynamoDB failed: {error}")
        return EXIT_UNEXPECTED
    report = build_report(item, as_of=as_of_time(item, now=time.time()))
    renderers = {"md": render_markdown, "html": render_html, "json": report_json}
    return _write_report(args, renderers[args.format](report))


def _write_report(args: argparse.Namespace, text: str) -> int:
    if args.output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return EXIT_OK
    try:
        args.output.write_text(text, encoding="utf-8")
    except OSError as error:
        _complain("report", f"cannot write {args.output}: {error.strerror or error}")
        return EXIT_UNEXPECTED
    sys.stderr.write(f"drs-poller report: wrote the {args.format} report to {args.output}\n")
    return EXIT_OK


def _run() -> int:
    from drs_poller.engine.daemon import Daemon, StartupError  # noqa: PLC0415 - fast --help
    from drs_poller.observability.logs import configure_logging  # noqa: PLC0415
    from drs_poller.settings import SettingsError, load_settings  # noqa: PLC0415

    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"drs-poller: {error}", file=sys.stderr)  # noqa: T201 - before logging exists
        return EXIT_CONFIG
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    import aioboto3  # noqa: PLC0415 - fast --help

    from drs_poller.engine import collector  # noqa: PLC0415 - see the imports above

    # contract §4 names AWS_REGION; botocore reads only AWS_DEFAULT_REGION and profiles.
    session = aioboto3.Session(region_name=os.environ.get("AWS_REGION") or None)
    try:
        daemon = Daemon(settings, session=session)
        # Before the first poll: what exists now lives as long as the process.
        collector.tune()
        return _run_coroutine(_run_daemon(daemon))
    except StartupError as error:
        print(f"drs-poller: {error}", file=sys.stderr)  # noqa: T201 - a start-up message
        return EXIT_CONFIG


def _run_coroutine(coroutine: Coroutine[Any, Any, int]) -> int:
    import asyncio  # noqa: PLC0415 - see the imports above

    return asyncio.run(coroutine)


async def _run_daemon(daemon: Daemon) -> int:
    import asyncio  # noqa: PLC0415 - see the imports above

    run = asyncio.create_task(daemon.run())
    await asyncio.sleep(0)  # run() installs its signal handlers before its first await
    if _early_signals:
        daemon.request_stop(_early_signals[0])
    return await run


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
