"""moto server for the benchmark, with one inefficiency of moto's removed.

moto 5.1's ``Item.project`` (a Query's ``ProjectionExpression``) converts the whole item
to plain JSON once per projected path, so a lean discovery pass (five paths) cost moto
several times a full one (1.6 s against 0.4 s per page at W10k; 6.2 ms against 0.9 ms
for one 10-server item), where DynamoDB charges a projection nothing extra. Here the
paths are looked up in moto's typed item and only what they name is converted, then
moto's own path lookup runs on that (0.04 ms for that item); the answer is the same
(``tests/benchmarks/test_bench_moto.py``). Nothing else of moto is changed.

Run as ``python -m benchmarks.moto_server`` with moto server's own arguments.
"""

from __future__ import annotations

import re
from typing import Any

from botocore.utils import merge_dicts
from moto.dynamodb.models import dynamo_type
from moto.dynamodb.models.utilities import find_nested_key
from moto.server import main

_INDEXED = re.compile(r"(.+)\[(\d+)\]$")


def _plain(value: dynamo_type.DynamoType) -> Any:
    return dynamo_type.deserializer.deserialize(value.to_regular_json())


def _prune(document: dict[str, Any], typed: dict[str, Any], keys: list[str]) -> None:
    """Copy into ``document`` (plain JSON) what the path ``keys`` names in ``typed`` (a
    map of moto's typed values), keeping list lengths so that indices mean the same."""
    indexed = _INDEXED.match(keys[0])
    name = indexed.group(1) if indexed else keys[0]
    value = typed.get(name)
    if value is None:
        return
    if indexed is None:
        if len(keys) > 1 and value.is_map():
            held = document.get(name)
            document[name] = held if isinstance(held, dict) else {}
            _prune(document[name], value.value, keys[1:])
        else:
            document[name] = _plain(value)
        return
    if not value.is_list():
        document[name] = _plain(value)
        return
    index = int(indexed.group(2))
    held = document.get(name)
    members = held if isinstance(held, list) else [None] * len(value.value)
    document[name] = members
    if index >= len(members):
        return
    element = value.value[index]
    if len(keys) > 1 and element.is_map():
        member = members[index]
        if not isinstance(member, dict):
            members[index] = member = {}
        _prune(member, element.value, keys[1:])
    else:
        members[index] = _plain(element)


def project_once(self: dynamo_type.Item, projection_expressions: list[list[str]]) -> Any:
    document: dict[str, Any] = {}
    for expression in projection_expressions:
        _prune(document, self.attrs, expression)
    result: dict[str, Any] = {}
    for expression in projection_expressions:
        merge_dicts(result, find_nested_key(expression, document))
    return dynamo_type.Item(
        hash_key=self.hash_key,
        range_key=self.range_key,
        attrs=dynamo_type.serializer.serialize(result)["M"],
    )


def patch() -> None:
    dynamo_type.Item.project = project_once  # type: ignore[method-assign]


if __name__ == "__main__":
    patch()
    main()
