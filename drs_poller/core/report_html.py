"""The drill report as one self-contained HTML page: inline CSS, an inline SVG timeline,
no script, no external URL (a Content-Security-Policy of ``default-src 'none'`` says so
to the browser too), so it opens from a file, an S3 console or a mail attachment alike.

The timeline is a Gantt chart: one lane per server, grouped by wave, one bar per phase
(snapshot, conversion, launch, post-launch actions) from the server's ``Timeline``. A
phase with no end recorded is drawn up to the report's as-of time, dashed; a failed
phase is red; a stalled server is marked. Lanes and bars carry ``data-*`` attributes
(``data-server``, ``data-wave``, ``data-phase``, ``data-state``) for tests and tools.

Every string from the item is data from DRS and initiators: each goes through
:func:`html.escape` (quotes too) before it reaches the page.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any, Final

from drs_poller.core.report import (
    FAILED,
    OPEN,
    PHASE_LABELS,
    PHASES,
    fmt_duration,
    fmt_judgement,
    fmt_offset,
    fmt_phase,
    fmt_time,
    time_origin,
    title_of,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

CSP: Final = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

# The SVG's geometry, in pixels.
WIDTH: Final = 1000
LABEL_WIDTH: Final = 230
RIGHT_MARGIN: Final = 24
AXIS_HEIGHT: Final = 28
WAVE_HEIGHT: Final = 24
LANE_HEIGHT: Final = 22
BAR_HEIGHT: Final = 14
LEGEND_HEIGHT: Final = 30
LABEL_CHARS: Final = 30
MIN_BAR: Final = 2.0
# Axis steps tried in turn, seconds: the first that gives at most MAX_TICKS ticks.
TICK_STEPS: Final = (10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 21600, 43200, 86400)
MAX_TICKS: Final = 10

PHASE_COLOURS: Final = {
    "SNAPSHOT": "#5b8fd9",
    "CONVERSION": "#9b6fc6",
    "LAUNCH": "#e0a030",
    "POST_LAUNCH_ACTIONS": "#5aa469",
}
FAILED_COLOUR: Final = "#c8453c"

STYLE: Final = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px;
  color: #1d2330; background: #fff; font-size: 14px; }
h1 { font-size: 22px; margin: 0 0 12px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #d8dde6; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
table { border-collapse: collapse; margin: 6px 0; }
th, td { border: 1px solid #d8dde6; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f2f4f8; font-weight: 600; }
table.summary th { width: 170px; }
code, .id { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace;
  font-size: 12.5px; }
.status-COMPLETED, .outcome-SUCCEEDED, .verdict-MET { color: #1f7a3a; font-weight: 600; }
.status-PARTIAL, .outcome-ACTIVE, .verdict-NOT_JUDGED { color: #9a6200; font-weight: 600; }
.status-FAILED, .outcome-FAILED, .verdict-MISSED { color: #b3261e; font-weight: 600; }
.muted { color: #6b7385; }
.failures li { margin: 3px 0; }
svg.timeline { display: block; border: 1px solid #d8dde6; background: #fbfcfe; }
svg.timeline text { font-family: system-ui, sans-serif; font-size: 11px; fill: #1d2330; }
svg.timeline text.label { font-family: ui-monospace, Menlo, Consolas, monospace; }
svg.timeline text.wave-title { font-weight: 600; font-size: 12px; }
svg.timeline text.tick, svg.timeline text.note { fill: #6b7385; }
svg.timeline text.stall-mark { fill: #b3261e; font-weight: 600; }
svg.timeline line.grid { stroke: #e3e7ee; }
svg.timeline line.as-of { stroke: #6b7385; stroke-dasharray: 2 3; }
svg.timeline line.target { stroke: #b3261e; stroke-dasharray: 6 4; }
svg.timeline rect.wave-bg { fill: #eef1f6; }
svg.timeline g.lane.stalled rect.lane-bg { fill: #fff4e5; }
svg.timeline rect.lane-bg { fill: transparent; }
svg.timeline rect.bar.state-OPEN { fill-opacity: 0.45; stroke-dasharray: 4 2; stroke-width: 1.5; }
svg.timeline rect.bar.stalled { stroke: #b3261e; stroke-width: 2; }
footer { margin-top: 32px; font-size: 12px; color: #6b7385; }
"""


