"""The HTML drill report in a real browser: Debian's ``chromium``, headless.

Each sample report is written to a file and opened twice: once for a PNG screenshot,
once for the DOM as rendered (``--dump-dom``). The DOM must hold one lane per server,
grouped by wave, and one bar per phase of each server's timeline. Chromium's every
request goes through a proxy on loopback that answers nothing and counts connections
(``--proxy-server``, with ``<-loopback>`` so that not even loopback is exempt): the
page must make none. Chromium itself calls a few Google services whatever the page
(the component updater, sign-in, network time; Debian's build keeps some of them on
despite ``--disable-background-networking``): requests to exactly those hosts
(:data:`BROWSER_SERVICES`) are the browser's and are left out, any other host fails
the test. The page names no URL at all (tests/unit/test_unit_report.py), and its
Content-Security-Policy (``default-src 'none'``) must be in the rendered DOM. A control
page with one external image proves the proxy sees what a page loads.

``./dev test`` installs chromium with apt when it runs as root; without it this test
skips on a developer machine and fails under ``CI=true``. ``UPDATE_SCREENSHOT=1`` also
copies the recovery sample's screenshot to docs/images/report.png (the README's).
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import threading
from html.parser import HTMLParser
from pathlib import Path
from typing import Self

import pytest
from report_samples import SAMPLES

from drs_poller.core.report import build_report
from drs_poller.core.report_html import CSP, render_html

ROOT = Path(__file__).resolve().parents[2]
README_SCREENSHOT = ROOT / "docs" / "images" / "report.png"
WINDOW = (1100, 1000)
# Hosts Chromium calls by itself, whatever page it opens (see the module's docstring).
BROWSER_SERVICES = frozenset(
    {
        "update.googleapis.com",
        "accounts.google.com",
        "clients2.google.com",
        "clients2.googleusercontent.com",
        "optimizationguide-pa.googleapis.com",
        "content-autofill.googleapis.com",
        "safebrowsingohttpgateway.googleapis.com",
        "edgedl.me.gvt1.com",
        "redirector.gvt1.com",
        "www.google.com",
    }
)
CHROMIUM_TIMEOUT = 90


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium")
    if path is not None:
        return path
    reason = "chromium is not installed; apt-get install chromium (./dev test does it as root)"
    if in_ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)
    raise AssertionError  # pragma: no cover - pytest.skip raises


class Trap:
    """A proxy on loopback that accepts connections, records the first line of each
    (``CONNECT host:443``, ``GET http://...``) and closes them."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.requests: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.server.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self.server.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(2)
                try:
                    first = connection.recv(4096).split(b"\r\n", 1)[0]
                except OSError:
                    first = b"(nothing read)"
                self.requests.append(first.decode(errors="replace"))


def host_of(request: str) -> str:
    """The host of a proxy request line: ``CONNECT host:443 ...``, ``GET http://host/...``."""
    parts = request.split()
    target = parts[1] if len(parts) > 1 else request
    if "://" in target:
        target = target.split("://", 1)[1].split("/", 1)[0]
    return target.rsplit(":", 1)[0] if ":" in target else target


def page_requests(trap: Trap) -> list[str]:
    """What the trap saw, without the browser's own calls to its services."""
    return [r for r in trap.requests if host_of(r) not in BROWSER_SERVICES]


def run_chromium(chromium: str, page: Path, *args: str, trap: Trap, profile: Path) -> str:
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--disable-breakpad",
        "--disable-client-side-phishing-detection",
        "--disable-domain-reliability",
        "--no-pings",
        "--metrics-recording-only",
        "--disable-features=Translate,MediaRouter,OptimizationHints,NetworkTimeServiceQuerying",
        "--disable-dev-shm-usage",
        "--force-device-scale-factor=1",
        f"--user-data-dir={profile}",
        f"--proxy-server=127.0.0.1:{trap.port}",
        "--proxy-bypass-list=<-loopback>",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        *args,
        page.as_uri(),
    ]
    done = subprocess.run(  # noqa: S603 - a fixed command line, our own file
        command, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


class Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None], list[str]]] = []
        self._open: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        found = dict(attrs)
        parents = [p.get("data-wave") or "" for t, p in self._open if t == "g"]
        self.elements.append((tag, found, parents))
        if tag not in {"meta", "rect", "line", "br", "img", "input", "link"}:
            self._open.append((tag, found))

    def handle_endtag(self, tag):
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index][0] == tag:
                del self._open[index:]
                break

    def having(self, tag: str, css: str) -> list[tuple[dict[str, str | None], list[str]]]:
        return [
            (attrs, parents)
            for t, attrs, parents in self.elements
            if t == tag and css in (attrs.get("class") or "").split()
        ]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_host_of():
    assert host_of("CONNECT update.googleapis.com:443 HTTP/1.1") == "update.googleapis.com"
    assert host_of("GET http://drs-poller.invalid/x.png HTTP/1.1") == "drs-poller.invalid"
    assert host_of("GET http://127.0.0.1:8080/ HTTP/1.1") == "127.0.0.1"


