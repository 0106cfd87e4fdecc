"""DRS's answers as the core sees them (JobView, Participant), built for table-driven
tests: one builder for every test that needs a job."""

from __future__ import annotations

from drs_poller.core.models import (
    ActionRun,
    JobStatus,
    JobView,
    LaunchStatus,
    Participant,
    RunStatus,
)

JOB_ID = "drsjob-00000000000000001"


def participant(
    source: str = "s-1",
    launch: LaunchStatus | None = None,
    *runs: tuple[RunStatus, str | None, str | None],
    instance: str | None = None,
) -> Participant:
    """A server in a job: its launch status, recovery instance and post-launch runs
    (status, action name, failure reason)."""
    return Participant(
        source_server_id=source,
        launch_status=launch,
        recovery_instance_id=instance,
        runs=tuple(ActionRun(status=s, name=n, failure_reason=r) for s, n, r in runs),
    )


def job_view(status: JobStatus, *participants: Participant, job: str = JOB_ID) -> JobView:
    """A job as DescribeJobs reports it, with these servers."""
    return JobView(job_id=job, status=status, servers={p.source_server_id: p for p in participants})
