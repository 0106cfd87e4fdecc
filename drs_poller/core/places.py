"""Where a wave's DRS lives: its *place*, an (account, region) pair (issue 15).

DRS quotas, jobs and recovery instances are per account and region, so everything the
daemon batches, gates and shards by is a place: one DescribeJobs per place per batch,
one concurrency gate per place, one replica shard group per place. A wave's
``AccountId`` names the account (contract §1); absent, it is the daemon's own account,
written ``None`` here so that a deployment with no ``AccountId`` anywhere behaves, and
names its shards, exactly as before.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

ACCOUNT_ID: Final = re.compile(r"^[0-9]{12}$")
# The ``account`` label of metrics (and logs) for the daemon's own account.
SELF: Final = "self"


class Place(NamedTuple):
    """An (account, region) pair. ``account`` None: the daemon's own account."""

    account: str | None
    region: str

    @property
    def label(self) -> str:
        """The ``account`` label of metrics and logs: the account id, or ``self``."""
        return self.account or SELF

    @property
    def key(self) -> str:
        """The place as one string: the region alone for the daemon's own account (the
        shard and route names of a single-account deployment, unchanged), else
        ``<account>/<region>``."""
        return f"{self.account}/{self.region}" if self.account else self.region

    def __str__(self) -> str:
        return self.key


def own(region: str) -> Place:
    """The daemon's own account in ``region``."""
    return Place(None, region)


def place_of(account: str | None, region: str, *, own_account: str | None = None) -> Place:
    """The place of a wave with ``AccountId`` ``account``; an AccountId equal to the
    daemon's own account (when known) is the daemon's own place."""
    return Place(None if account is None or account == own_account else account, region)


def partition_of(region: str) -> str:
    """The AWS partition of a region: ``aws-cn`` for ``cn-*``, ``aws-us-gov`` for
    ``us-gov-*``, else ``aws``."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def role_arn(account: str, *, role_name: str, region: str) -> str:
    """The role the daemon assumes in ``account`` (its partition from ``region``)."""
    return f"arn:{partition_of(region)}:iam::{account}:role/{role_name}"
