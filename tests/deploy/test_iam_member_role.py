"""The member-account role grants exactly the DRS and EC2 reads the daemon makes, to the
hub's task role alone.

``deploy/cloudformation/drs-poller-member.yaml`` is deployed in every account whose DRS
jobs waves name (a StackSet; docs/operations.md#many-accounts). The hub's daemon assumes
its role to describe jobs, job logs, recovery instances, launch actions and launch
configurations, and EC2 instances there: the same reads its own task role makes in its
own account (``test_iam_task_role.py``), nothing else. It trusts only the hub's task
role, and with an external id only a request that gives it.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import pytest
from test_cloudformation import ROOT, Stack, load_template
from test_iam_task_role import UNSCOPABLE, grants, role_statements

from drs_poller.clients.drs import _SNAKE

MEMBER_TEMPLATE_PATH = ROOT / "deploy" / "cloudformation" / "drs-poller-member.yaml"
HUB_ROLE_ARN = "arn:aws:iam::999988887777:role/drs-poller-TaskRole-1A2B3C4D5E6F"


class MemberStack(Stack):
    """The member template as CloudFormation sees it in one account."""

    template_path = MEMBER_TEMPLATE_PATH
    required_values: ClassVar[dict[str, str]] = {"HubRoleArn": HUB_ROLE_ARN}


def member_template() -> dict[str, Any]:
    return load_template(MEMBER_TEMPLATE_PATH)


def trust_statement(stack: Stack) -> dict[str, Any]:
    trust = stack.properties("MemberRole")["AssumeRolePolicyDocument"]
    (statement,) = trust["Statement"]
    return statement


# --- permissions --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "parameters", [{}, {"AccountRoleExternalId": "drs-poller-hub-7"}, {"AccountRoleName": "x"}]
)
def test_member_role_grants_exactly_the_daemons_drs_and_ec2_reads(parameters):
    stack = MemberStack(**parameters)
    assert grants(role_statements(stack, "MemberRole")) == {(a, "*") for a in UNSCOPABLE}


def test_member_role_grants_every_drs_operation_the_adapter_calls_and_no_other():
    """The DRS adapter's operation table is the set of DRS calls the daemon makes; EC2's
    adapter makes one call, DescribeInstances."""
    granted = {a for a, _ in grants(role_statements(MemberStack(), "MemberRole"))}
    assert {a for a in granted if a.startswith("drs:")} == {f"drs:{op}" for op in _SNAKE}
    assert {a for a in granted if a.startswith("ec2:")} == {"ec2:DescribeInstances"}
    source = (ROOT / "drs_poller" / "clients" / "ec2.py").read_text(encoding="utf-8")
    assert set(re.findall(r"client\.(\w+)", source)) == {"describe_instances"}


def test_member_role_reads_what_the_hub_reads_in_its_own_account():
    """The two lists never drift apart: the hub's DRS and EC2 grants are the member's."""
    hub = grants(role_statements(Stack(), "TaskRole"))
    hub_reads = {(a, r) for a, r in hub if a.startswith(("drs:", "ec2:"))}
    assert grants(role_statements(MemberStack(), "MemberRole")) == hub_reads


def test_member_role_is_read_only():
    forbidden = re.compile(
        r":(Start|Stop|Terminate|Run|Reboot|Delete|Create|Put|Update|Modify|Tag|Untag"
        r"|Associate|Disassociate|Retry|Reverse|Initialize|Disconnect|Mark|Attach|Detach)"
    )
    for action, _ in grants(role_statements(MemberStack(), "MemberRole")):
        assert "*" not in action
        assert not forbidden.search(action), action
        assert re.match(r"^(drs|ec2):(Describe|List|Get)[A-Z]", action), action


def test_the_template_creates_the_one_role_and_nothing_else():
    """No other role, no policy attached beside the inline one, no AWS managed policy
    (role_statements checks those), nothing regional: one stack per account suffices."""
    stack = MemberStack()
    assert {logical_id: r["Type"] for logical_id, r in stack.resources().items()} == {
        "MemberRole": "AWS::IAM::Role"
    }
    assert role_statements(stack, "MemberRole")


# --- trust ----------------------------------------------------------------------------------
def test_only_the_hub_task_role_may_assume_the_member_role():
    statement = trust_statement(MemberStack())
    assert statement == {
        "Sid": "OnlyTheHubTaskRole",
        "Effect": "Allow",
        "Principal": {"AWS": HUB_ROLE_ARN},
        "Action": "sts:AssumeRole",
    }


@pytest.mark.parametrize("external_id", ["drs-poller-hub-7", "a1", "x" * 1224, "org/ou:dr=1"])
def test_an_external_id_is_required_exactly_when_one_is_set(external_id):
    statement = trust_statement(MemberStack(AccountRoleExternalId=external_id))
    assert statement["Condition"] == {"StringEquals": {"sts:ExternalId": external_id}}
    assert statement["Principal"] == {"AWS": HUB_ROLE_ARN}
    assert "Condition" not in trust_statement(MemberStack())
    spec = member_template()["Parameters"]["AccountRoleExternalId"]
    assert re.fullmatch(spec["AllowedPattern"], external_id)


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        (HUB_ROLE_ARN, True),
        ("arn:aws:iam::999988887777:role/path/to/drs-poller-task", True),
        ("arn:aws-us-gov:iam::999988887777:role/drs-poller-task", True),
        ("arn:aws:iam::999988887777:root", False),  # every principal of the hub account
        ("999988887777", False),
        ("*", False),
        ("arn:aws:iam::999988887777:user/admin", False),
        ("arn:aws:sts::999988887777:assumed-role/drs-poller-task/x", False),
        ("arn:aws:iam::*:role/drs-poller-task", False),
        ("", False),
    ],
)
def test_the_trusted_principal_can_only_be_one_role(value, accepted):
    spec = member_template()["Parameters"]["HubRoleArn"]
    assert "Default" not in spec, "no default: each hub names its own role"
    assert bool(re.fullmatch(spec["AllowedPattern"], value)) is accepted


@pytest.mark.parametrize(
    ("value", "accepted"),
    [("", True), ("ab", True), ("a", False), ("with space", False), ("x" * 1225, False)],
)
def test_external_id_accepts_what_sts_accepts(value, accepted):
    spec = member_template()["Parameters"]["AccountRoleExternalId"]
    assert bool(re.fullmatch(spec["AllowedPattern"], value)) is accepted


# --- the hub and its members agree -------------------------------------------------------------
@pytest.mark.parametrize("parameter", ["AccountRoleName", "AccountRoleExternalId"])
def test_member_parameters_are_the_hubs_with_the_same_default_and_pattern(parameter):
    """Both stacks are given the same values; the hub's defaults are the daemon's
    (test_cloudformation_settings.py)."""
    hub = load_template()["Parameters"][parameter]
    member = member_template()["Parameters"][parameter]
    assert (member["Type"], member["Default"], member["AllowedPattern"]) == (
        hub["Type"],
        hub["Default"],
        hub["AllowedPattern"],
    )


@pytest.mark.parametrize("role_name", ["drs-poller-member", "dr-reader"])
def test_the_hub_may_assume_the_role_the_member_stack_names(role_name):
    member = MemberStack(AccountRoleName=role_name)
    assert member.properties("MemberRole")["RoleName"] == role_name
    hub = grants(role_statements(Stack(AccountRoleName=role_name), "TaskRole"))
    assert ("sts:AssumeRole", f"arn:aws:iam::*:role/{role_name}") in hub
    # The member's HubRoleArn is the hub's TaskRoleArn output.
    outputs = load_template()["Outputs"]
    assert outputs["TaskRoleArn"]["Value"] == {"Fn::GetAtt": ["TaskRole", "Arn"]}


def test_member_outputs_name_the_role():
    outputs = member_template()["Outputs"]
    assert outputs["RoleArn"]["Value"] == {"Fn::GetAtt": ["MemberRole", "Arn"]}
    assert outputs["RoleName"]["Value"] == {"Ref": "MemberRole"}


def test_ready_for_stack_sets():
    """One required parameter (the hub's role), no imports, macros or nested stacks: the
    same template and values work in every account of an organisation."""
    template = member_template()
    required = [name for name, spec in template["Parameters"].items() if "Default" not in spec]
    assert required == ["HubRoleArn"]
    text = MEMBER_TEMPLATE_PATH.read_text(encoding="utf-8")
    assert "ImportValue" not in text
    assert "Transform" not in template
    assert "AWS::CloudFormation::Stack" not in text


# --- the linters see both templates -----------------------------------------------------------
def test_dev_lints_every_template_in_the_directory():
    """./dev test runs cfn-lint and checkov on deploy/cloudformation as a whole, so the
    member template is held to the same rules as the hub's."""
    dev = (ROOT / "dev").read_text(encoding="utf-8")
    assert '/cfn-lint" -- deploy/cloudformation/*.yaml' in dev
    assert '/checkov" --directory deploy/cloudformation ' in dev
    assert MEMBER_TEMPLATE_PATH.parent == ROOT / "deploy" / "cloudformation"
    assert MEMBER_TEMPLATE_PATH.suffix == ".yaml"
