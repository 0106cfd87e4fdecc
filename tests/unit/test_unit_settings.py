"""load_settings: contract §4 defaults, environment variables, and errors that name them."""

from __future__ import annotations

import os

import pytest

from drs_poller.settings import ENV_PREFIX, Settings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    """No DRS_POLLER_* variable of the machine running the tests leaks in."""
    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


@pytest.fixture
def table(monkeypatch):
    monkeypatch.setenv("DRS_POLLER_TABLE_NAME", "executions")


CONTRACT_DEFAULTS = [
    ("status_index", "StatusIndex"),
    ("dynamodb_endpoint_url", None),
    ("drs_endpoint_url", None),
    ("ec2_endpoint_url", None),
    ("interval_pending", 45.0),
    ("interval_started", 15.0),
    ("interval_in_progress", 30.0),
    ("interval_post_launch", 30.0),
    ("discovery_interval", 30.0),
    ("overdue_after", 1800.0),
    ("post_launch_grace", 600.0),
    ("metrics_port", 9100),
    ("log_format", "json"),
]


@pytest.mark.parametrize(("field", "default"), CONTRACT_DEFAULTS)
def test_defaults_equal_the_contract_table(table, field, default):
    settings = load_settings()
    assert settings.table_name == "executions"
    assert getattr(settings, field) == default


def test_max_execution_age_default_is_much_larger_than_overdue(table):
    settings = load_settings()
    assert settings.max_execution_age > settings.overdue_after


def test_table_name_is_required():
    with pytest.raises(SettingsError, match="DRS_POLLER_TABLE_NAME"):
        load_settings()


def test_overrides_without_environment():
    settings = load_settings(table_name="t-1", interval_started=2.5)
    assert settings.table_name == "t-1"
    assert settings.interval_started == 2.5


ENVIRONMENT = [
    ("DRS_POLLER_STATUS_INDEX", "ByStatus", "status_index", "ByStatus"),
    ("DRS_POLLER_INTERVAL_PENDING", "0.5", "interval_pending", 0.5),
    ("DRS_POLLER_INTERVAL_STARTED", "2.25", "interval_started", 2.25),
    ("DRS_POLLER_INTERVAL_IN_PROGRESS", "7", "interval_in_progress", 7.0),
    ("DRS_POLLER_INTERVAL_POST_LAUNCH", "0.5", "interval_post_launch", 0.5),
    ("DRS_POLLER_DISCOVERY_INTERVAL", "1.5", "discovery_interval", 1.5),
    ("DRS_POLLER_OVERDUE_AFTER", "600", "overdue_after", 600.0),
    ("DRS_POLLER_POST_LAUNCH_GRACE", "0", "post_launch_grace", 0.0),
    ("DRS_POLLER_METRICS_PORT", "0", "metrics_port", 0),
    ("DRS_POLLER_METRICS_PORT", "65535", "metrics_port", 65535),
    ("DRS_POLLER_LOG_FORMAT", "console", "log_format", "console"),
    ("DRS_POLLER_SHUTDOWN_GRACE", "29.5", "shutdown_grace", 29.5),
    (
        "DRS_POLLER_DYNAMODB_ENDPOINT_URL",
        "http://localhost:4566/",
        "dynamodb_endpoint_url",
        "http://localhost:4566",
    ),
    ("DRS_POLLER_DRS_ENDPOINT_URL", "https://drs.local", "drs_endpoint_url", "https://drs.local"),
    ("DRS_POLLER_EC2_ENDPOINT_URL", "", "ec2_endpoint_url", None),
    ("drs_poller_interval_started", "3", "interval_started", 3.0),
]


@pytest.mark.usefixtures("table")
@pytest.mark.parametrize(("variable", "value", "field", "expected"), ENVIRONMENT)
def test_environment_variables(monkeypatch, variable, value, field, expected):
    monkeypatch.setenv(variable, value)
    assert getattr(load_settings(), field) == expected


def test_explicit_override_wins_over_environment(monkeypatch, table):
    monkeypatch.setenv("DRS_POLLER_INTERVAL_PENDING", "10")
    assert load_settings(interval_pending=20.0).interval_pending == 20.0


