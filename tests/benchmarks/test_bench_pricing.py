"""The benchmark's DynamoDB pricing: item sizes by DynamoDB's rules, and the request units
the recording proxy charges, StatusIndex amplification included."""

from __future__ import annotations

import pytest

from benchmarks.recording import DynamoCall, DynamoRecorder, IndexShape
from benchmarks.sizes import item_size, number_size, read_units, value_size, write_units


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("0", 2),  # one significant digit
        ("7", 2),
        ("12", 2),
        ("123", 3),
        ("-12.50", 3),  # sign and trailing zero do not count: 1, 2, 5
        ("1800000000.123", 8),  # 13 significant digits
        ("0.001", 2),
    ],
)
def test_number_sizes(text, size):
    assert number_size(text) == size


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ({"S": "héllo"}, 6),  # UTF-8 bytes
        ({"BOOL": True}, 1),
        ({"NULL": True}, 1),
        ({"B": "AAEC"}, 3),  # raw bytes, not base64 characters
        ({"L": []}, 3),
        ({"L": [{"S": "ab"}, {"N": "1"}]}, 3 + (1 + 2) + (1 + 2)),
        ({"M": {"k": {"S": "v"}}}, 3 + 1 + 1 + 1),
        ({"SS": ["a", "bc"]}, 3),
    ],
)
def test_value_sizes(value, size):
    assert value_size(value) == size


def test_item_size_counts_attribute_names():
    assert item_size({"Status": {"S": "POLLING"}, "N": {"N": "12"}}) == 6 + 7 + 1 + 2


@pytest.mark.parametrize(
    ("size", "units"), [(0, 1), (1, 1), (1024, 1), (1025, 2), (3 * 1024 + 1, 4)]
)
def test_write_units_per_started_kilobyte(size, units):
    assert write_units(size) == units


@pytest.mark.parametrize(
    ("size", "consistent", "units"),
    [(0, False, 0.5), (4096, False, 0.5), (4097, False, 1.0), (4097, True, 2.0)],
)
def test_read_units_per_started_4kb_block(size, consistent, units):
    assert read_units(size, consistent=consistent) == units


def _item(status: str, padding: int) -> dict:
    return {
        "ExecutionId": {"S": "e-1"},
        "PlanId": {"S": "p"},
        "Status": {"S": status},
        "StartTime": {"N": "1"},
        "Pad": {"S": "x" * padding},
    }


KEY = {"ExecutionId": {"S": "e-1"}, "PlanId": {"S": "p"}}


def test_update_charges_larger_of_before_and_after_plus_one_index_put():
    recorder = DynamoRecorder()
    recorder.know(_item("POLLING", 2000))  # about 2 KB before
    request = {"Key": KEY}
    priced = recorder.price("UpdateItem", request, 200, {"Attributes": _item("POLLING", 100)})
    assert priced == (0.0, 2, 1)  # table: max(2 KB, 0.1 KB); index: put of the new entry


def test_status_change_deletes_and_puts_the_index_entry():
    recorder = DynamoRecorder()
    recorder.know(_item("POLLING", 1500))
    priced = recorder.price("UpdateItem", {"Key": KEY}, 200, {"Attributes": _item("DONE", 1500)})
    assert priced == (0.0, 2, 4)  # index: delete 2 units + put 2 units


def test_failed_condition_costs_the_existing_item():
    recorder = DynamoRecorder()
    recorder.know(_item("POLLING", 2500))
    failure = {"__type": "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException"}
    assert recorder.price("UpdateItem", {"Key": KEY}, 400, failure) == (0.0, 3, 0)


def test_a_write_says_whether_it_landed_and_whether_its_item_is_in_the_index():
    recorder = DynamoRecorder()
    assert not recorder.in_index("UpdateItem", {"Key": KEY})  # never seen
    recorder.know(_item("POLLING", 100))
    assert recorder.in_index("UpdateItem", {"Key": KEY})
    assert not recorder.in_index("GetItem", {"Key": KEY})  # not a write
    unindexed = {"ExecutionId": {"S": "e-1"}, "PlanId": {"S": "p"}, "Status": {"S": "DONE"}}
    recorder.price("UpdateItem", {"Key": KEY}, 200, {"Attributes": unindexed})
    assert not recorder.in_index("UpdateItem", {"Key": KEY})  # left the index (no StartTime)

    def call(operation: str, status: int) -> DynamoCall:
        return DynamoCall(0.0, 0.0, operation, status, 0.0, 1, 0)

    assert call("UpdateItem", 200).landed
    assert call("PutItem", 200).landed
    assert not call("UpdateItem", 400).landed  # a failed condition, or an error
    assert not call("GetItem", 200).landed  # not a write


def test_gsi_query_is_eventually_consistent_and_sums_the_page():
    recorder = DynamoRecorder()
    page = {"Items": [_item("POLLING", 3000), _item("POLLING", 3000)]}
    units, _, _ = recorder.price("Query", {"IndexName": "StatusIndex"}, 200, page)
    assert units == 1.0  # about 6 KB in one page: two 4 KB blocks, halved


