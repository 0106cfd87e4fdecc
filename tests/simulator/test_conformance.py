"""Everything the simulator can say, fetched over HTTP and checked against botocore's DRS model."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from drs_poller.simulator.conformance import (
    drs_service_model,
    error_violations,
    output_violations,
    shape_violations,
)
from drs_poller.simulator.service import Faults
from drs_poller.simulator.timelines import (
    JobScript,
    RunSnapshot,
    ServerScript,
    ServerSnapshot,
    Snapshot,
    standard_timeline,
)

JOB_ID = "drsjob-AAAAAAAAAAAAAAAAA"


# ---------------------------------------------------------------- the validator itself


def job_shape() -> Any:
    return drs_service_model().shape_for("Job")


GOOD_JOB = {
    "jobID": JOB_ID,
    "status": "COMPLETED",
    "participatingServers": [
        {
            "sourceServerID": "s-aaaaaaaaaaaaaaaaa",
            "launchStatus": "LAUNCHED",
            "launchActionsStatus": {"runs": [{"status": "SUCCEEDED", "action": {"order": 2}}]},
        }
    ],
}


def with_change(path: list[str | int], value: Any) -> dict[str, Any]:
    job = copy.deepcopy(GOOD_JOB)
    target: Any = job
    for step in path[:-1]:
        target = target[step]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return job


def test_validator_accepts_a_good_job() -> None:
    assert shape_violations(job_shape(), GOOD_JOB) == []


SERVER = ["participatingServers", 0]
RUN = [*SERVER, "launchActionsStatus", "runs", 0]


@pytest.mark.parametrize(
    ("path", "bad_value", "complaint"),
    [
        (["surprise"], 1, "unknown member 'surprise'"),
        (["jobID"], KeyError, "missing required member 'jobID'"),
        (["jobID"], 12, "expected a string"),
        (["jobID"], "drsjob-short", "length 12 is below"),
        (["jobID"], "drsjob-AAAAAAAAAAAAAAAA!", "does not match"),
        (["status"], "FAILED", "is not one of"),
        (["participatingServers"], {}, "expected a list"),
        ([*SERVER, "launchStatus"], "SUCCEEDED", "is not one of"),
        ([*SERVER, "sourceServerID"], "s-123", "below"),
        ([*SERVER, "recoveryInstanceID"], "i-" + "0" * 30, "above"),
        ([*RUN, "status"], "COMPLETED", "is not one of"),
        ([*RUN, "action", "order"], 1, "below LaunchActionOrder min 2"),
        ([*RUN, "action", "order"], "2", "expected an integer"),
        ([*RUN, "action", "order"], True, "expected an integer"),
        ([*RUN, "action", "active"], "yes", "expected a boolean"),
        ([*RUN, "action", "parameters"], {f"p{i}": {} for i in range(21)}, "above"),
        (["creationDateTime"], "2026-11-25 10:00:00", "does not match"),
    ],
)
def test_validator_catches(path: list[str | int], bad_value: Any, complaint: str) -> None:
    problems = shape_violations(job_shape(), with_change(path, bad_value))
    assert any(complaint in str(problem) for problem in problems), problems


def test_validator_reports_every_violation() -> None:
    job = with_change(["status"], "NOPE")
    job["jobID"] = 1
    job["extra"] = True
    assert len(shape_violations(job_shape(), job)) == 3


def test_validator_checks_list_lengths_and_allows_unknown_only_when_told() -> None:
    request = drs_service_model().operation_model("DescribeJobs").input_shape
    assert request is not None
    too_many = {"filters": {"jobIDs": [JOB_ID] * 1001}, "whatever": 1}
    assert [str(v) for v in shape_violations(request, too_many, allow_unknown_members=True)] == [
        "$.filters.jobIDs: length 1001 is above DescribeJobsRequestFiltersJobIDs max 1000"
    ]
    assert len(shape_violations(request, too_many)) == 2


# ---------------------------------------------------------------- every response, over HTTP

SOURCES = [f"s-{c * 17}" for c in "abcdefg"]
INSTANCES = [f"i-{c * 17}" for c in "0123456"]

# One job that passes through every job status, every launchStatus and every run status,
# with launchActionsStatus absent, empty and populated.
EVERYTHING = (
    Snapshot(0, "PENDING"),
    Snapshot(60, "STARTED"),
    Snapshot(120, "STARTED", dict.fromkeys(SOURCES, ServerSnapshot("IN_PROGRESS"))),
    Snapshot(
        300,
        "COMPLETED",
        {
            SOURCES[0]: ServerSnapshot("LAUNCHED", (RunSnapshot("IN_PROGRESS", "Validate app"),)),
            SOURCES[1]: ServerSnapshot("LAUNCHED", (RunSnapshot("SUCCEEDED", "Validate app"),)),
            SOURCES[2]: ServerSnapshot(
                "LAUNCHED",
                (
                    RunSnapshot("SUCCEEDED", "Check disks"),
                    RunSnapshot("FAILED", "Validate app", "Step 2 failed: exit code 1"),
                ),
            ),
            SOURCES[3]: ServerSnapshot("FAILED", ()),
            SOURCES[4]: ServerSnapshot("TERMINATED", (RunSnapshot("SUCCEEDED", "Validate app"),)),
            SOURCES[5]: ServerSnapshot("PENDING"),
            SOURCES[6]: ServerSnapshot("IN_PROGRESS"),
        },
    ),
)


@pytest.fixture
def everything_job(simulator) -> Any:
    script = JobScript(
        job_id=JOB_ID,
        region="us-east-1",
        is_drill=False,
        created_at=1_800_000_000.0,
        servers=tuple(
            ServerScript(sid, recovery_instance_id=iid, ec2_instance_id=iid)
            for sid, iid in zip(SOURCES, INSTANCES, strict=True)
        ),
        timeline=EVERYTHING,
    )
    simulator.add_job(script)
    return script


async def test_every_job_state_conforms(raw_post, clock, simulator, everything_job, job_factory):
    for outcome in ("launched", "launch_failed", "action_failed", "terminated_after_launch"):
        simulator.add_job(
            job_factory(
                servers=2,
                timeline=lambda ids, outcome=outcome: standard_timeline(
                    ids, actions=120, outcomes={ids[0]: outcome}
                ),
            )
        )
    simulator.add_job(job_factory(timeline=lambda ids: standard_timeline(ids, stall=True)))

    seen: dict[str, set[str]] = {"job": set(), "server": set(), "run": set(), "actions": set()}
    for moment in (0, 60, 120, 300, 13.5 * 60, 14 * 60, 20 * 60, 21 * 60, 40 * 60):
        clock.advance(moment - (clock.time() - 1_800_000_000.0))
        response = await raw_post("DescribeJobs", {})
        assert response.status == 200
        assert output_violations("DescribeJobs", response.body) == []
        for job in response.body["items"]:
            seen["job"].add(job["status"])
            for server in job["participatingServers"]:
                seen["server"].add(server["launchStatus"])
                actions = server.get("launchActionsStatus")
                seen["actions"].add("absent" if actions is None else f"{len(actions['runs']) > 0}")
                seen["run"].update(run["status"] for run in (actions or {}).get("runs", []))
    assert seen == {
        "job": {"PENDING", "STARTED", "COMPLETED"},
        "server": {"PENDING", "IN_PROGRESS", "LAUNCHED", "FAILED", "TERMINATED"},
        "run": {"IN_PROGRESS", "SUCCEEDED", "FAILED"},
        "actions": {"absent", "False", "True"},
    }


async def test_recovery_instances_and_job_log_conform(raw_post, clock, everything_job):
    clock.advance(400)
    instances = await raw_post("DescribeRecoveryInstances", {})
    assert instances.status == 200
    assert output_violations("DescribeRecoveryInstances", instances.body) == []
    # Launched (3) and terminated (1) servers have instances; failed and unfinished ones do not.
    assert sorted(item["recoveryInstanceID"] for item in instances.body["items"]) == [
        *INSTANCES[:3],
        INSTANCES[4],
    ]
    states = {
        item["recoveryInstanceID"]: item["ec2InstanceState"] for item in instances.body["items"]
    }
    assert states[INSTANCES[4]] == "TERMINATED"

    log = await raw_post("DescribeJobLogItems", {"jobID": JOB_ID})
    assert log.status == 200
    assert output_violations("DescribeJobLogItems", log.body) == []
    events = {item["event"] for item in log.body["items"]}
    assert {"JOB_START", "SNAPSHOT_START", "CONVERSION_END", "LAUNCH_FAILED", "JOB_END"} <= events


async def test_filters_on_recovery_instances(raw_post, clock, everything_job):
    clock.advance(400)
    by_id = await raw_post(
        "DescribeRecoveryInstances", {"filters": {"recoveryInstanceIDs": [INSTANCES[1]]}}
    )
    assert [item["recoveryInstanceID"] for item in by_id.body["items"]] == [INSTANCES[1]]
    by_source = await raw_post(
        "DescribeRecoveryInstances", {"filters": {"sourceServerIDs": [SOURCES[2]]}}
    )
    assert [item["sourceServerID"] for item in by_source.body["items"]] == [SOURCES[2]]


async def test_paged_responses_conform(raw_post, clock, simulator, everything_job, job_factory):
    simulator.page_size = 2
    for _ in range(4):
        simulator.add_job(job_factory())
    clock.advance(400)
    for operation, body in (
        ("DescribeJobs", {}),
        ("DescribeRecoveryInstances", {}),
        ("DescribeJobLogItems", {"jobID": JOB_ID}),
    ):
        collected: list[Any] = []
        token = None
        pages = 0
        while True:
            page = await raw_post(operation, {**body, **({"nextToken": token} if token else {})})
            assert page.status == 200
            assert output_violations(operation, page.body) == []
            assert len(page.body["items"]) <= 2
            collected.extend(page.body["items"])
            pages += 1
            token = page.body.get("nextToken")
            if token is None:
                break
        assert pages > 1, operation
        assert len(collected) == len({repr(item) for item in collected}), "no item twice"
    assert simulator.count("DescribeJobs") == 3  # 5 jobs, 2 per page


async def test_max_results_and_unknown_job_log(raw_post, simulator, everything_job, job_factory):
    simulator.add_job(job_factory())
    first = await raw_post("DescribeJobs", {"maxResults": 1})
    assert len(first.body["items"]) == 1
    assert "nextToken" in first.body
    unknown = await raw_post("DescribeJobLogItems", {"jobID": "drsjob-ZZZZZZZZZZZZZZZZZ"})
    assert (unknown.status, unknown.body) == (200, {"items": []})


ERROR_CASES = [
    # (operation, body or raw bytes, expected status, expected code, expected reason)
    (
        "DescribeJobs",
        {"filters": {"jobIDs": [JOB_ID] * 1001}},
        400,
        "ValidationException",
        "fieldValidationFailed",
    ),
    (
        "DescribeJobs",
        {"filters": {"jobIDs": ["job-1"]}},
        400,
        "ValidationException",
        "fieldValidationFailed",
    ),
    ("DescribeJobs", {"maxResults": 0}, 400, "ValidationException", "fieldValidationFailed"),
    (
        "DescribeJobs",
        {"nextToken": "not-a-token"},
        400,
        "ValidationException",
        "fieldValidationFailed",
    ),
    (
        "DescribeRecoveryInstances",
        {"filters": {"recoveryInstanceIDs": ["i-0123456789abcdef0"] * 201}},
        400,
        "ValidationException",
        "fieldValidationFailed",
    ),
    ("DescribeJobLogItems", {}, 400, "ValidationException", "fieldValidationFailed"),
    ("DescribeJobs", b"{not json", 400, "SerializationException", None),
    ("DescribeJobs", b"[1, 2]", 400, "SerializationException", None),
    ("DescribeEverything", {}, 404, "UnknownOperationException", None),
]


@pytest.mark.parametrize(("operation", "body", "status", "code", "reason"), ERROR_CASES)
async def test_errors_conform(raw_post, simulator, *, operation, body, status, code, reason):
    if isinstance(body, bytes):
        response = await raw_post(operation, data=body)
    else:
        response = await raw_post(operation, body)
    assert response.status == status
    assert response.headers["x-amzn-errortype"] == code
    assert error_violations(code, response.body) == []
    assert response.body.get("reason") == reason
    assert simulator.calls[-1].status == status


async def test_next_token_is_bound_to_its_filters(raw_post, simulator, job_factory):
    simulator.page_size = 1
    simulator.add_job(job_factory())
    simulator.add_job(job_factory())
    first = await raw_post("DescribeJobs", {})
    reused = await raw_post(
        "DescribeJobs",
        {"nextToken": first.body["nextToken"], "filters": {"jobIDs": [JOB_ID]}},
    )
    assert reused.status == 400
    assert reused.body["fieldList"][0]["name"] == "nextToken"


async def test_missing_signature_and_wrong_method(raw_post):
    unsigned = await raw_post("DescribeJobs", {}, region=None)
    assert unsigned.status == 403
    assert error_violations(unsigned.headers["x-amzn-errortype"], unsigned.body) == []
    wrong_method = await raw_post("DescribeJobs", method="GET")
    assert wrong_method.status == 404


@pytest.mark.parametrize(("retry_after", "header"), [(5, "5"), (None, None)])
@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [("throttle", 429, "ThrottlingException"), ("error", 500, "InternalServerException")],
)
async def test_fault_responses_conform(
    raw_post, simulator, *, retry_after, header, kind, status, code
):
    simulator.faults.retry_after_seconds = retry_after
    setattr(simulator.faults, f"{kind}_next", 1)
    faulted = await raw_post("DescribeJobs", {})
    assert faulted.status == status
    assert faulted.headers["x-amzn-errortype"] == code
    assert faulted.headers.get("retry-after") == header
    assert error_violations(code, faulted.body) == []
    assert (await raw_post("DescribeJobs", {})).status == 200  # only the next one


# ---------------------------------------------------------------- through real aiobotocore


async def test_client_paginates_describe_jobs(drs_client, simulator, job_factory):
    simulator.page_size = 3
    added = [job_factory() for _ in range(8)]
    for script in added:
        simulator.add_job(script)
    expected = [script.job_id for script in sorted(added, key=lambda s: (s.created_at, s.job_id))]
    async with drs_client("us-east-1") as client:
        by_hand: list[str] = []
        kwargs: dict[str, Any] = {"maxResults": 1000}
        while True:
            page = await client.describe_jobs(**kwargs)
            by_hand.extend(job["jobID"] for job in page["items"])
            if "nextToken" not in page:
                break
            kwargs["nextToken"] = page["nextToken"]
        assert by_hand == expected

        paginator = client.get_paginator("describe_jobs")
        pages = [page async for page in paginator.paginate(filters={"jobIDs": expected[:5]})]
        assert [len(page["items"]) for page in pages] == [3, 2]
        assert [job["jobID"] for page in pages for job in page["items"]] == expected[:5]
    assert simulator.count("DescribeJobs", "us-east-1") == 3 + 2


async def test_client_sees_only_its_signing_region(drs_client, simulator, job_factory):
    ireland = job_factory(region="eu-west-1")
    virginia = job_factory(region="us-east-1")
    simulator.add_job(ireland)
    simulator.add_job(virginia)
    async with drs_client("us-east-1") as east, drs_client("eu-west-1") as west:
        assert [j["jobID"] for j in (await east.describe_jobs())["items"]] == [virginia.job_id]
        assert [j["jobID"] for j in (await west.describe_jobs())["items"]] == [ireland.job_id]
        lookup = await east.describe_jobs(filters={"jobIDs": [ireland.job_id]})
        assert lookup["items"] == []  # unknown ids are absent, not an error
    assert simulator.count("DescribeJobs", "eu-west-1") == 1
    assert simulator.count("DescribeJobs", "us-east-1") == 2


async def test_throttling_reaches_the_client_with_retry_after(drs_client, simulator):
    simulator.faults = Faults(throttle_next=1, retry_after_seconds=7)
    async with drs_client() as client:
        with pytest.raises(ClientError) as caught:
            await client.describe_jobs()
    response = caught.value.response
    assert response["Error"]["Code"] == "ThrottlingException"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 429
    # Where the daemon reads it: the raw header, and botocore's parse of the modeled member
    # (a str for ThrottlingException, whose model types it as a string).
    assert response["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "7"
    assert response["retryAfterSeconds"] == "7"
    assert simulator.calls[-1].status == 429


async def test_internal_error_reaches_the_client_with_retry_after(drs_client, simulator):
    simulator.faults = Faults(error_next=1, retry_after_seconds=3)
    async with drs_client() as client:
        with pytest.raises(ClientError) as caught:
            await client.describe_jobs()
    response = caught.value.response
    assert response["Error"]["Code"] == "InternalServerException"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert response["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "3"
    assert response["retryAfterSeconds"] == 3  # an int: the model types it as a long


async def test_no_retry_after_when_not_configured(drs_client, simulator):
    simulator.faults = Faults(throttle_next=1)
    async with drs_client() as client:
        with pytest.raises(ClientError) as caught:
            await client.describe_jobs()
    assert "retry-after" not in caught.value.response["ResponseMetadata"]["HTTPHeaders"]
    assert "retryAfterSeconds" not in caught.value.response


async def test_the_double_not_botocore_rejects_1001_job_ids(drs_client, simulator):
    async with drs_client() as client:
        with pytest.raises(ClientError) as caught:
            await client.describe_jobs(filters={"jobIDs": [JOB_ID] * 1001})
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert caught.value.response["reason"] == "fieldValidationFailed"
    # The request reached the simulator: botocore does not check list maxima client side.
    assert simulator.calls[-1].ids_count == 1001
    assert simulator.calls[-1].status == 400


async def test_client_reads_recovery_instances_and_job_log(drs_client, clock, everything_job):
    clock.advance(400)
    async with drs_client() as client:
        instances = await client.describe_recovery_instances(
            filters={"recoveryInstanceIDs": [INSTANCES[0]]}
        )
        assert instances["items"][0]["ec2InstanceID"] == INSTANCES[0]
        assert instances["items"][0]["isDrill"] is False
        log = await client.describe_job_log_items(jobID=JOB_ID)
        assert log["items"][0]["event"] == "JOB_START"


async def test_faults_can_target_one_operation(drs_client, simulator, everything_job):
    simulator.faults = Faults(throttle_next=5, operations=frozenset({"DescribeRecoveryInstances"}))
    async with drs_client() as client:
        await client.describe_jobs()
        with pytest.raises(ClientError):
            await client.describe_recovery_instances()
    assert [(call.operation, call.status) for call in simulator.calls] == [
        ("DescribeJobs", 200),
        ("DescribeRecoveryInstances", 429),
    ]
    assert simulator.faults.throttle_next == 4


async def test_seeded_fault_rates_are_reproducible(raw_post, simulator):
    async def statuses() -> list[int]:
        simulator.reset_calls()
        for _ in range(40):
            await raw_post("DescribeJobs", {})
        return [call.status for call in simulator.calls]

    simulator.faults = Faults(throttle_rate=0.3, error_rate=0.2)
    first = await statuses()
    simulator.faults = Faults(throttle_rate=0.3, error_rate=0.2)
    assert await statuses() == first
    assert {429, 500, 200} <= set(first)


async def test_latency_delays_responses(raw_post, simulator):
    simulator.faults.latency = 0.15
    started = time.monotonic()
    await raw_post("DescribeJobs", {})
    assert time.monotonic() - started >= 0.15


async def test_forgotten_jobs_vanish_but_their_instances_stay(
    drs_client, clock, simulator, everything_job
):
    clock.advance(400)
    simulator.remove_job("us-east-1", JOB_ID)
    assert simulator.jobs("us-east-1") == []
    async with drs_client() as client:
        assert (await client.describe_jobs(filters={"jobIDs": [JOB_ID]}))["items"] == []
        instances = await client.describe_recovery_instances()
        assert len(instances["items"]) == 4


async def test_jobs_are_invisible_before_creation_and_filtered_by_date(
    drs_client, clock, simulator, job_factory
):
    now = clock.time()
    old = job_factory(created_at=now - 7200)
    future = job_factory(created_at=now + 60)
    simulator.add_job(old)
    simulator.add_job(future)
    async with drs_client() as client:
        visible = await client.describe_jobs()
        assert [j["jobID"] for j in visible["items"]] == [old.job_id]
        clock.advance(120)
        recent = await client.describe_jobs(filters={"fromDate": "2027-01-15T07:30:00Z"})
        assert [j["jobID"] for j in recent["items"]] == [future.job_id]
        early = await client.describe_jobs(filters={"toDate": "2027-01-15T07:30:00.000Z"})
        assert [j["jobID"] for j in early["items"]] == [old.job_id]


def test_add_job_twice_is_a_mistake(simulator, job_factory):
    script = job_factory()
    simulator.add_job(script)
    with pytest.raises(ValueError, match="already exists"):
        simulator.add_job(script)


async def test_many_violations_make_a_bounded_error(raw_post):
    response = await raw_post("DescribeJobs", {"filters": {"jobIDs": ["bad"] * 1001}})
    assert response.status == 400
    assert len(response.body["fieldList"]) == 10
    assert response.body["fieldList"][0]["name"] == "filters.jobIDs"
    assert error_violations("ValidationException", response.body) == []
