"""The task role grants exactly what the daemon calls, on exactly the resources it uses.

The daemon reads execution items through the StatusIndex (Query), describes the table
once at start-up (DescribeTable: the index's projection), reads items whole by key
(BatchGetItem) and writes them back conditionally (UpdateItem), keeps its replica lease
(UpdateItem, Query on the lease table), describes DRS jobs and instances and EC2
instances, lists source servers' launch actions, answers the orchestrator's Step
Functions task tokens (contract §5), and, with a ReportBucket, puts the drill reports
under their prefix (docs/report.md). It starts, stops and terminates nothing, and these
tests hold the template to that.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest
from test_cloudformation import Stack

from drs_poller.clients.drs import _SNAKE

ACCOUNT_REGION = "arn:aws:dynamodb:us-east-1:123456789012"
# Read actions with no resource-level permissions, or (ListLaunchActions,
# GetLaunchConfiguration) on source servers in any region a wave names: "*" is the only
# possible resource.
UNSCOPABLE = {
    "drs:DescribeJobs",
    "drs:DescribeJobLogItems",
    "drs:DescribeRecoveryInstances",
    "drs:ListLaunchActions",
    "drs:GetLaunchConfiguration",
    "ec2:DescribeInstances",
}
# Answers to the orchestrator's Step Functions task tokens (contract §5): no
# resource-level permissions either. They answer a waiting task; they start nothing.
TASK_TOKEN_ANSWERS = {
    "states:SendTaskSuccess",
    "states:SendTaskFailure",
    "states:SendTaskHeartbeat",
}


def expected_task_grants(
    *, table: str, index: str, reports: str | None = None
) -> set[tuple[str, str]]:
    """``reports``: the S3 ARN prefix the reports go under (``bucket/prefix``), if any."""
    table_arn = f"{ACCOUNT_REGION}:table/{table}"
    report_grants = set() if reports is None else {("s3:PutObject", f"arn:aws:s3:::{reports}*")}
    return report_grants | {
        ("dynamodb:Query", f"{table_arn}/index/{index}"),
        ("dynamodb:DescribeTable", table_arn),
        ("dynamodb:BatchGetItem", table_arn),
        ("dynamodb:UpdateItem", table_arn),
        ("dynamodb:Query", "{LeaseTable.Arn}"),
        ("dynamodb:UpdateItem", "{LeaseTable.Arn}"),
        *((action, "*") for action in UNSCOPABLE),
        *((action, "*") for action in TASK_TOKEN_ANSWERS),
    }


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def role_statements(stack: Stack, role: str) -> list[dict[str, Any]]:
    """Every statement that grants the role anything: inline, attached, or managed."""
    props = stack.properties(role)
    assert "ManagedPolicyArns" not in props, f"{role}: AWS managed policies grant too much"
    assert "PermissionsBoundary" not in props
    statements = [
        statement
        for policy in props.get("Policies", [])
        for statement in policy["PolicyDocument"]["Statement"]
    ]
    for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy"):
        for logical_id, resource in stack.resources(kind).items():
            attached = resource["Properties"]
            targets = [*_as_list(attached.get("Roles", [])), attached.get("RoleName")]
            if "{" + role + "}" in targets:
                pytest.fail(f"{logical_id} attaches more permissions to {role}")
    return statements


def grants(statements: list[dict[str, Any]]) -> set[tuple[str, str]]:
    pairs = set()
    for statement in statements:
        assert statement["Effect"] == "Allow"
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource"}, (
            "no NotAction/NotResource/Condition/Principal tricks in an identity policy"
        )
        pairs |= set(
            itertools.product(_as_list(statement["Action"]), _as_list(statement["Resource"]))
        )
    return pairs


@pytest.mark.parametrize(
    ("parameters", "table", "index", "reports"),
    [
        ({}, "drs-execution-history", "StatusIndex", None),
        (
            {"AdoptExistingTable": "true", "TableName": "api-executions"},
            "api-executions",
            "StatusIndex",
            None,
        ),
        ({"TableName": "dr-history", "StatusIndex": "ByStatus"}, "dr-history", "ByStatus", None),
        (
            {"ReportBucket": "dr-evidence"},
            "drs-execution-history",
            "StatusIndex",
            "dr-evidence/drs-poller/reports/",
        ),
        (
            {"ReportBucket": "dr.evidence-1", "ReportPrefix": "audit/drills/"},
            "drs-execution-history",
            "StatusIndex",
            "dr.evidence-1/audit/drills/",
        ),
    ],
)
def test_task_role_grants_exactly_the_daemons_calls(parameters, table, index, reports):
    stack = Stack(**parameters)
    assert grants(role_statements(stack, "TaskRole")) == expected_task_grants(
        table=table, index=index, reports=reports
    )


def test_report_puts_reach_only_the_report_prefix_of_the_bucket():
    """PutObject on ``bucket/prefix*`` and nothing else in S3: no reads, lists, deletes,
    no other bucket, no ACL or policy changes."""
    stack = Stack(ReportBucket="dr-evidence")
    s3 = {(a, r) for a, r in grants(role_statements(stack, "TaskRole")) if a.startswith("s3:")}
    assert s3 == {("s3:PutObject", "arn:aws:s3:::dr-evidence/drs-poller/reports/*")}
    ((_, resource),) = s3
    assert resource.count("*") == 1
    assert resource.endswith("/*")
    assert stack.environment()["DRS_POLLER_REPORT_BUCKET"] == "dr-evidence"
    assert "DRS_POLLER_REPORT_BUCKET" not in Stack().environment()
    assert not {a for a, _ in grants(role_statements(Stack(), "TaskRole")) if a.startswith("s3:")}


def test_task_role_has_no_wildcard_actions_and_star_only_for_unscopable_describes():
    for action, resource in grants(role_statements(Stack(), "TaskRole")):
        assert "*" not in action
        assert ":" in action
        if resource == "*":
            assert action in UNSCOPABLE | TASK_TOKEN_ANSWERS
        else:
            assert "*" not in resource


@pytest.mark.parametrize("parameters", [{}, {"ReportBucket": "dr-evidence"}])
def test_task_role_cannot_start_stop_terminate_or_delete_anything(parameters):
    """The selling point in the README, held as a rule over action names."""
    # BatchGetItem only reads (discovery reads items whole by key with it).
    forbidden = re.compile(
        r":(Start|Stop|Terminate|Run|Reboot|Delete|Create|Put|BatchWrite|BatchExecute|Scan)"
    )
    granted = grants(role_statements(Stack(**parameters), "TaskRole"))
    # The one put: a drill report object under the report prefix (with a ReportBucket).
    reports = {("s3:PutObject", "arn:aws:s3:::dr-evidence/drs-poller/reports/*")}
    actions = {action for action, resource in granted if (action, resource) not in reports}
    assert not {action for action in actions if forbidden.search(action)}
    assert all(
        action.startswith("dynamodb:")
        or ":Describe" in action
        or ":List" in action
        or action == "drs:GetLaunchConfiguration"  # a read of one source server's settings
        or action in TASK_TOKEN_ANSWERS
        for action in actions
    )


def test_task_role_grants_every_drs_operation_the_adapter_calls_and_no_other():
    """The DRS adapter's operation table is the set of DRS calls the daemon makes."""
    granted = {a for a, _ in grants(role_statements(Stack(), "TaskRole")) if a.startswith("drs:")}
    assert granted == {f"drs:{operation}" for operation in _SNAKE}


