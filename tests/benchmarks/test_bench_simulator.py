"""The benchmark's indexed DRS simulator answers exactly as the project's simulator does."""

from __future__ import annotations

import pytest

from benchmarks.recording import IndexedDrsSimulator
from benchmarks.workloads import WORKLOADS, seed_workload
from drs_poller.clock import ManualClock
from drs_poller.simulator.service import DrsSimulator
from drs_poller.simulator.timelines import JobScript, ServerScript, standard_timeline

REGION = "us-east-1"


def _simulators():
    clock = ManualClock(start=1_800_000_000.0)
    doubles = (
        DrsSimulator(clock=clock, page_size=2),
        IndexedDrsSimulator(clock=clock, page_size=2),
    )
    for n in range(6):
        sid, jid = f"s-{n:017d}", f"drsjob-{n:017d}"
        script = JobScript(
            job_id=jid,
            region=REGION if n % 3 else "us-west-2",
            is_drill=bool(n % 2),
            created_at=clock.time() + (100 if n == 5 else -n),  # job 5 does not exist yet
            servers=(ServerScript(sid, recovery_instance_id=f"i-{n:017d}"),),
            timeline=standard_timeline([sid], pending=10, started=5, launching=10),
        )
        for simulator in doubles:
            simulator.add_job(script)
    clock.advance(30)  # every existing job has launched
    return doubles


@pytest.mark.parametrize(
    "body",
    [
        {"filters": {"jobIDs": [f"drsjob-{n:017d}" for n in (4, 1, 2, 5, 0, 9)]}},
        {"filters": {"jobIDs": [f"drsjob-{n:017d}" for n in (2, 1)]}, "maxResults": 1},
        {},
    ],
)
def test_describe_jobs_answers_match(body):
    stock, indexed = _simulators()
    assert indexed.describe_jobs(REGION, dict(body)) == stock.describe_jobs(REGION, dict(body))


@pytest.mark.parametrize(
    "body",
    [
        {"filters": {"recoveryInstanceIDs": [f"i-{n:017d}" for n in (4, 1, 2, 5, 0)]}},
        {"filters": {"recoveryInstanceIDs": ["i-00000000000000001"]}},
        {},
    ],
)
def test_describe_recovery_instances_answers_match(body):
    stock, indexed = _simulators()
    assert indexed.describe_recovery_instances(
        REGION, dict(body)
    ) == stock.describe_recovery_instances(REGION, dict(body))


def test_the_workload_gives_each_recovery_server_the_actions_its_runs_show():
    """Real DRS knows a source server's launch actions before any job runs. The
    benchmark's servers exist only through their jobs, so it scripts ListLaunchActions
    from the runs; without it every RECOVERY server would be "not found" there."""
    seeded = seed_workload(WORKLOADS["W50"], speed=20, start=1_800_000_000.0, seed=1)
    actions = seeded.launch_actions()
    recovery = {
        sid
        for execution_type, servers in seeded.executions.values()
        if execution_type == "RECOVERY"
        for _, sid in servers
    }
    assert set(actions) == recovery
    assert all(
        [a.name for a in listed] == ["Validate recovery"] and all(a.active for a in listed)
        for listed in actions.values()
    )
    simulator = IndexedDrsSimulator(clock=ManualClock(start=1_800_000_000.0))
    for sid, listed in actions.items():
        simulator.set_launch_actions(sid, listed)
    some = next(iter(recovery))
    body = {"resourceId": some}
    assert [a["name"] for a in simulator.list_launch_actions(REGION, body)["items"]] == [
        "Validate recovery"
    ]
    assert simulator.get_launch_configuration(REGION, {"sourceServerID": some})