@pytest.mark.parametrize("name", ["recovery-mixed", "drill-completed", "legacy-drill"])
def test_the_report_renders_every_lane_and_bar_and_loads_nothing(chromium, tmp_path, name):
    item, as_of = SAMPLES[name]()
    report = build_report(item, as_of=as_of)
    page = tmp_path / f"{name}.html"
    page.write_text(render_html(report), encoding="utf-8")
    screenshot = tmp_path / f"{name}.png"

    with Trap() as trap:
        run_chromium(
            chromium, page, f"--screenshot={screenshot}", trap=trap, profile=tmp_path / "p1"
        )
        dom = run_chromium(chromium, page, "--dump-dom", trap=trap, profile=tmp_path / "p2")

    assert page_requests(trap) == [], "the page made network requests"
    assert png_size(screenshot) == WINDOW
    assert screenshot.stat().st_size > 10_000  # something was drawn
    parsed = Dom()
    parsed.feed(dom)
    metas = [attrs for tag, attrs, _ in parsed.elements if tag == "meta"]
    assert {"http-equiv": "Content-Security-Policy", "content": CSP} in metas

    waves = [attrs["data-wave"] for attrs, _ in parsed.having("g", "wave")]
    assert waves == [wave["waveName"] for wave in report["waves"]]
    lanes = parsed.having("g", "lane")
    expected = [
        (server["sourceServerId"], wave["waveName"])
        for wave in report["waves"]
        for server in wave["servers"]
    ]
    assert [(attrs["data-server"], attrs["data-wave"]) for attrs, _ in lanes] == expected
    # Each lane sits inside its wave's group.
    assert all(parents[-1] == attrs["data-wave"] for attrs, parents in lanes)
    bars = [(attrs, parents) for attrs, parents in parsed.having("rect", "bar")]
    expected_bars = sorted(
        (wave["waveName"], phase["phase"], phase["state"])
        for wave in report["waves"]
        for server in wave["servers"]
        for phase in server["phases"]
    )
    assert sorted((p[-1], a["data-phase"], a["data-state"]) for a, p in bars) == expected_bars
    if name == "recovery-mixed":
        assert {a["data-phase"] for a, _ in bars} == {
            "SNAPSHOT",
            "CONVERSION",
            "LAUNCH",
            "POST_LAUNCH_ACTIONS",
        }
        stalled = [a["data-server"] for a, _ in lanes if "stalled" in (a["class"] or "")]
        assert stalled == ["s-00000000000000b1"]
        if os.environ.get("UPDATE_SCREENSHOT", "") not in ("", "0"):
            README_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(screenshot, README_SCREENSHOT)


def test_the_trap_sees_what_a_page_loads(chromium, tmp_path):
    """The control: a page (no CSP) with one external image is seen by the proxy, so an
    empty list above means no request, not a blind proxy."""
    page = tmp_path / "control.html"
    page.write_text(
        "<!DOCTYPE html><html><body><img src='http://drs-poller.invalid/x.png'></body></html>",
        encoding="utf-8",
    )
    with Trap() as trap:
        run_chromium(chromium, page, "--dump-dom", trap=trap, profile=tmp_path / "p")
    assert [host_of(request) for request in page_requests(trap)] == ["drs-poller.invalid"]
