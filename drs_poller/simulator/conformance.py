"""Check JSON values against botocore's DRS model, reporting every violation.

Used by the conformance tests on everything the simulator emits, by the simulator on
incoming request bodies (so it rejects what real DRS rejects), and meant for a
later ``drs-poller simulate --self-check``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import botocore.session

if TYPE_CHECKING:
    from collections.abc import Collection

    from botocore.model import ServiceModel, Shape


@functools.cache
def drs_service_model() -> ServiceModel:
    return botocore.session.get_session().get_service_model("drs")


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


_ENUM_VIOLATION = "enum"


@dataclass(frozen=True)
class Violation:
    path: str  # JSONPath-like: $.participatingServers[0].launchStatus
    message: str
    kind: str = "shape"  # "enum": a string outside its shape's enum

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def _is_body_member(member: Shape) -> bool:
    # Header/query/uri-bound members travel outside the JSON body.
    return "location" not in member.serialization


def shape_violations(
    shape: Shape,
    value: Any,
    *,
    path: str = "$",
    allow_unknown_members: bool = False,
    deliberate: Collection[str] = (),
) -> list[Violation]:
    """Every way ``value`` (parsed JSON) breaks ``shape``; empty when it conforms.

    ``allow_unknown_members`` is for request bodies, where real services ignore
    fields they do not know; responses the simulator emits must never carry one.
    ``deliberate`` names the paths where a script put an enum value outside the model
    on purpose (``deliberately_outside_model``; see ``timelines.deliberate_paths``):
    exactly that violation, at exactly those paths, is accepted; any other is reported.
    """
    problems: list[Violation] = []
    _check(shape, value, path, problems, allow_unknown=allow_unknown_members)
    return [
        problem
        for problem in problems
        if not (problem.path in deliberate and problem.kind == _ENUM_VIOLATION)
    ]


def _check(
    shape: Shape, value: Any, path: str, problems: list[Violation], *, allow_unknown: bool
) -> None:
    kind = shape.type_name
    if kind == "structure":
        _check_structure(shape, value, path, problems, allow_unknown=allow_unknown)
    elif kind == "list":
        _check_list(shape, value, path, problems, allow_unknown=allow_unknown)
    elif kind == "map":
        _check_map(shape, value, path, problems, allow_unknown=allow_unknown)
    elif kind == "string":
        _check_string(shape, value, path, problems)
    elif kind in {"integer", "long"}:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(Violation(path, f"expected an {kind} ({shape.name}), got {value!r}"))
            return
        _check_range(shape, value, path, problems)
    else:
        accepted = _SCALAR_TYPES.get(kind)
        if accepted is None:
            problems.append(Violation(path, f"the checker does not know shape type {kind!r}"))
        # bool is an int subclass, and JSON true is never a number.
        elif isinstance(value, bool) != (kind == "boolean") or not isinstance(value, accepted):
            problems.append(Violation(path, f"expected a {kind} ({shape.name}), got {value!r}"))


_SCALAR_TYPES: dict[str, tuple[type, ...]] = {
    "boolean": (bool,),
    "float": (int, float),
    "double": (int, float),
    "timestamp": (int, float, str),
    "blob": (str,),
}


def _check_list(
    shape: Shape, value: Any, path: str, problems: list[Violation], *, allow_unknown: bool
) -> None:
    if not isinstance(value, list):
        problems.append(
            Violation(path, f"expected a list ({shape.name}), got {type(value).__name__}")
        )
        return
    _check_size(shape, len(value), path, problems)
    member = shape.member  # type: ignore[attr-defined]  # a ListShape
    for index, item in enumerate(value):
        _check(member, item, f"{path}[{index}]", problems, allow_unknown=allow_unknown)


def _check_map(
    shape: Shape, value: Any, path: str, problems: list[Violation], *, allow_unknown: bool
) -> None:
    if not isinstance(value, dict):
        problems.append(
            Violation(path, f"expected an object ({shape.name}), got {type(value).__name__}")
        )
        return
    _check_size(shape, len(value), path, problems)
    key_shape, value_shape = shape.key, shape.value  # type: ignore[attr-defined]  # a MapShape
    for key, item in value.items():
        _check(key_shape, key, f"{path}.<key {key!r}>", problems, allow_unknown=allow_unknown)
        _check(value_shape, item, f"{path}[{key!r}]", problems, allow_unknown=allow_unknown)


def _check_structure(
    shape: Shape, value: Any, path: str, problems: list[Violation], *, allow_unknown: bool
) -> None:
    if not isinstance(value, dict):
        problems.append(
            Violation(path, f"expected an object ({shape.name}), got {type(value).__name__}")
        )
        return
    members = {
        name: member
        for name, member in shape.members.items()  # type: ignore[attr-defined]  # StructureShape
        if _is_body_member(member)
    }
    problems.extend(
        Violation(path, f"missing required member {required!r} ({shape.name})")
        for required in shape.required_members
        if required in members and required not in value
    )
    for name, item in value.items():
        member = members.get(name)
        if member is None:
            if not allow_unknown:
                problems.append(Violation(path, f"unknown member {name!r} for {shape.name}"))
            continue
        _check(member, item, f"{path}.{name}", problems, allow_unknown=allow_unknown)
    if shape.metadata.get("union") and len(value) != 1:
        problems.append(Violation(path, f"union {shape.name} must set exactly one member"))


def _check_string(shape: Shape, value: Any, path: str, problems: list[Violation]) -> None:
    if not isinstance(value, str):
        problems.append(Violation(path, f"expected a string ({shape.name}), got {value!r}"))
        return
    _check_size(shape, len(value), path, problems)
    enum = shape.metadata.get("enum")
    if enum and value not in enum:
        problems.append(
            Violation(path, f"{value!r} is not one of {shape.name} {list(enum)}", _ENUM_VIOLATION)
        )
    pattern = shape.metadata.get("pattern")
    if pattern and _compiled(pattern).search(value) is None:
        problems.append(Violation(path, f"{value!r} does not match {shape.name} pattern {pattern}"))


def _check_size(shape: Shape, size: int, path: str, problems: list[Violation]) -> None:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and size < low:
        problems.append(Violation(path, f"length {size} is below {shape.name} min {low}"))
    if high is not None and size > high:
        problems.append(Violation(path, f"length {size} is above {shape.name} max {high}"))


def _check_range(shape: Shape, number: int, path: str, problems: list[Violation]) -> None:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and number < low:
        problems.append(Violation(path, f"{number} is below {shape.name} min {low}"))
    if high is not None and number > high:
        problems.append(Violation(path, f"{number} is above {shape.name} max {high}"))


def output_violations(
    operation: str, body: Any, *, deliberate: Collection[str] = ()
) -> list[Violation]:
    """Violations of a successful response body for a DRS operation."""
    output_shape = drs_service_model().operation_model(operation).output_shape
    if output_shape is None:
        return [] if body in ({}, None) else [Violation("$", f"{operation} has no output")]
    return shape_violations(output_shape, body, deliberate=deliberate)


def error_violations(code: str, body: Any) -> list[Violation]:
    """Violations of an error body; codes outside the model (protocol errors) need a message."""
    model = drs_service_model()
    if code not in model.shape_names:
        if not isinstance(body, dict) or not isinstance(body.get("message"), str):
            return [Violation("$", f"protocol error {code} needs a string 'message'")]
        return []
    return shape_violations(model.shape_for(code), body)
