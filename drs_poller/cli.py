"""``drs-poller``: the command line.

``drs-poller run`` runs the daemon until SIGTERM/SIGINT (settings from
``DRS_POLLER_*``); ``drs-poller demo`` runs it on an embedded local stack.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import TYPE_CHECKING

from drs_poller.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from collections.abc import Sequence

EXIT_CONFIG = 2


def _settings_help() -> str:
    lines = ["settings (environment variables):"]
    for name, field in Settings.model_fields.items():
        default = "required" if field.is_required() else f"default {field.default!r}"
        lines.append(f"  DRS_POLLER_{name.upper():<34} {default}")
    return "\n".join(lines)


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
            "Start moto server (DynamoDB, EC2) and the DRS double on loopback, seed a mix of "
            "drills and recoveries, run the real daemon until every execution finishes, and "
            "print how each one ended. Exits 0 when each ended as expected."
        ),
    )
    demo.add_argument("--executions", type=int, default=8, help="executions to seed (default 8)")
    demo.add_argument(
        "--speed",
        type=float,
        default=120.0,
        help="time compression: DRS timelines and poll intervals run this many times faster "
        "(default 120: a 25-minute drill takes about 12 s)",
    )
    demo.add_argument(
        "--keep-running",
        action="store_true",
        help="keep the stack and the daemon running after the summary, until Ctrl-C",
    )
    demo.add_argument("--seed", type=int, default=7, help="random seed of the workload")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return _run()
    if args.command == "demo":
        from drs_poller.localstack.demo import run_demo  # noqa: PLC0415 - needs the [local] extra

        return asyncio.run(
            run_demo(
                executions=args.executions,
                speed=args.speed,
                keep_running=args.keep_running,
                seed=args.seed,
            )
        )
    return EXIT_CONFIG  # pragma: no cover - argparse rejects unknown commands


def _run() -> int:
    from drs_poller.engine.daemon import Daemon, StartupError  # noqa: PLC0415 - fast --help
    from drs_poller.observability.logs import configure_logging  # noqa: PLC0415

    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"drs-poller: {error}", file=sys.stderr)  # noqa: T201 - before logging exists
        return EXIT_CONFIG
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    import aioboto3  # noqa: PLC0415 - fast --help

    # CONTRACT §4 names AWS_REGION; botocore reads only AWS_DEFAULT_REGION and profiles.
    session = aioboto3.Session(region_name=os.environ.get("AWS_REGION") or None)
    try:
        return asyncio.run(Daemon(settings, session=session).run())
    except StartupError as error:
        print(f"drs-poller: {error}", file=sys.stderr)  # noqa: T201 - a start-up message
        return EXIT_CONFIG


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
