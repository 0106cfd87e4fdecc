"""deploy/prometheus/prometheus-ecs.yml finds the tasks the stack registers in Cloud Map.

The DNS name, record type and port must be the template's, and promtool (Debian's
``prometheus`` package) must accept the file. Discovery itself is not run here: Cloud
Map's private DNS exists only inside the VPC, and Prometheus's DNS discovery asks the
nameservers of /etc/resolv.conf directly (not /etc/hosts), which a test cannot point
at a stand-in.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from test_cloudformation import ROOT, Stack, load_template

if TYPE_CHECKING:
    from pathlib import Path

SCRAPE_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus-ecs.yml"
RULES = ROOT / "deploy" / "prometheus" / "rules" / "drs-poller.rules.yml"


def _config() -> dict[str, Any]:
    return yaml.safe_load(SCRAPE_CONFIG.read_text(encoding="utf-8"))


def _job(config: dict[str, Any]) -> dict[str, Any]:
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "drs-poller"]
    return job


def _tool(name: str) -> str:
    """The tool's path; a skip on a developer machine without it, a failure in CI."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian package 'prometheus'; ./dev installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def test_scrape_config_asks_for_the_name_record_and_port_the_stack_registers():
    parameters = load_template()["Parameters"]
    job = _job(_config())
    (sd,) = job["dns_sd_configs"]
    name = (
        f"{parameters['DiscoveryServiceName']['Default']}.{parameters['NamespaceName']['Default']}"
    )
    assert sd["names"] == [name]
    assert sd["port"] == parameters["MetricsPort"]["Default"]
    record_types = [
        r["Type"] for r in Stack().properties("DiscoveryService")["DnsConfig"]["DnsRecords"]
    ]
    assert sd["type"] in record_types
    assert job.get("metrics_path", "/metrics") == "/metrics"


def test_scrape_config_loads_the_alert_rules():
    assert _config()["rule_files"] == ["rules/drs-poller.rules.yml"]


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """The config beside the real rules, or beside an empty rule file before they land."""
    shutil.copy(SCRAPE_CONFIG, tmp_path / "prometheus-ecs.yml")
    (tmp_path / "rules").mkdir()
    if RULES.exists():
        shutil.copy(RULES, tmp_path / "rules" / RULES.name)
    else:
        (tmp_path / "rules" / RULES.name).write_text("groups: []\n", encoding="utf-8")
    return tmp_path


def test_promtool_accepts_the_scrape_config(config_dir):
    promtool = _tool("promtool")
    result = subprocess.run(  # noqa: S603 - a fixed tool and our own file
        [promtool, "check", "config", str(config_dir / "prometheus-ecs.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
