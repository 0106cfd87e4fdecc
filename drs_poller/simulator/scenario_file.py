"""The simulator's scenario file: JSON that scripts exact behaviour per source server or job.

Format (every member optional; durations are real seconds, divided by ``--speed``)::

    {
      "durations": {"pending": 810, "started": 30, "launching": 360, "postLaunchActions": 600},
      "sourceServers": [
        {"sourceServerID": "s-0123456789abcdefg", "hostname": "db-1", "region": "us-east-1",
         "behaviour": "launch-fails", "durations": {"launching": 900},
         "tags": {"app": "billing"}}
      ],
      "jobProfiles": {
        "slow-snapshots": {"behaviour": "launches", "durations": {"pending": 1800}}
      }
    }

``behaviour`` is one of ``launches``, ``launch-fails``, ``action-fails``,
``conversion-stalls``, ``no-actions``. A server's ``durations`` may set only
``launching`` and ``postLaunchActions`` (pending and started belong to a job). A job
uses a profile when StartRecovery tags it ``drs-sim:profile = <name>``. A server without
``region`` is known in every region. Unknown members are errors, so a typo does not
silently leave the default in place; every error names the bad field's path.
"""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING, Any

from drs_poller.simulator.behaviour import (
    BEHAVIOUR_TAG,
    Behaviour,
    DurationOverrides,
    Durations,
    JobProfile,
    Scenario,
    SourceServer,
)

if TYPE_CHECKING:
    from pathlib import Path

_SOURCE_SERVER_ID = re.compile(r"^s-[0-9a-zA-Z]{17}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_DURATION_FIELDS = {
    "pending": "pending",
    "started": "started",
    "launching": "launching",
    "postLaunchActions": "post_launch_actions",
}
_SERVER_DURATION_FIELDS = frozenset({"launching", "postLaunchActions"})


class ScenarioFileError(ValueError):
    """A scenario file that cannot be used; the message starts with the bad field's path."""


def _fail(path: str, message: str) -> ScenarioFileError:
    return ScenarioFileError(f"{path}: {message}")


def _object(value: Any, path: str, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, f"expected an object, got {type(value).__name__}")
    for key in value:
        if key not in allowed:
            raise _fail(f"{path}.{key}", f"unknown field (allowed: {', '.join(sorted(allowed))})")
    return value


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(path, f"expected a non-empty string, got {value!r}")
    return value


def _durations(value: Any, path: str, *, allowed: frozenset[str]) -> DurationOverrides:
    raw = _object(value, path, allowed)
    parsed: dict[str, float] = {}
    for key, item in raw.items():
        is_number = isinstance(item, int | float) and not isinstance(item, bool)
        if not is_number or not math.isfinite(item) or item < 0:
            raise _fail(f"{path}.{key}", f"expected seconds (a number >= 0), got {item!r}")
        parsed[_DURATION_FIELDS[key]] = float(item)
    return DurationOverrides(**parsed)


def _behaviour(value: Any, path: str) -> Behaviour:
    try:
        return Behaviour(value)
    except ValueError:
        choices = ", ".join(b.value for b in Behaviour)
        raise _fail(path, f"{value!r} is not a behaviour (one of: {choices})") from None


def _tags(value: Any, path: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _fail(path, f"expected an object of strings, got {type(value).__name__}")
    for key, item in value.items():
        if not isinstance(item, str) or len(key) > 128 or len(item) > 256:
            raise _fail(f"{path}.{key}", "a tag is a key of up to 128 and a value of up to 256")
        if key == BEHAVIOUR_TAG:
            raise _fail(f"{path}.{key}", "set the behaviour with 'behaviour', not as a tag")
    return dict(value)


_SERVER_FIELDS = frozenset(
    {"sourceServerID", "hostname", "region", "behaviour", "durations", "tags"}
)


def _source_server(value: Any, path: str) -> SourceServer:
    raw = _object(value, path, _SERVER_FIELDS)
    if "sourceServerID" not in raw:
        raise _fail(f"{path}.sourceServerID", "required")
    sid = _string(raw["sourceServerID"], f"{path}.sourceServerID")
    if not _SOURCE_SERVER_ID.match(sid):
        raise _fail(f"{path}.sourceServerID", f"{sid!r} is not a DRS id (s- and 17 letters/digits)")
    region = None
    if "region" in raw:
        region = _string(raw["region"], f"{path}.region")
        if not _REGION.match(region):
            raise _fail(f"{path}.region", f"{region!r} is not an AWS region name")
    return SourceServer(
        source_server_id=sid,
        hostname=_string(raw.get("hostname", sid), f"{path}.hostname"),
        behaviour=_behaviour(raw["behaviour"], f"{path}.behaviour") if "behaviour" in raw else None,
        durations=_durations(
            raw.get("durations", {}), f"{path}.durations", allowed=_SERVER_DURATION_FIELDS
        ),
        tags=_tags(raw.get("tags", {}), f"{path}.tags"),
        region=region,
    )


def _profile(name: str, value: Any, path: str) -> JobProfile:
    raw = _object(value, path, frozenset({"behaviour", "durations"}))
    return JobProfile(
        name=name,
        behaviour=_behaviour(raw["behaviour"], f"{path}.behaviour") if "behaviour" in raw else None,
        durations=_durations(
            raw.get("durations", {}), f"{path}.durations", allowed=frozenset(_DURATION_FIELDS)
        ),
    )


def parse_scenario(data: Any) -> Scenario:
    """A :class:`Scenario` from parsed JSON, or :class:`ScenarioFileError` naming the path."""
    raw = _object(data, "$", frozenset({"durations", "sourceServers", "jobProfiles"}))
    durations = _durations(
        raw.get("durations", {}), "$.durations", allowed=frozenset(_DURATION_FIELDS)
    ).over(Durations())
    servers_raw = raw.get("sourceServers", [])
    if not isinstance(servers_raw, list):
        raise _fail("$.sourceServers", f"expected a list, got {type(servers_raw).__name__}")
    servers = tuple(
        _source_server(item, f"$.sourceServers[{index}]") for index, item in enumerate(servers_raw)
    )
    seen: set[tuple[str | None, str]] = set()
    for index, server in enumerate(servers):
        key = (server.region, server.source_server_id)
        if key in seen:
            raise _fail(
                f"$.sourceServers[{index}].sourceServerID",
                f"{server.source_server_id} appears twice",
            )
        seen.add(key)
    profiles_raw = raw.get("jobProfiles", {})
    if not isinstance(profiles_raw, dict):
        raise _fail("$.jobProfiles", f"expected an object, got {type(profiles_raw).__name__}")
    profiles = {
        name: _profile(name, value, f"$.jobProfiles.{name}") for name, value in profiles_raw.items()
    }
    return Scenario(durations=durations, source_servers=servers, profiles=profiles)


def load_scenario(path: Path) -> Scenario:
    """Read and parse a scenario file; every problem is a :class:`ScenarioFileError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ScenarioFileError(f"{path}: cannot read: {error.strerror}") from error
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ScenarioFileError(
            f"{path}: not JSON (line {error.lineno}, column {error.colno}: {error.msg})"
        ) from error
    try:
        return parse_scenario(data)
    except ScenarioFileError as error:
        raise ScenarioFileError(f"{path}: {error}") from error


__all__ = ["ScenarioFileError", "load_scenario", "parse_scenario"]
