"""Execution items as an initiator writes them (drs_poller/local/items.py): a wave in
another account carries ``AccountId``; a wave in the daemon's own account has none."""

from __future__ import annotations

from drs_poller.local.items import ExecutionSpec, ServerSpec, WaveSpec, execution_item


def test_a_wave_in_another_account_carries_its_account_id():
    item = execution_item(
        ExecutionSpec(
            execution_id="exec-1",
            waves=(
                WaveSpec("own", "us-east-1", (ServerSpec("s-00000000000000001", "drsjob-1"),)),
                WaveSpec(
                    "member",
                    "eu-west-1",
                    (ServerSpec("s-00000000000000002", "drsjob-2"),),
                    account_id="222233334444",
                ),
            ),
        )
    )
    own, member = item["Waves"]
    assert "AccountId" not in own
    assert member["AccountId"] == "222233334444"
    assert member["Region"] == "eu-west-1"
