"""The drill report as Markdown: a summary table, the waves, one row per server with its
timeline, the failures with their reasons, and the post-launch action results.

Rendered from the report document (:func:`drs_poller.core.report.build_report`), so it
says exactly what the JSON says. Every string from the item goes through :func:`cell`:
it cannot break a table row or open an HTML tag in a renderer that allows them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drs_poller.core.report import (
    PHASE_LABELS,
    PHASES,
    fmt_duration,
    fmt_judgement,
    fmt_phase,
    fmt_time,
    time_origin,
    title_of,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

_ESCAPES = str.maketrans(
    {
        "\\": "\\\\",
        "|": "\\|",
        "<": "&lt;",
        ">": "&gt;",
        "`": "\\`",
        "\n": " ",
        "\r": " ",
        "\t": " ",
    }
)


def cell(value: Any) -> str:
    """A value as Markdown text on one line: ``|``, ``\\``, `````, ``<`` and ``>``
    escaped; "—" when unknown."""
    if value is None or value == "":
        return "—"
    return str(value).translate(_ESCAPES)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return lines


def _summary(report: Mapping[str, Any]) -> list[str]:
    execution = report["execution"]
    counts = report["counts"]
    servers = (
        f"{counts['servers']} in {counts['waves']} wave(s): {counts['succeeded']} succeeded, "
        f"{counts['failed']} failed"
    )
    if counts["active"]:
        servers += f", {counts['active']} still active"
    if counts["notStarted"]:
        servers += f", {counts['notStarted']} not started"
    if counts["stalled"]:
        servers += f", {counts['stalled']} stalled"
    plan = f" (plan {cell(execution.get('planId'))})" if "planId" in execution else ""
    rows = [
        ("Execution", cell(execution["executionId"]) + plan),
        ("Type", cell(execution.get("executionType"))),
        ("Final status" if execution.get("final") else "Status", cell(execution.get("status"))),
        ("Started", fmt_time(execution.get("startTime"))),
        ("Ended", fmt_time(execution.get("endTime"))),
        ("Duration", fmt_duration(execution.get("durationSeconds"))),
        ("RTO", cell(fmt_judgement(report.get("rto")))),
        ("RPO", cell(fmt_judgement(report.get("rpo")))),
    ]
    if "recoveryTimeToActionsSeconds" in report:
        rows.append(("RTO to actions done", fmt_duration(report["recoveryTimeToActionsSeconds"])))
    rows += [("Servers", servers), ("Report as of", fmt_time(report.get("asOf")))]
    if "errorMessage" in execution:
        rows.append(("Error", cell(execution["errorMessage"])))
    return _table(("", ""), rows)


def _waves(report: Mapping[str, Any]) -> list[str]:
    rows = []
    for wave in report["waves"]:
        servers = wave["servers"]
        succeeded = sum(server.get("outcome") == "SUCCEEDED" for server in servers)
        rows.append(
            (
                str(wave["index"] + 1),
                cell(wave["waveName"]),
                cell(wave.get("region")),
                cell(wave.get("executionMode")),
                cell(wave.get("status")),
                fmt_time(wave.get("startTime")),
                fmt_time(wave.get("endTime")),
                cell(fmt_judgement(wave.get("rto"))),
                cell(fmt_judgement(wave.get("rpo"))),
                f"{succeeded}/{len(servers)}",
            )
        )
    header = (
        "#",
        "wave",
        "region",
        "mode",
        "status",
        "started",
        "ended",
        "RTO",
        "RPO",
        "servers succeeded",
    )
    return _table(header, rows)


def _server_rows(
    wave: Mapping[str, Any], *, origin: float | None, as_of: float
) -> list[tuple[str, ...]]:
    rows = []
    for server in wave["servers"]:
        phases = {phase["phase"]: phase for phase in server.get("phases") or []}
        timeline = [
            fmt_phase(phases[name], origin=origin, as_of=as_of) if name in phases else "—"
            for name in PHASES
        ]
        stalled = server.get("stalled")
        stall = "—"
        if stalled is not None:
            stall = (
                f"{cell(stalled.get('phase'))} since {fmt_time(stalled.get('since'))} "
                f"(bound {fmt_duration(stalled.get('boundSeconds'))})"
            )
        rows.append(
            (
                cell(server["sourceServerId"]),
                cell(server.get("outcome")),
                cell(server.get("status")),
                cell(server.get("instanceId")),
                "not measured"
                if "recoveryTimeSeconds" not in server
                else fmt_duration(server["recoveryTimeSeconds"]),
                "not measured"
                if "recoveryPointSeconds" not in server
                else fmt_duration(server["recoveryPointSeconds"]),
                *timeline,
                stall,
            )
        )
    return rows


def _servers(report: Mapping[str, Any]) -> list[str]:
    origin = time_origin(report)
    as_of = float(report["asOf"])
    header = (
        "server",
        "outcome",
        "status",
        "instance",
        "RTO",
        "RPO",
        *(PHASE_LABELS[name] for name in PHASES),
        "stalled",
    )
    lines = [
        (
            'Phase times are relative to the execution\'s start (h:mm:ss); "open": no end '
            "recorded as of the report's time."
        ),
    ]
    for wave in report["waves"]:
        lines += [
            "",
            (
                f"### Wave {wave['index'] + 1}: {cell(wave['waveName'])} "
                f"({cell(wave.get('region'))}, {cell(wave.get('status'))})"
            ),
            "",
        ]
        if not wave["servers"]:
            lines.append("No servers.")
            continue
        lines += _table(header, _server_rows(wave, origin=origin, as_of=as_of))
    return lines


def _failures(report: Mapping[str, Any]) -> list[str]:
    failures = report["failures"]
    if not failures:
        return ["None recorded."]
    lines = []
    for failure in failures:
        scope = failure["scope"]
        reason = cell(failure.get("reason") or "(no reason given)")
        if scope == "EXECUTION":
            lines.append(f"- **Execution**: {reason}")
        elif scope == "WAVE":
            lines.append(f"- **Wave {cell(failure['waveName'])}**: {reason}")
        elif scope == "SERVER":
            lines.append(
                f"- **Server {cell(failure['sourceServerId'])}** ({cell(failure['waveName'])}, "
                f"status {cell(failure.get('status'))}): {reason}"
            )
        else:
            optional = " (optional: does not fail the server)" if failure.get("optional") else ""
            lines.append(
                f"- **Post-launch action {cell(failure.get('action') or failure.get('actionId'))}**"
                f" on {cell(failure['sourceServerId'])} ({cell(failure['waveName'])}): "
                f"{cell(failure.get('status'))}{optional}: {reason}"
            )
    return lines


def _actions(report: Mapping[str, Any]) -> list[str]:
    rows: list[tuple[str, ...]] = []
    notes = []
    for wave in report["waves"]:
        for server in wave["servers"]:
            section = server.get("postLaunchActions")
            if section is None:
                continue
            who = cell(server["sourceServerId"])
            rows.extend(
                (
                    who,
                    cell(wave["waveName"]),
                    cell(run.get("name")),
                    cell(run.get("actionId")),
                    cell(run.get("status")),
                    "optional" if run.get("optional") else "required",
                    cell(run.get("failureReason")),
                )
                for run in section.get("runs") or []
            )
            status = cell(section.get("status"))
            extra = [
                f"{label}: {cell(section[key])}"
                for key, label in (
                    ("shortfall", "never ran"),
                    ("expected", "launch actions not read"),
                    ("omitted", "runs left out"),
                )
                if key in section
            ]
            notes.append(f"- {who}: {status}" + (f"; {'; '.join(extra)}" if extra else ""))
    if not notes:
        return ["None (a drill does not run post-launch actions, or none were recorded)."]
    lines = ["Per server:", "", *notes]
    if rows:
        header = ("server", "wave", "action", "action id", "run status", "kind", "reason")
        lines += ["", *_table(header, rows)]
    return lines


def render_markdown(report: Mapping[str, Any]) -> str:
    """The report as Markdown (GitHub-flavoured tables), one trailing newline."""
    lines = [
        f"# {cell(title_of(report))}",
        "",
        *_summary(report),
        "",
        "## Waves",
        "",
        *_waves(report),
        "",
        "## Servers",
        "",
        *_servers(report),
        "",
        "## Failures",
        "",
        *_failures(report),
        "",
        "## Post-launch actions",
        "",
        *_actions(report),
        "",
        f"<!-- {report['schema']} version {report['version']} -->",
    ]
    return "\n".join(lines) + "\n"