BAD = [
    # variable, value, variable the message must name
    ("DRS_POLLER_TABLE_NAME", "x", "DRS_POLLER_TABLE_NAME"),
    ("DRS_POLLER_TABLE_NAME", "bad table!", "DRS_POLLER_TABLE_NAME"),
    ("DRS_POLLER_INTERVAL_PENDING", "-1", "DRS_POLLER_INTERVAL_PENDING"),
    ("DRS_POLLER_INTERVAL_PENDING", "0", "DRS_POLLER_INTERVAL_PENDING"),
    ("DRS_POLLER_INTERVAL_STARTED", "-0.5", "DRS_POLLER_INTERVAL_STARTED"),
    ("DRS_POLLER_INTERVAL_IN_PROGRESS", "-30", "DRS_POLLER_INTERVAL_IN_PROGRESS"),
    ("DRS_POLLER_INTERVAL_POST_LAUNCH", "-30", "DRS_POLLER_INTERVAL_POST_LAUNCH"),
    ("DRS_POLLER_INTERVAL_POST_LAUNCH", "soon", "DRS_POLLER_INTERVAL_POST_LAUNCH"),
    ("DRS_POLLER_INTERVAL_PENDING", "", "DRS_POLLER_INTERVAL_PENDING"),
    ("DRS_POLLER_INTERVAL_STARTED", "nan", "DRS_POLLER_INTERVAL_STARTED"),
    ("DRS_POLLER_INTERVAL_IN_PROGRESS", "inf", "DRS_POLLER_INTERVAL_IN_PROGRESS"),
    ("DRS_POLLER_POST_LAUNCH_GRACE", "nan", "DRS_POLLER_POST_LAUNCH_GRACE"),
    ("DRS_POLLER_STATUS_INDEX", "", "DRS_POLLER_STATUS_INDEX"),
    ("DRS_POLLER_DISCOVERY_INTERVAL", "-5", "DRS_POLLER_DISCOVERY_INTERVAL"),
    ("DRS_POLLER_OVERDUE_AFTER", "-1", "DRS_POLLER_OVERDUE_AFTER"),
    ("DRS_POLLER_POST_LAUNCH_GRACE", "-1", "DRS_POLLER_POST_LAUNCH_GRACE"),
    ("DRS_POLLER_METRICS_PORT", "70000", "DRS_POLLER_METRICS_PORT"),
    ("DRS_POLLER_METRICS_PORT", "-1", "DRS_POLLER_METRICS_PORT"),
    ("DRS_POLLER_METRICS_PORT", "nine", "DRS_POLLER_METRICS_PORT"),
    ("DRS_POLLER_LOG_FORMAT", "xml", "DRS_POLLER_LOG_FORMAT"),
    ("DRS_POLLER_LOG_LEVEL", "TRACE", "DRS_POLLER_LOG_LEVEL"),
    ("DRS_POLLER_DYNAMODB_ENDPOINT_URL", "localhost:4566", "DRS_POLLER_DYNAMODB_ENDPOINT_URL"),
    ("DRS_POLLER_DRS_ENDPOINT_URL", "ftp://drs.local", "DRS_POLLER_DRS_ENDPOINT_URL"),
    ("DRS_POLLER_EC2_ENDPOINT_URL", "ec2.local", "DRS_POLLER_EC2_ENDPOINT_URL"),
    ("DRS_POLLER_SHUTDOWN_GRACE", "30", "DRS_POLLER_SHUTDOWN_GRACE"),
    ("DRS_POLLER_SHUTDOWN_GRACE", "45", "DRS_POLLER_SHUTDOWN_GRACE"),
    ("DRS_POLLER_SHUTDOWN_GRACE", "-1", "DRS_POLLER_SHUTDOWN_GRACE"),
    ("DRS_POLLER_COALESCE_WINDOW", "-1", "DRS_POLLER_COALESCE_WINDOW"),
    ("DRS_POLLER_HEARTBEAT_INTERVAL", "0", "DRS_POLLER_HEARTBEAT_INTERVAL"),
    ("DRS_POLLER_MAX_EXECUTION_AGE", "0", "DRS_POLLER_MAX_EXECUTION_AGE"),
    ("DRS_POLLER_UNKNOWN_JOB_MAX_POLLS", "0", "DRS_POLLER_UNKNOWN_JOB_MAX_POLLS"),
    ("DRS_POLLER_HISTORY_LIMIT", "1", "DRS_POLLER_HISTORY_LIMIT"),
    ("DRS_POLLER_MAX_CONCURRENT_CALLS", "0", "DRS_POLLER_MAX_CONCURRENT_CALLS"),
    ("DRS_POLLER_MAX_ATTEMPTS", "21", "DRS_POLLER_MAX_ATTEMPTS"),
    ("DRS_POLLER_BACKOFF_BASE", "0", "DRS_POLLER_BACKOFF_BASE"),
    ("DRS_POLLER_READ_TIMEOUT", "-1", "DRS_POLLER_READ_TIMEOUT"),
    ("DRS_POLLER_BACKOFF_CAP", "0.1", "DRS_POLLER_BACKOFF_CAP"),  # below the 0.5 base
    ("DRS_POLLER_MAX_EXECUTION_AGE", "1800", "DRS_POLLER_MAX_EXECUTION_AGE"),  # == overdue
    ("DRS_POLLER_OVERDUE_AFTER", "50000", "DRS_POLLER_MAX_EXECUTION_AGE"),  # > max age
]


@pytest.mark.parametrize(
    ("variable", "value", "named"), BAD, ids=[f"{case[0]}={case[1]}" for case in BAD]
)
def test_bad_value_names_the_variable(monkeypatch, table, variable, value, named):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert named in message
    assert "invalid configuration" in message


def test_backoff_cap_below_base_names_both(monkeypatch, table):
    monkeypatch.setenv("DRS_POLLER_BACKOFF_BASE", "5")
    monkeypatch.setenv("DRS_POLLER_BACKOFF_CAP", "4")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "DRS_POLLER_BACKOFF_CAP" in str(caught.value)
    assert "DRS_POLLER_BACKOFF_BASE" in str(caught.value)


def test_backoff_cap_equal_to_base_is_fine(monkeypatch, table):
    monkeypatch.setenv("DRS_POLLER_BACKOFF_BASE", "5")
    monkeypatch.setenv("DRS_POLLER_BACKOFF_CAP", "5")
    assert load_settings().backoff_cap == 5.0


def test_every_bad_variable_is_named_at_once(monkeypatch, table):
    monkeypatch.setenv("DRS_POLLER_INTERVAL_PENDING", "-1")
    monkeypatch.setenv("DRS_POLLER_METRICS_PORT", "70000")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "DRS_POLLER_INTERVAL_PENDING" in str(caught.value)
    assert "DRS_POLLER_METRICS_PORT" in str(caught.value)


def test_bad_override_names_the_variable(table):
    with pytest.raises(SettingsError, match="DRS_POLLER_INTERVAL_STARTED"):
        load_settings(interval_started=-1)


def test_settings_are_frozen(table):
    settings = load_settings()
    with pytest.raises(Exception, match="frozen"):
        settings.interval_pending = 1.0  # type: ignore[misc]


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_field_has_a_description(field):
    description = Settings.model_fields[field].description
    assert isinstance(description, str)
    assert description.strip()
