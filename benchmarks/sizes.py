"""DynamoDB item sizes and request units, from the wire (DynamoDB JSON) form of items.

The rules are DynamoDB's own ("DynamoDB item sizes and formats", Developer Guide):
a string is its UTF-8 bytes; a number is 1 byte per two significant digits plus 1;
a binary value its raw bytes; a Boolean or null 1 byte; a List or Map 3 bytes plus its
elements, each element 1 byte more; every attribute adds its name's UTF-8 bytes.
A write costs one unit per started 1 KB; a read one per started 4 KB, half of that
when eventually consistent (a GSI is always read eventually consistent).
"""

from __future__ import annotations

import base64
import math
from decimal import Decimal, InvalidOperation
from typing import Any

WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096


def number_size(text: str) -> int:
    try:
        significant = len(Decimal(text).normalize().as_tuple().digits)
    except InvalidOperation:
        significant = sum(1 for c in text if c.isdigit())
    significant = significant or 1
    return math.ceil(significant / 2) + 1


def value_size(value: dict[str, Any]) -> int:  # noqa: PLR0911 - one return per type
    ((kind, data),) = value.items()
    if kind == "S":
        return len(data.encode())
    if kind == "N":
        return number_size(data)
    if kind == "B":
        return len(base64.b64decode(data))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in data)
    if kind == "NS":
        return sum(number_size(n) for n in data)
    if kind == "BS":
        return sum(len(base64.b64decode(b)) for b in data)
    if kind == "L":
        return 3 + sum(1 + value_size(element) for element in data)
    if kind == "M":
        return 3 + sum(1 + len(name.encode()) + value_size(v) for name, v in data.items())
    raise ValueError(f"unknown DynamoDB type {kind!r}")


def item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def write_units(size: int) -> int:
    """Units of one standard write of an item of ``size`` bytes (at least 1)."""
    return max(1, math.ceil(size / WRITE_UNIT_BYTES))


def read_units(size: int, *, consistent: bool) -> float:
    """Units of one read of ``size`` bytes (at least one 4 KB block)."""
    blocks = max(1, math.ceil(size / READ_UNIT_BYTES))
    return float(blocks) if consistent else blocks / 2