def test_lease_grants_point_at_the_lease_table_with_its_schema():
    stack = Stack()
    lease = stack.properties("LeaseTable")
    assert [k["AttributeName"] for k in lease["KeySchema"]] == ["LeaseGroup", "ReplicaId"]
    lease_actions = {a for a, r in grants(role_statements(stack, "TaskRole")) if "Lease" in r}
    assert lease_actions == {"dynamodb:Query", "dynamodb:UpdateItem"}


@pytest.mark.parametrize("role", ["TaskRole", "ExecutionRole"])
def test_only_ecs_tasks_of_this_account_may_assume_the_role(role):
    trust = Stack().properties(role)["AssumeRolePolicyDocument"]
    (statement,) = trust["Statement"]
    assert statement["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    assert statement["Action"] == "sts:AssumeRole"
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}


def test_execution_role_writes_logs_and_pulls_the_image_only():
    repository = "arn:aws:ecr:us-east-1:123456789012:repository/drs-poller"
    private = grants(role_statements(Stack(EcrRepositoryArn=repository), "ExecutionRole"))
    assert private == {
        ("logs:CreateLogStream", "{LogGroup.Arn}"),
        ("logs:PutLogEvents", "{LogGroup.Arn}"),
        ("ecr:GetAuthorizationToken", "*"),  # names no repository: "*" is the only choice
        ("ecr:BatchCheckLayerAvailability", repository),
        ("ecr:GetDownloadUrlForLayer", repository),
        ("ecr:BatchGetImage", repository),
    }
    public = grants(role_statements(Stack(), "ExecutionRole"))
    assert public == {
        ("logs:CreateLogStream", "{LogGroup.Arn}"),
        ("logs:PutLogEvents", "{LogGroup.Arn}"),
    }


def test_the_task_uses_the_task_role_and_ecs_the_execution_role():
    task = Stack().properties("TaskDefinition")
    assert task["TaskRoleArn"] == "{TaskRole.Arn}"
    assert task["ExecutionRoleArn"] == "{ExecutionRole.Arn}"
    roles = Stack().resources("AWS::IAM::Role")
    assert set(roles) == {"TaskRole", "ExecutionRole"}
