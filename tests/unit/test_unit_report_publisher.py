"""The sender of drill reports (engine/reporting.py) with a stand-in S3: what it puts, under
which keys, and that a failure is counted and logged, never raised. The real puts, to
moto's S3 through the daemon, are tests/integration/test_report_s3.py."""

from __future__ import annotations

import json

import pytest
from report_samples import SAMPLES

from drs_poller.clients.calling import AwsCallError
from drs_poller.core.backoff import ErrorKind
from drs_poller.engine.reporting import ReportPublisher, render_reports, report_key
from drs_poller.observability.metrics import Metrics
from drs_poller.settings import SettingsError, load_settings


class FakeS3:
    def __init__(self, *, fail: set[str] | None = None) -> None:
        self.puts: list[tuple[str, str, bytes, str]] = []
        self.fail = fail or set()

    async def put_object(self, *, bucket, key, body, content_type):
        if any(key.endswith(suffix) for suffix in self.fail):
            raise AwsCallError(
                service="s3",
                operation="PutObject",
                kind=ErrorKind.PERMANENT,
                code="AccessDenied",
                message="denied",
            )
        self.puts.append((bucket, key, body, content_type))


def count(metrics: Metrics, fmt: str, outcome: str) -> float:
    value = metrics.registry.get_sample_value(
        "drs_poller_report_puts_total", {"format": fmt, "outcome": outcome}
    )
    return value or 0.0


def publisher(s3: FakeS3, *, queue_size: int = 10) -> tuple[ReportPublisher, Metrics]:
    metrics = Metrics()
    return (
        ReportPublisher(
            s3=s3,  # type: ignore[arg-type]
            bucket="evidence",
            prefix="drs-poller/reports/",
            metrics=metrics,
            queue_size=queue_size,
        ),
        metrics,
    )


async def test_a_finished_execution_is_put_as_html_and_json_under_the_prefix():
    s3 = FakeS3()
    sender, metrics = publisher(s3)
    item, _ = SAMPLES["drill-completed"]()
    assert sender.submit(item)
    await sender.drain()
    assert [(b, k, t) for b, k, _, t in s3.puts] == [
        (
            "evidence",
            "drs-poller/reports/drill-2027-01-15-payments.html",
            "text/html; charset=utf-8",
        ),
        ("evidence", "drs-poller/reports/drill-2027-01-15-payments.json", "application/json"),
    ]
    html, body = s3.puts[0][2], s3.puts[1][2]
    assert html.startswith(b"<!DOCTYPE html>")
    document = json.loads(body)
    assert document["asOf"] == document["execution"]["endTime"]  # stands at EndTime
    assert body == render_reports(item)["json"]  # the same bytes as `drs-poller report`
    assert count(metrics, "html", "success") == count(metrics, "json", "success") == 1


async def test_a_failed_put_is_counted_and_the_other_format_still_goes():
    s3 = FakeS3(fail={".html"})
    sender, metrics = publisher(s3)
    sender.submit(SAMPLES["recovery-failed"]()[0])
    await sender.drain()  # does not raise
    assert [key for _, key, _, _ in s3.puts] == [
        "drs-poller/reports/recovery-2027-01-15-ledger.json"
    ]
    assert count(metrics, "html", "error") == 1
    assert count(metrics, "json", "success") == 1


async def test_a_full_queue_drops_and_counts():
    sender, metrics = publisher(FakeS3(), queue_size=1)
    item, _ = SAMPLES["drill-completed"]()
    assert sender.submit(item)
    assert not sender.submit(item)
    assert count(metrics, "html", "dropped") == count(metrics, "json", "dropped") == 1


async def test_an_item_that_cannot_render_is_counted_not_raised(monkeypatch):
    s3 = FakeS3()
    sender, metrics = publisher(s3)

    def broken(_item):
        raise RuntimeError("a renderer bug")

    monkeypatch.setattr("drs_poller.engine.reporting.render_reports", broken)
    sender.submit({"ExecutionId": "x"})
    await sender.drain()
    assert s3.puts == []
    assert count(metrics, "html", "render_error") == 1


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [("drs-poller/reports/", "drs-poller/reports/e-1.html"), ("", "e-1.html")],
)
def test_report_key(prefix, expected):
    assert report_key(prefix, "e-1", "html") == expected


def test_the_demo_writes_each_executions_html_report(tmp_path):
    from drs_poller.local.demo import write_reports  # noqa: PLC0415 - the demo's imports are heavy

    items = [SAMPLES[name]()[0] for name in ("drill-completed", "recovery-mixed")]
    written = write_reports(tmp_path / "reports", items, now=1_800_002_400.0)
    assert [path.name for path in written] == [
        "drill-2027-01-15-payments.html",
        "recovery-2027-01-15-orders.html",
    ]
    assert all(path.read_text().startswith("<!DOCTYPE html>") for path in written)


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"report_prefix": "reports/*"}, "DRS_POLLER_REPORT_PREFIX"),  # would widen the grant
        ({"report_bucket": "Not_A_Bucket"}, "DRS_POLLER_REPORT_BUCKET"),
        ({"s3_endpoint_url": "localhost:9000"}, "DRS_POLLER_S3_ENDPOINT_URL"),
    ],
)
def test_bad_report_settings_name_their_variable(overrides, variable):
    with pytest.raises(SettingsError, match=variable):
        load_settings(table_name="history", **overrides)


def test_report_settings_defaults():
    settings = load_settings(table_name="history")
    assert settings.report_bucket is None
    assert settings.report_prefix == "drs-poller/reports/"
