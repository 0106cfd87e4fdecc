"""The simulator's scenario file: JSON that scripts exact behaviour per source server or job.

Format (every member optional; durations are real seconds, divided by ``--speed``)::

    {
      "durations": {"pending": 810, "started": 30, "launching": 360, "postLaunchActions": 600},
      "sourceServers": [
        {"sourceServerID": "s-0123456789abcdefg", "hostname": "db-1", "region": "us-east-1",
         "behaviour": "launch-fails", "durations": {"launching": 900},
         "tags": {"app": "billing"},
         "launchActions": [{"name": "Validate", "optional": false, "active": true},
                           {"name": "Warm cache", "optional": true}],
         "runsOneAtATime": true,
         "outsideModel": {"field": "runs.status", "value": "SKIPPED",
                          "deliberatelyOutsideModel": true}}
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

Per source server, ``launchActions`` is what ListLaunchActions lists for it (default:
one required "Validate recovery"; none for ``no-actions``); a recovery runs the active
ones, and ``optional`` sets ``LaunchAction.optional`` ("whether the launch will not be
marked as failed if this action fails", botocore's DRS model). ``runsOneAtATime`` makes
the job list its runs one at a time, each once the one before ended. ``outsideModel``
shows ``value`` instead of IN_PROGRESS in ``launchStatus`` or ``runs.status``: a value
outside the DRS model, as AWS may add; it must say ``"deliberatelyOutsideModel": true``.
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
from drs_poller.simulator.timelines import LAUNCH_STATUSES, RUN_STATUSES, LaunchActionScript

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
    {
        "sourceServerID",
        "hostname",
        "region",
        "behaviour",
        "durations",
        "tags",
        "launchActions",
        "runsOneAtATime",
        "outsideModel",
    }
)
# LaunchActionName in botocore's DRS model.
_ACTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 /_-]*$")
_OUTSIDE_MODEL_FIELDS = frozenset({"launchStatus", "runs.status"})


def _boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(path, f"expected true or false, got {value!r}")
    return value


def _launch_actions(value: Any, path: str) -> tuple[LaunchActionScript, ...]:
    if not isinstance(value, list):
        raise _fail(path, f"expected a list, got {type(value).__name__}")
    actions: list[LaunchActionScript] = []
    for index, item in enumerate(value):
        where = f"{path}[{index}]"
        raw = _object(item, where, frozenset({"name", "optional", "active"}))
        if "name" not in raw:
            raise _fail(f"{where}.name", "required")
        name = _string(raw["name"], f"{where}.name")
        if not _ACTION_NAME.match(name) or len(name) > 256:
            raise _fail(f"{where}.name", f"{name!r} is not a launch action name")
        if name in {action.name for action in actions}:
            raise _fail(f"{where}.name", f"{name!r} appears twice")
        actions.append(
            LaunchActionScript(
                name=name,
                optional=_boolean(raw.get("optional", False), f"{where}.optional"),
                active=_boolean(raw.get("active", True), f"{where}.active"),
            )
        )
    return tuple(actions)


def _outside_model(value: Any, path: str) -> tuple[str, str]:
    raw = _object(value, path, frozenset({"field", "value", "deliberatelyOutsideModel"}))
    if raw.get("deliberatelyOutsideModel") is not True:
        raise _fail(
            f"{path}.deliberatelyOutsideModel",
            "must be true: a value outside the DRS model is injected only on purpose",
        )
    field_name = _string(raw.get("field"), f"{path}.field")
    if field_name not in _OUTSIDE_MODEL_FIELDS:
        raise _fail(f"{path}.field", f"{field_name!r} is not launchStatus or runs.status")
    injected = _string(raw.get("value"), f"{path}.value")
    if injected in (LAUNCH_STATUSES if field_name == "launchStatus" else RUN_STATUSES):
        raise _fail(f"{path}.value", f"{injected!r} is in the DRS model")
    return field_name, injected


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
        launch_actions=_launch_actions(raw["launchActions"], f"{path}.launchActions")
        if "launchActions" in raw
        else None,
        runs_one_at_a_time=_boolean(raw.get("runsOneAtATime", False), f"{path}.runsOneAtATime"),
        outside_model=_outside_model(raw["outsideModel"], f"{path}.outsideModel")
        if "outsideModel" in raw
        else None,
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