def test_a_projected_query_is_charged_for_the_whole_items_and_forgets_no_size():
    recorder = DynamoRecorder()
    recorder.know(_item("POLLING", 7000))
    projected = {"Items": [{"ExecutionId": {"S": "e-1"}, "PlanId": {"S": "p"}}]}
    request = {"IndexName": "StatusIndex", "ProjectionExpression": "ExecutionId, PlanId"}
    units, _, _ = recorder.price("Query", request, 200, projected)
    assert units == 1.0  # about 7 KB read: two 4 KB blocks, halved
    # The whole item's size is still what the next write is priced from.
    priced = recorder.price("UpdateItem", {"Key": KEY}, 200, {"Attributes": _item("POLLING", 10)})
    assert priced[1] == 7


KEYS_ONLY = IndexShape("KEYS_ONLY")
INCLUDE = IndexShape("INCLUDE", frozenset({"PollerRevision"}))


def _revised(status: str, padding: int, revision: int) -> dict:
    return {**_item(status, padding), "PollerRevision": {"N": str(revision)}}


@pytest.mark.parametrize(
    ("shape", "index_units"),
    [(IndexShape(), 3), (INCLUDE, 1), (KEYS_ONLY, 0)],
)
def test_an_index_write_costs_the_projected_entry_and_nothing_when_it_is_unchanged(
    shape, index_units
):
    recorder = DynamoRecorder(index=shape)
    recorder.know(_revised("POLLING", 2500, 1))
    after = {"Attributes": _revised("POLLING", 2600, 2)}
    assert recorder.price("UpdateItem", {"Key": KEY}, 200, after) == (0.0, 3, index_units)


@pytest.mark.parametrize(("shape", "index_units"), [(IndexShape(), 6), (KEYS_ONLY, 2)])
def test_a_status_change_on_a_lean_index_deletes_and_puts_a_small_entry(shape, index_units):
    recorder = DynamoRecorder(index=shape)
    recorder.know(_item("POLLING", 2500))
    after = {"Attributes": _item("COMPLETED", 2500)}
    assert recorder.price("UpdateItem", {"Key": KEY}, 200, after) == (0.0, 3, index_units)


def test_a_lean_index_query_is_charged_for_the_entries_not_the_items():
    recorder = DynamoRecorder(index=KEYS_ONLY)
    recorder.know(_item("POLLING", 7000))
    entry = {k: v for k, v in _item("POLLING", 0).items() if k != "Pad"}
    units, _, _ = recorder.price("Query", {"IndexName": "StatusIndex"}, 200, {"Items": [entry]})
    assert units == 0.5  # a few dozen bytes: one 4 KB block, halved
    # The whole item's size is still what the next write is priced from.
    priced = recorder.price("UpdateItem", {"Key": KEY}, 200, {"Attributes": _item("POLLING", 10)})
    assert priced[1] == 7


@pytest.mark.parametrize(("consistent", "units"), [(True, 3.0), (False, 1.5)])
def test_batch_get_prices_each_item_on_its_own(consistent, units):
    recorder = DynamoRecorder(index=KEYS_ONLY)
    request = {"RequestItems": {"t": {"Keys": [KEY, KEY], "ConsistentRead": consistent}}}
    response = {"Responses": {"t": [_item("POLLING", 5000), _item("POLLING", 100)]}}
    assert recorder.price("BatchGetItem", request, 200, response) == (units, 0, 0)


def test_describe_table_is_free():
    recorder = DynamoRecorder()
    assert recorder.price("DescribeTable", {"TableName": "t"}, 200, {"Table": {}}) == (0, 0, 0)
    assert not recorder.unpriced


def _update(assignments: dict[str, dict]) -> dict:
    names = {f"#a{i}": name for i, name in enumerate(assignments)}
    values = {f":v{i}": value for i, value in enumerate(assignments.values())}
    expression = "SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(assignments)))
    return {
        "Key": KEY,
        "UpdateExpression": expression,
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }


def _with_waves(status: str, server: str, polled: str) -> dict:
    waves = {
        "L": [
            {
                "M": {
                    "Servers": {
                        "L": [{"M": {"Status": {"S": server}, "LastPolledTime": {"N": polled}}}]
                    }
                }
            }
        ]
    }
    return {**_item(status, 10), "Waves": waves}


def test_writes_are_sorted_by_kind():
    recorder = DynamoRecorder(index=KEYS_ONLY)
    recorder.know(_with_waves("POLLING", "PENDING", "1"))

    def kind(after: dict, assignments: dict) -> str:
        recorder.price("UpdateItem", _update(assignments), 200, {"Attributes": after})
        return recorder.last_kind

    heartbeat = _with_waves("POLLING", "PENDING", "2")  # bookkeeping only
    assert kind(heartbeat, {"Waves": heartbeat["Waves"]}) == "unchanged"
    moved = _with_waves("POLLING", "LAUNCHED", "3")
    assert kind(moved, {"Waves": moved["Waves"]}) == "state"
    done = _with_waves("COMPLETED", "LAUNCHED", "4")
    assert kind(done, {"Status": {"S": "COMPLETED"}}) == "finalize"
