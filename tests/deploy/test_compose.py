"""docker-compose.yml: valid for ``docker-compose config`` (no Docker engine runs here), the
fixed topology, a start order that healthchecks really back, the demo's settings at the
compose speed, and commands that are the CLI's own subcommands."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from drs_poller.cli import build_parser
from drs_poller.local.demo import demo_settings
from drs_poller.local.stack import LocalStack
from drs_poller.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
COMPOSE_SPEED = 60.0
SERVICES = {"dynamodb", "ec2", "drs-sim", "init", "poller", "prometheus", "grafana"}


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """docker-compose, by the path the tool fixture found; never shell input."""
    return subprocess.run(argv, capture_output=True, text=True, check=False, cwd=REPO)  # noqa: S603


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict[str, Any]]:
    return compose["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


# --- docker-compose itself ------------------------------------------------------------


def test_docker_compose_config_accepts_the_file(docker_compose):
    result = run([docker_compose, "--file", str(COMPOSE_FILE), "config", "--quiet"])
    assert result.returncode == 0, result.stderr


def test_docker_compose_config_rejects_a_broken_file(docker_compose, tmp_path):
    # The same validation on a file with a wrong depends_on condition fails, so the test
    # above cannot pass just because docker-compose ran.
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE_FILE.read_text().replace("service_healthy", "service_ok", 1))
    result = run([docker_compose, "--file", str(broken), "config", "--quiet"])
    assert result.returncode != 0
    assert "service_ok" in result.stderr


# --- topology -------------------------------------------------------------------------


def test_the_services_and_their_images(services):
    assert set(services) == SERVICES
    assert services["dynamodb"]["image"].startswith("amazon/dynamodb-local:")
    for name in ("ec2", "drs-sim", "init"):
        assert services[name]["build"]["target"] == "local", name
    assert services["poller"]["build"]["target"] == "production"
    assert services["prometheus"]["image"].startswith("prom/prometheus:v")
    assert services["grafana"]["image"].startswith("grafana/grafana:")
    for name, service in services.items():
        image = service.get("image", "")
        assert not image.endswith(":latest") or "build" in service, f"{name}: pin the tag"
        if "build" not in service:
            assert ":" in image, f"{name}: pin the tag"


def test_ec2_is_moto_server_on_port_5000(services):
    ec2 = services["ec2"]
    assert [*ec2["entrypoint"], *ec2["command"]] == [
        "python",
        "-m",
        "moto.server",
        "-H",
        "0.0.0.0",  # noqa: S104 - inside the compose network
        "-p",
        "5000",
    ]


def _published(service: dict[str, Any]) -> set[int]:
    return {int(str(port).rsplit(":", 1)[-1]) for port in service.get("ports", [])}


@pytest.mark.parametrize(
    ("service", "port"),
    [
        ("dynamodb", 8000),
        ("drs-sim", 8081),
        ("poller", 9100),
        ("prometheus", 9090),
        ("grafana", 3000),
    ],
)
def test_fixed_ports(services, service, port):
    assert port in _published(services[service])


def test_every_endpoint_names_a_service_and_its_port(services):
    env = environment(services["poller"])
    assert env["DRS_POLLER_DYNAMODB_ENDPOINT_URL"] == "http://dynamodb:8000"
    assert env["DRS_POLLER_DRS_ENDPOINT_URL"] == "http://drs-sim:8081"
    assert env["DRS_POLLER_EC2_ENDPOINT_URL"] == "http://ec2:5000"
    assert env["DRS_POLLER_METRICS_PORT"] == "9100"
    init = environment(services["init"])
    for key in ("DRS_POLLER_TABLE_NAME", "DRS_POLLER_DYNAMODB_ENDPOINT_URL", "AWS_REGION"):
        assert init[key] == env[key], key
    assert init["DRS_POLLER_DRS_ENDPOINT_URL"] == env["DRS_POLLER_DRS_ENDPOINT_URL"]


# --- start order ----------------------------------------------------------------------

EXPECTED_ORDER = {
    "ec2": {},
    "dynamodb": {},
    "drs-sim": {"ec2": "service_healthy"},
    "init": {"dynamodb": "service_healthy", "drs-sim": "service_healthy"},
    "poller": {
        "dynamodb": "service_healthy",
        "ec2": "service_healthy",
        "drs-sim": "service_healthy",
        "init": "service_healthy",
    },
    "prometheus": {"poller": "service_healthy"},
    "grafana": {"prometheus": "service_healthy"},
}


@pytest.mark.parametrize("name", sorted(EXPECTED_ORDER))
def test_depends_on_conditions(services, name):
    depends = services[name].get("depends_on") or {}
    assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
    assert {dep: spec["condition"] for dep, spec in depends.items()} == EXPECTED_ORDER[name]


def test_every_service_waited_on_as_healthy_has_a_healthcheck(services):
    # docker-compose config does not check this; without one, `up` waits forever.
    for name, service in services.items():
        for dependency, spec in (service.get("depends_on") or {}).items():
            if spec["condition"] == "service_healthy":
                check = services[dependency].get("healthcheck") or {}
                assert check.get("test"), f"{name} waits for {dependency}, which has no healthcheck"
                assert not check.get("disable")


def test_the_poller_waits_for_the_table_not_for_the_initiator(services):
    # The initiator starts later waves only once earlier ones are final: the poller must
    # run beside it. init marks the table ready before it starts initiating.
    script = services["init"]["command"][0]
    marker = services["init"]["healthcheck"]["test"][-1]
    table, _, initiate = script.partition(f"touch {marker}")
    assert "init-table" in table
    assert "initiate" in initiate
    assert "initiate" not in table


def test_the_poller_gets_time_to_stop_cleanly(services):
    seconds = int(services["poller"]["stop_grace_period"].removesuffix("s"))
    grace = Settings.model_fields["shutdown_grace"].default
    assert seconds > grace


# --- (a) the demo's settings at the compose speed ---------------------------------------


def test_compose_speed_is_the_same_everywhere(services):
    speeds = {
        "drs-sim": _parse(services["drs-sim"]["command"]).speed,
        "init": _parse(_init_commands(services)[1]).speed,
    }
    assert set(speeds.values()) == {COMPOSE_SPEED}, speeds


def _compose_settings(services: dict[str, dict[str, Any]]) -> Settings:
    env = environment(services["poller"])
    prefix = "DRS_POLLER_"
    fields = {k.removeprefix(prefix).lower(): v for k, v in env.items() if k.startswith(prefix)}
    unknown = set(fields) - set(Settings.model_fields)
    assert not unknown, f"the poller sets variables the daemon does not know: {unknown}"
    return load_settings(**fields)


DURATION_FIELDS = sorted(
    name for name, spec in Settings.model_fields.items() if spec.annotation is float
)


@pytest.mark.parametrize("field", DURATION_FIELDS)
def test_poller_durations_are_the_demos_at_compose_speed(services, field):
    compose_settings = _compose_settings(services)
    # demo_settings() takes the stack it runs on; only the endpoints come from it.
    stand_in = LocalStack(
        moto_url="http://ec2:5000", drs_url="http://drs-sim:8081", drs=None, region="us-east-1"
    )  # type: ignore[arg-type]
    # deadline 0: compose has no demo deadline to outlive, so the maximum execution age is
    # the daemon's own, scaled (43200 s / 60).
    demo = demo_settings(
        table_name=compose_settings.table_name, stack=stand_in, speed=COMPOSE_SPEED, deadline=0
    )
    assert getattr(compose_settings, field) == pytest.approx(getattr(demo, field)), (
        f"DRS_POLLER_{field.upper()}: compose {getattr(compose_settings, field)}, "
        f"demo at --speed {COMPOSE_SPEED:g} {getattr(demo, field)}"
    )


# --- (b) the commands are the CLI's subcommands ------------------------------------------


def _parse(argv: list[str]):
    return build_parser().parse_args(argv)


def _init_commands(services: dict[str, dict[str, Any]]) -> list[list[str]]:
    init = services["init"]
    assert init["entrypoint"] == ["sh", "-ec"]
    commands = []
    for part in init["command"][0].split("&&"):
        words = shlex.split(part)
        if words and words[0] == "exec":
            words = words[1:]
        if words and words[0] == "drs-poller":
            commands.append(words[1:])
    return commands


def test_drs_sim_runs_simulate(services):
    service = services["drs-sim"]
    assert "entrypoint" not in service  # the image's: drs-poller
    args = _parse(service["command"])
    assert args.command == "simulate"
    assert (args.host, args.port, args.speed) == ("0.0.0.0", 8081, COMPOSE_SPEED)  # noqa: S104
    assert args.ec2_endpoint_url == "http://ec2:5000"


def test_init_runs_init_table_then_initiate(services):
    commands = _init_commands(services)
    assert [c[0] for c in commands] == ["init-table", "initiate"]
    assert _parse(commands[0]).command == "init-table"
    initiate = _parse(commands[1])
    assert (initiate.command, initiate.executions, initiate.speed) == ("initiate", 8, COMPOSE_SPEED)


def test_poller_runs_the_daemon(services):
    service = services["poller"]
    assert "entrypoint" not in service
    assert build_parser().parse_args(service["command"]).command == "run"


# --- Prometheus and Grafana files the services mount -------------------------------------


def _mounts(service: dict[str, Any]) -> dict[str, Path]:
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        mounts[target] = (REPO / source).resolve()
    return mounts


def test_every_mounted_file_exists(services):
    for name, service in services.items():
        for target, source in _mounts(service).items():
            assert source.exists(), f"{name}: {source} (mounted at {target}) is missing"


def test_prometheus_scrapes_the_poller_and_loads_the_rules(services):
    prometheus = services["prometheus"]
    mounts = _mounts(prometheus)
    config_flag = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    config_path = mounts[config_flag.split("=", 1)[1]]
    config = yaml.safe_load(config_path.read_text())
    (job,) = config["scrape_configs"]
    assert job["job_name"].startswith("drs-poller")  # the alert rules select on it
    port = environment(services["poller"])["DRS_POLLER_METRICS_PORT"]
    assert job["static_configs"][0]["targets"] == [f"poller:{port}"]
    # Rule files are relative to the config file; the rules directory is mounted beside it.
    config_dir = Path(config_flag.split("=", 1)[1]).parent
    for pattern in config["rule_files"]:
        in_container = config_dir / pattern
        assert str(in_container.parent) in mounts, f"{in_container.parent} is not mounted"
        assert list(mounts[str(in_container.parent)].glob(in_container.name)), pattern


def test_grafana_provisions_the_datasource_and_the_dashboard(services):
    grafana = services["grafana"]
    mounts = _mounts(grafana)
    provisioning = mounts["/etc/grafana/provisioning"]
    (datasource,) = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())[
        "datasources"
    ]
    assert datasource["url"] == "http://prometheus:9090"
    (provider,) = yaml.safe_load((provisioning / "dashboards/drs-poller.yml").read_text())[
        "providers"
    ]
    dashboards = mounts[provider["options"]["path"]]
    assert list(dashboards.glob("*.json"))
    home = Path(environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert (mounts[str(home.parent)] / home.name).exists()