def esc(value: Any) -> str:
    """Any value as HTML text (and attribute value): escaped, quotes too; "—" if unknown."""
    if value is None or value == "":
        return "—"
    return html.escape(str(value), quote=True)


def _class(prefix: str, value: Any) -> str:
    """A CSS class from a value of a known set; anything else gets no class."""
    text = str(value or "")
    return f"{prefix}-{text}" if text.replace("_", "").isalpha() and text.isupper() else ""


def _num(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


# --- the SVG timeline ----------------------------------------------------------------------


class _Scale:
    def __init__(self, *, start: float, end: float) -> None:
        self.start = start
        self.end = max(end, start + 60.0)
        self.left = float(LABEL_WIDTH)
        self.right = float(WIDTH - RIGHT_MARGIN)

    def x(self, at: float) -> float:
        span = self.end - self.start
        return self.left + (at - self.start) / span * (self.right - self.left)

    def ticks(self) -> list[float]:
        span = self.end - self.start
        step = next((s for s in TICK_STEPS if span / s <= MAX_TICKS), TICK_STEPS[-1])
        count = int(span // step)
        return [self.start + step * i for i in range(count + 1)]


def _times(report: Mapping[str, Any]) -> Iterable[float]:
    as_of = float(report["asOf"])
    execution = report["execution"]
    for key in ("startTime", "endTime"):
        if key in execution:
            yield float(execution[key])
    for wave in report["waves"]:
        if "startTime" in wave:
            yield float(wave["startTime"])
        for server in wave["servers"]:
            for phase in server.get("phases") or []:
                yield float(phase["start"])
                yield as_of if phase.get("end") is None else float(phase["end"])


def _scale(report: Mapping[str, Any]) -> _Scale:
    origin = time_origin(report)
    times = list(_times(report))
    start = origin if origin is not None else (min(times) if times else float(report["asOf"]))
    start = min([start, *times])
    end = max([start, *times])
    target = (report.get("rto") or {}).get("targetSeconds")
    if target is not None and origin is not None:
        end = max(end, origin + float(target))
    return _Scale(start=start, end=end)


def _short(value: str) -> str:
    return value if len(value) <= LABEL_CHARS else value[: LABEL_CHARS - 1] + "…"


def _bar(
    phase: Mapping[str, Any], *, scale: _Scale, y: float, origin: float | None, as_of: float
) -> str:
    name = str(phase["phase"])
    start = float(phase["start"])
    end = as_of if phase.get("end") is None else float(phase["end"])
    x = scale.x(start)
    width = max(MIN_BAR, scale.x(end) - x)
    state = str(phase.get("state"))
    colour = FAILED_COLOUR if state == FAILED else PHASE_COLOURS.get(name, "#888888")
    classes = f"bar phase-{name} state-{state}" + (" stalled" if phase.get("stalled") else "")
    tip = f"{PHASE_LABELS.get(name, name)}: {fmt_phase(phase, origin=origin, as_of=as_of)}"
    stroke = colour if state == OPEN else "none"
    return (
        f'<rect class="{classes}" data-phase="{esc(name)}" data-state="{esc(state)}"'
        f' x="{_num(x)}" y="{_num(y)}" width="{_num(width)}" height="{BAR_HEIGHT}" rx="2"'
        f' fill="{colour}" stroke="{stroke}"><title>{esc(tip)}</title></rect>'
    )


def _lane(
    server: Mapping[str, Any],
    wave: Mapping[str, Any],
    *,
    scale: _Scale,
    y: float,
    origin: float | None,
    as_of: float,
) -> str:
    ident = str(server["sourceServerId"])
    stalled = server.get("stalled")
    classes = "lane stalled" if stalled is not None else "lane"
    bar_y = y + (LANE_HEIGHT - BAR_HEIGHT) / 2
    parts = [
        (
            f'<g class="{classes}" data-server="{esc(ident)}" data-wave="{esc(wave["waveName"])}"'
            f' data-wave-index="{wave["index"]}" data-outcome="{esc(server.get("outcome"))}">'
        ),
        f'<rect class="lane-bg" x="0" y="{_num(y)}" width="{WIDTH}" height="{LANE_HEIGHT}"/>',
        (
            f'<text class="label" x="10" y="{_num(y + 15)}">{esc(_short(ident))}'
            f"<title>{esc(ident)} ({esc(server.get('outcome') or server.get('status'))})"
            "</title></text>"
        ),
    ]
    phases = server.get("phases") or []
    parts.extend(_bar(phase, scale=scale, y=bar_y, origin=origin, as_of=as_of) for phase in phases)
    if not phases:
        parts.append(
            f'<text class="note no-timeline" x="{_num(scale.left + 6)}" y="{_num(y + 15)}">'
            "no timeline recorded</text>"
        )
    if stalled is not None:
        at = next((p for p in phases if p.get("stalled")), phases[-1] if phases else None)
        end = as_of if at is None or at.get("end") is None else float(at["end"])
        x = min(scale.x(end) + 4, scale.right - 60) if at is not None else scale.left + 130
        tip = (
            f"stalled in {stalled.get('phase')} since {fmt_time(stalled.get('since'))}"
            f" (bound {fmt_duration(stalled.get('boundSeconds'))})"
        )
        parts.append(
            f'<text class="stall-mark" x="{_num(x)}" y="{_num(y + 15)}">⚠ stalled'
            f"<title>{esc(tip)}</title></text>"
        )
    parts.append("</g>")
    return "".join(parts)


def _axis(scale: _Scale, *, origin: float | None, height: float) -> list[str]:
    parts = []
    base = scale.start if origin is None else origin
    for tick in scale.ticks():
        at = scale.x(tick)
        x = _num(at)
        # The last label ends at its line rather than run off the chart's edge.
        anchor = "end" if at > scale.right - 25 else "middle"
        parts.append(
            f'<line class="grid" x1="{x}" y1="{AXIS_HEIGHT - 6}" x2="{x}" y2="{_num(height)}"/>'
            f'<text class="tick" x="{x}" y="{AXIS_HEIGHT - 10}" text-anchor="{anchor}">'
            f"{esc(fmt_offset(tick - base))}</text>"
        )
    return parts


def _legend(y: float) -> str:
    parts = [f'<g class="legend" transform="translate({LABEL_WIDTH},{_num(y)})">']
    x = 0
    entries = [(PHASE_LABELS[name], PHASE_COLOURS[name], "") for name in PHASES]
    entries += [("failed", FAILED_COLOUR, ""), ("no end recorded", "#5b8fd9", "state-OPEN")]
    for label, colour, extra in entries:
        stroke = colour if extra else "none"
        parts.append(
            f'<rect class="swatch {extra}" x="{x}" y="8" width="14" height="10" fill="{colour}"'
            f' stroke="{stroke}" fill-opacity="{0.45 if extra else 1}"/>'
            f'<text x="{x + 18}" y="17">{esc(label)}</text>'
        )
        x += 24 + 6 * len(label) + 14
    parts.append("</g>")
    return "".join(parts)


def render_timeline(report: Mapping[str, Any]) -> str:
    """The SVG Gantt chart: one lane per server, grouped by wave."""
    scale = _scale(report)
    origin = time_origin(report)
    as_of = float(report["asOf"])
    body: list[str] = []
    y = float(AXIS_HEIGHT)
    for wave in report["waves"]:
        title = (
            f"Wave {wave['index'] + 1}: {wave['waveName']} · {wave.get('region') or 'no region'}"
            f" · {wave.get('status') or 'no status'}"
        )
        group = [
            (
                f'<g class="wave" data-wave="{esc(wave["waveName"])}"'
                f' data-wave-index="{wave["index"]}">'
            ),
            f'<rect class="wave-bg" x="0" y="{_num(y)}" width="{WIDTH}" height="{WAVE_HEIGHT}"/>',
            f'<text class="wave-title" x="10" y="{_num(y + 16)}">{esc(title)}</text>',
        ]
        y += WAVE_HEIGHT
        if "startTime" in wave:
            # The wave's start, down its lanes (under the bars, clear of the title).
            x = _num(scale.x(float(wave["startTime"])))
            lanes = max(1, len(wave["servers"]))
            group.append(
                f'<line class="wave-start" x1="{x}" y1="{_num(y)}" x2="{x}"'
                f' y2="{_num(y + lanes * LANE_HEIGHT)}" stroke="#1d2330" stroke-width="1.5"/>'
            )
        for server in wave["servers"]:
            group.append(_lane(server, wave, scale=scale, y=y, origin=origin, as_of=as_of))
            y += LANE_HEIGHT
        if not wave["servers"]:
            group.append(
                f'<text class="note" x="{_num(scale.left + 6)}" y="{_num(y + 15)}">'
                "no servers</text>"
            )
            y += LANE_HEIGHT
        group.append("</g>")
        body.append("".join(group))
    height = y + 6
    marks = []
    target = (report.get("rto") or {}).get("targetSeconds")
    if target is not None and origin is not None:
        x = _num(scale.x(origin + float(target)))
        # Near the right edge the label ends at the line instead of centring on it.
        anchor = "end" if scale.x(origin + float(target)) > scale.right - 60 else "middle"
        marks.append(
            f'<line class="target" x1="{x}" y1="{AXIS_HEIGHT - 4}" x2="{x}" y2="{_num(height)}"/>'
            f'<text class="note" x="{x}" y="{_num(height + 12)}" text-anchor="{anchor}">'
            f"RTO target {esc(fmt_duration(float(target)))}</text>"
        )
    x = _num(scale.x(as_of))
    marks.append(
        f'<line class="as-of" x1="{x}" y1="{AXIS_HEIGHT - 4}" x2="{x}" y2="{_num(height)}"/>'
    )
    total = height + 16 + LEGEND_HEIGHT
    return "".join(
        [
            # Inline SVG in HTML needs no xmlns (and the page names no URL at all).
            (
                f'<svg class="timeline" width="{WIDTH}"'
                f' height="{_num(total)}" viewBox="0 0 {WIDTH} {_num(total)}" role="img"'
                f' aria-label="timeline of each server\'s phases, by wave">'
            ),
            *_axis(scale, origin=origin, height=height),
            *body,
            *marks,
            _legend(height + 16),
            "</svg>",
        ]
    )


# --- the tables ------------------------------------------------------------------------------


def _row(cells: Iterable[str], *, header: bool = False) -> str:
    tag = "th" if header else "td"
    return "<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>"


def _table(header: Iterable[str], rows: Iterable[Iterable[str]], *, css: str = "") -> str:
    head = _row((esc(h) for h in header), header=True)
    css_attr = f' class="{css}"' if css else ""
    return (
        f"<table{css_attr}><thead>{head}</thead><tbody>"
        + "".join(_row(r) for r in rows)
        + "</tbody></table>"
    )


def _span(kind: str, value: Any) -> str:
    return f'<span class="{_class(kind, value)}">{esc(value)}</span>'


def _judged(section: Mapping[str, Any] | None) -> str:
    verdict = (section or {}).get("verdict")
    return f'<span class="{_class("verdict", verdict)}">{esc(fmt_judgement(section))}</span>'


def _summary(report: Mapping[str, Any]) -> str:
    execution = report["execution"]
    counts = report["counts"]
    servers = (
        f"{counts['servers']} in {counts['waves']} wave(s): {counts['succeeded']} succeeded, "
        f"{counts['failed']} failed"
    )
    for key, words in (
        ("active", "still active"),
        ("notStarted", "not started"),
        ("stalled", "stalled"),
    ):
        if counts[key]:
            servers += f", {counts[key]} {words}"
    rows = [
        ("Execution", f'<span class="id">{esc(execution["executionId"])}</span>'),
        ("Plan", f'<span class="id">{esc(execution.get("planId"))}</span>'),
        ("Type", esc(execution.get("executionType"))),
        (
            "Final status" if execution.get("final") else "Status",
            _span("status", execution.get("status")),
        ),
        ("Started", esc(fmt_time(execution.get("startTime")))),
        ("Ended", esc(fmt_time(execution.get("endTime")))),
        ("Duration", esc(fmt_duration(execution.get("durationSeconds")))),
        ("RTO", _judged(report.get("rto"))),
        ("RPO", _judged(report.get("rpo"))),
    ]
    if "recoveryTimeToActionsSeconds" in report:
        rows.append(
            ("RTO to actions done", esc(fmt_duration(report["recoveryTimeToActionsSeconds"])))
        )
    rows += [("Servers", esc(servers)), ("Report as of", esc(fmt_time(report.get("asOf"))))]
    if "errorMessage" in execution:
        rows.append(("Error", esc(execution["errorMessage"])))
    body = "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="summary"><tbody>{body}</tbody></table>'


def _waves(report: Mapping[str, Any]) -> str:
    rows = []
    for wave in report["waves"]:
        servers = wave["servers"]
        succeeded = sum(server.get("outcome") == "SUCCEEDED" for server in servers)
        rows.append(
            (
                esc(wave["index"] + 1),
                esc(wave["waveName"]),
                esc(wave.get("region")),
                esc(wave.get("executionMode")),
                _span("status", wave.get("status")),
                esc(fmt_time(wave.get("startTime"))),
                esc(fmt_time(wave.get("endTime"))),
                _judged(wave.get("rto")),
                _judged(wave.get("rpo")),
                esc(f"{succeeded}/{len(servers)}"),
                esc(wave.get("error")),
            )
        )
    header = (
        "#", "wave", "region", "mode", "status", "started", "ended", "RTO", "RPO",
        "servers succeeded", "error",
    )  # fmt: skip
    return _table(header, rows)


def _servers(report: Mapping[str, Any]) -> str:
    origin = time_origin(report)
    as_of = float(report["asOf"])
    header = (
        "server", "outcome", "status", "instance", "RTO", "RPO",
        *(PHASE_LABELS[name] for name in PHASES), "stalled", "error",
    )  # fmt: skip
    parts = []
    for wave in report["waves"]:
        parts.append(
            f"<h3>Wave {wave['index'] + 1}: {esc(wave['waveName'])}"
            f' <span class="muted">({esc(wave.get("region"))})</span></h3>'
        )
        rows = []
        for server in wave["servers"]:
            phases = {phase["phase"]: phase for phase in server.get("phases") or []}
            stalled = server.get("stalled")
            stall = "—"
            if stalled is not None:
                stall = esc(
                    f"{stalled.get('phase')} since {fmt_time(stalled.get('since'))}"
                    f" (bound {fmt_duration(stalled.get('boundSeconds'))})"
                )
            rows.append(
                (
                    f'<span class="id">{esc(server["sourceServerId"])}</span>',
                    _span("outcome", server.get("outcome")),
                    esc(server.get("status")),
                    f'<span class="id">{esc(server.get("instanceId"))}</span>',
                    esc(
                        fmt_duration(server["recoveryTimeSeconds"])
                        if "recoveryTimeSeconds" in server
                        else "not measured"
                    ),
                    esc(
                        fmt_duration(server["recoveryPointSeconds"])
                        if "recoveryPointSeconds" in server
                        else "not measured"
                    ),
                    *(
                        esc(fmt_phase(phases[name], origin=origin, as_of=as_of))
                        if name in phases
                        else "—"
                        for name in PHASES
                    ),
                    stall,
                    esc(server.get("error")),
                )
            )
        parts.append(_table(header, rows) if rows else '<p class="muted">No servers.</p>')
    return "".join(parts)


def _failures(report: Mapping[str, Any]) -> str:
    failures = report["failures"]
    if not failures:
        return '<p class="muted">None recorded.</p>'
    items = []
    for failure in failures:
        scope = failure["scope"]
        reason = esc(failure.get("reason") or "(no reason given)")
        if scope == "EXECUTION":
            items.append(f"<li><strong>Execution</strong>: {reason}</li>")
        elif scope == "WAVE":
            items.append(f"<li><strong>Wave {esc(failure['waveName'])}</strong>: {reason}</li>")
        elif scope == "SERVER":
            items.append(
                f'<li><strong>Server <span class="id">{esc(failure["sourceServerId"])}</span>'
                f"</strong> ({esc(failure['waveName'])}, status {esc(failure.get('status'))}):"
                f" {reason}</li>"
            )
        else:
            optional = " (optional: does not fail the server)" if failure.get("optional") else ""
            items.append(
                "<li><strong>Post-launch action"
                f" {esc(failure.get('action') or failure.get('actionId'))}</strong> on"
                f' <span class="id">{esc(failure["sourceServerId"])}</span>'
                f" ({esc(failure['waveName'])}): {esc(failure.get('status'))}{optional}:"
                f" {reason}</li>"
            )
    return '<ul class="failures">' + "".join(items) + "</ul>"


def _actions(report: Mapping[str, Any]) -> str:
    rows: list[tuple[str, ...]] = []
    for wave in report["waves"]:
        for server in wave["servers"]:
            section = server.get("postLaunchActions")
            if section is None:
                continue
            ident = f'<span class="id">{esc(server["sourceServerId"])}</span>'
            notes = "; ".join(
                f"{label}: {section[key]}"
                for key, label in (
                    ("shortfall", "never ran"),
                    ("expected", "launch actions not read"),
                    ("omitted", "runs left out"),
                )
                if key in section
            )
            runs = section.get("runs") or [{}]
            rows.extend(
                (
                    ident,
                    esc(wave["waveName"]),
                    _span("status", section.get("status")),
                    esc(run.get("name")),
                    esc(run.get("actionId")),
                    esc(run.get("status")),
                    esc(None if not run else "optional" if run.get("optional") else "required"),
                    esc(run.get("failureReason")),
                    esc(notes),
                )
                for run in runs
            )
    if not rows:
        return (
            '<p class="muted">None (a drill does not run post-launch actions, or none were'
            " recorded).</p>"
        )
    header = (
        "server", "wave", "actions status", "action", "action id", "run status", "kind",
        "reason", "notes",
    )  # fmt: skip
    return _table(header, rows)


def render_html(report: Mapping[str, Any]) -> str:
    """The whole page, one trailing newline."""
    title = esc(title_of(report))
    return "".join(
        [
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n',
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
            f"<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
            f"<h1>{title}</h1>\n",
            _summary(report),
            "\n<h2>Timeline</h2>\n",
            (
                '<p class="muted">One lane per server, grouped by wave; times relative to the'
                " execution's start (h:mm:ss). Hover a bar for its times.</p>\n"
            ),
            render_timeline(report),
            "\n<h2>Waves</h2>\n",
            _waves(report),
            "\n<h2>Servers</h2>\n",
            _servers(report),
            "\n<h2>Failures</h2>\n",
            _failures(report),
            "\n<h2>Post-launch actions</h2>\n",
            _actions(report),
            (
                f"\n<footer>drs-poller report · schema {esc(report['schema'])} version"
                f" {esc(report['version'])} · as of {esc(fmt_time(report.get('asOf')))}</footer>\n"
            ),
            "</body>\n</html>\n",
        ]
    )
