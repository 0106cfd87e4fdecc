"""EC2 adapter: the private IP, hostname and type of launched recovery instances."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from drs_poller.clients.drs import chunked
from drs_poller.clients.paging import paginate

if TYPE_CHECKING:
    from collections.abc import Collection

    from drs_poller.clients.aws import ClientPool
    from drs_poller.clients.calling import Caller
    from drs_poller.core.places import Place

# A filter rather than InstanceIds: one unknown id must not fail the whole call.
INSTANCE_IDS_PER_CALL = 200


@dataclass(frozen=True, slots=True)
class Ec2Instance:
    instance_id: str
    private_ip: str | None
    hostname: str | None
    instance_type: str | None


class Ec2Adapter:
    def __init__(self, *, clients: ClientPool, caller: Caller) -> None:
        self._clients = clients
        self._caller = caller

    async def describe_instances(
        self, place: Place, instance_ids: Collection[str]
    ) -> dict[str, Ec2Instance]:
        """The instances of ``instance_ids`` EC2 knows at ``place`` (the recovery
        instances live in the wave's account, issue 15)."""
        found: dict[str, Ec2Instance] = {}
        client = await self._clients.get("ec2", place.region, account=place.account)

        async def fetch(request: dict[str, Any]) -> dict[str, Any]:
            page: dict[str, Any] = await self._caller.call(
                service="ec2",
                operation="DescribeInstances",
                region=place.region,
                account=place.account,
                send=functools.partial(client.describe_instances, **request),
            )
            return page

        for chunk in chunked(instance_ids, INSTANCE_IDS_PER_CALL):
            request = {"Filters": [{"Name": "instance-id", "Values": chunk}], "MaxResults": 1000}
            async for page in paginate(
                fetch,
                request,
                what=f"DescribeInstances in {place}",
                resume_with="NextToken",
                resume_from="NextToken",
            ):
                for reservation in page.get("Reservations") or []:
                    for instance in reservation.get("Instances") or []:
                        instance_id = instance.get("InstanceId")
                        if isinstance(instance_id, str):
                            found[instance_id] = Ec2Instance(
                                instance_id=instance_id,
                                private_ip=instance.get("PrivateIpAddress") or None,
                                hostname=instance.get("PrivateDnsName") or None,
                                instance_type=instance.get("InstanceType") or None,
                            )
        return found
