"""Where the simulator's recovery instances live: made-up ids, or real ones in an EC2 endpoint.

Real DRS launches an EC2 instance per recovered server, and its recovery instance id
is that instance's id. With an EC2 endpoint (moto server) the simulator does the same
through RunInstances/TerminateInstances, so the daemon's DescribeInstances finds them.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, Protocol

from drs_poller.simulator.timelines import new_instance_id

if TYPE_CHECKING:
    from collections.abc import Sequence

# An AMI moto accepts without registering one first.
SIMULATOR_AMI = "ami-12c6146b"
SIMULATOR_INSTANCE_TYPE = "m5.large"
_FAKE_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


class InstanceBackend(Protocol):
    async def launch(self, region: str, count: int) -> list[str]: ...

    async def terminate(self, region: str, instance_ids: Sequence[str]) -> None: ...


class DerivedInstances:
    """No EC2 at all: ids from a seeded rng, and termination is bookkeeping only."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random(0)  # noqa: S311 - ids, not secrets

    async def launch(self, region: str, count: int) -> list[str]:  # noqa: ARG002 - protocol
        return [new_instance_id(self.rng) for _ in range(count)]

    async def terminate(self, region: str, instance_ids: Sequence[str]) -> None:
        """Nothing to do: the ids only ever existed in the simulator."""


class Ec2Instances:
    """Instances in an EC2 endpoint (moto server), in the job's region."""

    def __init__(self, endpoint_url: str) -> None:
        self.endpoint_url = endpoint_url

    def _client(self, region: str) -> Any:  # aioboto3 is untyped
        import aioboto3  # noqa: PLC0415 - only the standalone simulator needs it

        session = aioboto3.Session(**_FAKE_CREDENTIALS, region_name=region)
        return session.client("ec2", endpoint_url=self.endpoint_url)

    async def launch(self, region: str, count: int) -> list[str]:
        async with self._client(region) as ec2:
            result = await ec2.run_instances(
                ImageId=SIMULATOR_AMI,
                MinCount=count,
                MaxCount=count,
                InstanceType=SIMULATOR_INSTANCE_TYPE,
            )
        return [str(instance["InstanceId"]) for instance in result["Instances"]]

    async def terminate(self, region: str, instance_ids: Sequence[str]) -> None:
        async with self._client(region) as ec2:
            await ec2.terminate_instances(InstanceIds=list(instance_ids))


__all__ = [
    "SIMULATOR_AMI",
    "DerivedInstances",
    "Ec2Instances",
    "InstanceBackend",
]
