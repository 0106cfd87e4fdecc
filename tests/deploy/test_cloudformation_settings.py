"""Every DRS_POLLER_* setting is a template parameter with the daemon's default.

The source of truth is the ``Settings`` model (``drs_poller/settings.py``): a field added
there and not to the template fails ``test_every_setting_is_a_parameter_or_explained``.
A setting that must not be a parameter (the endpoint overrides, the per-task replica id)
is listed under the template's ``Metadata: DrsPollerSettings: NotParameters`` with the
reason, which the template shows to whoever reads it.
"""

from __future__ import annotations

import os
import re
import typing
from typing import Any

import annotated_types
import pytest
from pydantic_core import PydanticUndefined
from test_cloudformation import Stack, load_template

from drs_poller.settings import ENV_PREFIX, Settings, load_settings

if typing.TYPE_CHECKING:
    from pydantic.fields import FieldInfo

# Set by the stack itself (not a choice), so the container gets them, but not from a
# parameter named after the field.
WIRED = {
    "table_name": "TableName",  # the parameter has another job too: it names the table
    "lease_table_name": None,  # the LeaseTable resource
    "events_queue_url": None,  # the DrsEventsQueue resource, with EnableEventsIn
}
# Wired only with these parameters (the resource they wire is optional).
WIRED_WITH = {"events_queue_url": {"EnableEventsIn": "true"}}


def parameter_name(field: str) -> str:
    return "".join(part.capitalize() for part in field.split("_"))


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def not_parameters(template: dict[str, Any]) -> dict[str, str]:
    return template["Metadata"]["DrsPollerSettings"]["NotParameters"]


def missing_from_template(model: type[Settings], template: dict[str, Any]) -> list[str]:
    """Fields that are neither a parameter nor explained in the template's metadata."""
    explained = not_parameters(template)
    return [
        field
        for field in model.model_fields
        if parameter_name(field) not in template["Parameters"] and field not in explained
    ]


def _bounds(info: FieldInfo) -> dict[str, float]:
    found: dict[str, float] = {}
    for item in info.metadata:
        for kind in ("ge", "gt", "le", "lt"):
            if isinstance(item, getattr(annotated_types, kind.capitalize())):
                found[kind] = getattr(item, kind)
    return found


def _exposed_fields() -> list[str]:
    template = load_template()
    return [f for f in Settings.model_fields if parameter_name(f) in template["Parameters"]]


def test_every_setting_is_a_parameter_or_explained():
    template = load_template()
    assert missing_from_template(Settings, template) == []
    for field, reason in not_parameters(template).items():
        assert field in Settings.model_fields, f"NotParameters names no setting: {field}"
        assert len(reason.split()) >= 5, f"{field}: say why it is not a parameter"
        assert parameter_name(field) not in template["Parameters"] or field in WIRED


def test_a_setting_added_to_the_model_alone_is_caught():
    class Grown(Settings):
        poll_budget: int = 7

    assert missing_from_template(Grown, load_template()) == ["poll_budget"]


@pytest.mark.parametrize("field", _exposed_fields())
def test_parameter_default_is_the_daemons_default(field):
    info = Settings.model_fields[field]
    spec = load_template()["Parameters"][parameter_name(field)]
    assert spec["Description"].startswith(env_name(field)), "the description names the variable"
    if info.default is PydanticUndefined:
        assert field in WIRED  # required in the model: the stack gives it a value
        return
    if info.default is None:
        assert spec["Default"] == "", "unset is an empty parameter"
    elif isinstance(info.default, bool | str):
        assert spec["Type"] == "String"
        assert spec["Default"] == info.default
    else:
        assert spec["Type"] == "Number"
        assert float(spec["Default"]) == float(info.default)


@pytest.mark.parametrize("field", _exposed_fields())
def test_parameter_accepts_nothing_the_daemon_rejects(field):
    """A bad value fails the deployment at once, not as a task that exits 2 over and over."""
    info = Settings.model_fields[field]
    spec = load_template()["Parameters"][parameter_name(field)]
    bounds = _bounds(info)
    if "ge" in bounds:
        assert spec["MinValue"] >= bounds["ge"]
    if "gt" in bounds:
        assert spec["MinValue"] > bounds["gt"]
    if "le" in bounds:
        assert spec["MaxValue"] <= bounds["le"]
    if "lt" in bounds:
        assert spec["MaxValue"] < bounds["lt"]
    if typing.get_origin(info.annotation) is typing.Literal:
        assert set(spec["AllowedValues"]) <= set(typing.get_args(info.annotation))
        assert spec["Default"] in spec["AllowedValues"]


@pytest.mark.parametrize("field", _exposed_fields())
def test_the_container_gets_the_parameter(field):
    env = Stack().environment()
    if field == "table_name":
        assert env[env_name(field)] == "{ExecutionTable}"
        assert (
            Stack(AdoptExistingTable="true").environment()[env_name(field)]
            == "drs-execution-history"
        )
        return
    default = load_template()["Parameters"][parameter_name(field)]["Default"]
    if default == "":
        # Unset is left out: an empty value would be invalid (min_length 1).
        assert env_name(field) not in env
        env = Stack(**{parameter_name(field): "chosen"}).environment()
        assert env[env_name(field)] == "chosen"
    else:
        assert env[env_name(field)] == str(default)


def test_not_parameters_stay_out_of_the_container_unless_the_stack_wires_them():
    env = Stack().environment()
    for field in not_parameters(load_template()):
        if field in WIRED_WITH:
            assert env_name(field) not in env, f"{field} is wired only with its resource"
            assert env_name(field) in Stack(**WIRED_WITH[field]).environment()
        elif field in WIRED:
            assert env_name(field) in env
        else:
            assert env_name(field) not in env, f"{field} is documented as not set"


def test_no_unknown_drs_poller_variables_reach_the_container():
    known = {env_name(field) for field in Settings.model_fields}
    stray = {name for name in Stack().environment() if name.startswith(ENV_PREFIX)} - known
    assert stray == set()


def test_the_task_environment_loads_into_the_daemons_defaults(monkeypatch):
    """The container's environment, as deployed with default parameters, is a valid config."""
    for name in [n for n in os.environ if n.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)
    for name, value in Stack().environment().items():
        if name.startswith(ENV_PREFIX):
            # A Ref to a table the stack creates becomes a generated name, like AWS's.
            physical = re.sub(r"^\{(\w+)\}$", r"drs-poller-\1-1A2B3C4D", value)
            monkeypatch.setenv(name, physical)
    deployed = load_settings()
    differs = {
        field
        for field, info in Settings.model_fields.items()
        if getattr(deployed, field) != info.default
    }
    assert differs == {"table_name", "lease_table_name"}  # the ones the stack wires
    assert deployed.lease_table_name == "drs-poller-LeaseTable-1A2B3C4D"
    assert deployed.table_name == "drs-poller-ExecutionTable-1A2B3C4D"
