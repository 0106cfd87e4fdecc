"""A client's User-Agent, built once per set of feature ids (clients/aws.cache_user_agent),
is the string botocore builds for every request."""

from __future__ import annotations

from typing import Any

import aioboto3
import pytest
from botocore.context import start_as_current_context
from botocore.useragent import UserAgentString, register_feature_id

from drs_poller.clients.aws import cache_user_agent, client_config
from drs_poller.settings import load_settings

pytestmark = pytest.mark.asyncio

FEATURE_SETS: tuple[tuple[str, ...], ...] = ((), ("PAGINATOR",), ("PAGINATOR", "WAITER"))


def _built(creator: Any, features: tuple[str, ...]) -> str:
    with start_as_current_context():
        for feature in features:
            register_feature_id(feature)
        header: str = creator.to_string()
        return header


async def test_the_cached_user_agent_is_botocores_for_each_set_of_features(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    session = aioboto3.Session(aws_access_key_id="x", aws_secret_access_key="y")
    config = client_config(load_settings(table_name="executions"), pool=10)
    async with session.client(
        "drs", region_name="us-east-1", endpoint_url="http://127.0.0.1:9", config=config
    ) as client:
        creator = client._user_agent_creator
        expected = {features: _built(creator, features) for features in FEATURE_SETS}
        assert len(set(expected.values())) == len(FEATURE_SETS)  # features change it
        assert all("drs-poller" in header for header in expected.values())

        builds = 0
        build = UserAgentString.to_string

        def counting(self: UserAgentString) -> str:
            nonlocal builds
            builds += 1
            header: str = build(self)
            return header

        monkeypatch.setattr(UserAgentString, "to_string", counting)
        cache_user_agent(client)
        cache_user_agent(client)  # idempotent: the cache is not wrapped in another
        for _ in range(3):
            for features, header in expected.items():
                assert _built(creator, features) == header
        assert builds == len(FEATURE_SETS)  # once per set, not once per request
