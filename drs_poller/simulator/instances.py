"""Where the simulator's recovery instances live: made-up ids, or real ones in an EC2 endpoint.

Real DRS launches an EC2 instance per recovered server, and its recovery instance id
is that instance's id. With an EC2 endpoint (moto server) the simulator does the same
through RunInstances/TerminateInstances, so the daemon's DescribeInstances finds them.
An instance is created in its job's account: for another account than moto's default,
with credentials from moto's STS ``AssumeRole`` into that account (moto attributes a
call made with assumed credentials to the role's account), so the daemon's
DescribeInstances with credentials assumed into that account finds it there.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any, Protocol

from drs_poller.simulator.timelines import DEFAULT_ACCOUNT_ID, new_instance_id

if TYPE_CHECKING:
    from collections.abc import Sequence

# An AMI moto accepts without registering one first.
SIMULATOR_AMI = "ami-12c6146b"
SIMULATOR_INSTANCE_TYPE = "m5.large"
_FAKE_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
# The role the simulator assumes in another account to create instances there (moto's
# STS does not require it to exist), and the region it asks STS in.
SIMULATOR_ROLE_NAME = "drs-simulator"
_STS_REGION = "us-east-1"
# Assumed credentials are used until this many seconds before they expire.
_CREDENTIALS_MARGIN = 300.0


class InstanceBackend(Protocol):
    async def launch(self, region: str, count: int, *, account: str) -> list[str]: ...

    async def terminate(
        self, region: str, instance_ids: Sequence[str], *, account: str
    ) -> None: ...


class DerivedInstances:
    """No EC2 at all: ids from a seeded rng, and termination is bookkeeping only."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random(0)  # noqa: S311 - ids, not secrets

    async def launch(self, region: str, count: int, *, account: str) -> list[str]:  # noqa: ARG002 - protocol
        return [new_instance_id(self.rng) for _ in range(count)]

    async def terminate(self, region: str, instance_ids: Sequence[str], *, account: str) -> None:
        """Nothing to do: the ids only ever existed in the simulator."""


class Ec2Instances:
    """Instances in an EC2 endpoint (moto server), in the job's account and region.

    ``sts_endpoint_url`` (default: ``endpoint_url``, as moto server serves both) is where
    the role ``role_name`` of another account is assumed; its credentials are cached
    per account until shortly before they expire."""

    def __init__(
        self,
        endpoint_url: str,
        *,
        sts_endpoint_url: str | None = None,
        role_name: str = SIMULATOR_ROLE_NAME,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.sts_endpoint_url = sts_endpoint_url or endpoint_url
        self.role_name = role_name
        self.assumed = 0  # AssumeRole calls made (tests check the cache)
        self._credentials: dict[str, tuple[dict[str, str], float]] = {}

    async def credentials(self, account: str) -> dict[str, str]:
        """Credentials that moto attributes to ``account``: the fake ones for its default
        account, else assumed into ``account``'s role ``role_name``."""
        if account == DEFAULT_ACCOUNT_ID:
            return _FAKE_CREDENTIALS
        cached = self._credentials.get(account)
        if cached is not None and cached[1] - _CREDENTIALS_MARGIN > time.time():
            return cached[0]
        import aioboto3  # noqa: PLC0415 - only the standalone simulator needs it

        session = aioboto3.Session(**_FAKE_CREDENTIALS, region_name=_STS_REGION)
        async with session.client("sts", endpoint_url=self.sts_endpoint_url) as sts:
            answer = await sts.assume_role(
                RoleArn=f"arn:aws:iam::{account}:role/{self.role_name}",
                RoleSessionName=SIMULATOR_ROLE_NAME,
            )
        self.assumed += 1
        raw = answer["Credentials"]
        credentials = {
            "aws_access_key_id": str(raw["AccessKeyId"]),
            "aws_secret_access_key": str(raw["SecretAccessKey"]),
            "aws_session_token": str(raw["SessionToken"]),
        }
        self._credentials[account] = (credentials, raw["Expiration"].timestamp())
        return credentials

    async def _client(self, region: str, account: str) -> Any:  # aioboto3 is untyped
        import aioboto3  # noqa: PLC0415 - only the standalone simulator needs it

        credentials = await self.credentials(account)
        session = aioboto3.Session(**credentials, region_name=region)
        return session.client("ec2", endpoint_url=self.endpoint_url)

    async def launch(self, region: str, count: int, *, account: str) -> list[str]:
        async with await self._client(region, account) as ec2:
            result = await ec2.run_instances(
                ImageId=SIMULATOR_AMI,
                MinCount=count,
                MaxCount=count,
                InstanceType=SIMULATOR_INSTANCE_TYPE,
            )
        return [str(instance["InstanceId"]) for instance in result["Instances"]]

    async def terminate(self, region: str, instance_ids: Sequence[str], *, account: str) -> None:
        async with await self._client(region, account) as ec2:
            await ec2.terminate_instances(InstanceIds=list(instance_ids))


__all__ = [
    "SIMULATOR_AMI",
    "SIMULATOR_ROLE_NAME",
    "DerivedInstances",
    "Ec2Instances",
    "InstanceBackend",
]
