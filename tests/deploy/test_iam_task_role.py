"""The task role grants exactly what the daemon calls, on exactly the resources it uses.

The daemon reads execution items through the StatusIndex (Query), describes the table
once at start-up (DescribeTable: the index's projection), reads items whole by key
(BatchGetItem) and writes them back conditionally (UpdateItem), keeps its replica lease
(UpdateItem, Query on the lease table), describes DRS jobs and instances and EC2
instances, lists source servers' launch actions, assumes the read-only member role
(``drs-poller-member.yaml``) in the accounts waves name, answers the orchestrator's Step
Functions task tokens (contract §5), with a ReportBucket, puts the drill reports under
their prefix (docs/report.md), with an EventBus, puts finalization events on that bus,
and with EnableEventsIn, receives, deletes and releases the messages of the DRS events
queue (docs/events.md). It starts, stops and terminates nothing, and these tests hold the
template to that.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

import pytest
from test_cloudformation import Stack, load_template

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


# Receiving DRS's events (EnableEventsIn): the one queue's messages, nothing else in SQS.
EVENTS_IN = {
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:ChangeMessageVisibility",
}


MEMBER_ROLE = "drs-poller-member"


def member_role_grants(
    role: str = MEMBER_ROLE, accounts: list[str] | None = None
) -> set[tuple[str, str]]:
    """sts:AssumeRole on the member role: of that name in any account, or exactly in
    ``accounts``."""
    if accounts is None:
        return {("sts:AssumeRole", f"arn:aws:iam::*:role/{role}")}
    return {("sts:AssumeRole", f"arn:aws:iam::{account}:role/{role}") for account in accounts}


def expected_task_grants(
    *,
    table: str,
    index: str,
    reports: str | None = None,
    bus: str | None = None,
    events_in: bool = False,
    member_role: str = MEMBER_ROLE,
    member_accounts: list[str] | None = None,
) -> set[tuple[str, str]]:
    """``reports``: the S3 ARN prefix the reports go under (``bucket/prefix``), if any;
    ``bus``: the ARN the finalization events go to, if any; ``events_in``: the DRS events
    queue is read; ``member_role`` / ``member_accounts``: the member role assumed, in any
    account or in those (MemberAccountIds)."""
    table_arn = f"{ACCOUNT_REGION}:table/{table}"
    report_grants = set() if reports is None else {("s3:PutObject", f"arn:aws:s3:::{reports}*")}
    event_grants = set() if bus is None else {("events:PutEvents", bus)}
    queue_grants = {(a, "{DrsEventsQueue.Arn}") for a in EVENTS_IN} if events_in else set()
    return (
        report_grants
        | event_grants
        | queue_grants
        | member_role_grants(member_role, member_accounts)
        | {
            ("dynamodb:Query", f"{table_arn}/index/{index}"),
            ("dynamodb:DescribeTable", table_arn),
            ("dynamodb:BatchGetItem", table_arn),
            ("dynamodb:UpdateItem", table_arn),
            ("dynamodb:Query", "{LeaseTable.Arn}"),
            ("dynamodb:UpdateItem", "{LeaseTable.Arn}"),
            *((action, "*") for action in UNSCOPABLE),
            *((action, "*") for action in TASK_TOKEN_ANSWERS),
        }
    )


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


# The one condition an identity statement may carry: sts:AssumeRole on the member role
# with the account left open in the ARN and pinned by aws:ResourceAccount (a list of
# ARNs cannot be built from MemberAccountIds in CloudFormation).
_ANY_ACCOUNT_ROLE = re.compile(r"^(arn:aws:iam::)\*(:role/[\w+=,.@-]+)$")


def _resources(statement: dict[str, Any]) -> list[str]:
    """What the statement grants on: its Resource, or, for the member-role statement with
    its account condition, exactly the role ARNs in those accounts."""
    resources = _as_list(statement["Resource"])
    if "Condition" not in statement:
        return resources
    assert statement["Action"] == "sts:AssumeRole", "a condition only on the member role"
    assert list(statement["Condition"]) == ["StringEquals"], json.dumps(statement)
    (key,) = statement["Condition"]["StringEquals"]
    assert key == "aws:ResourceAccount"
    accounts = _as_list(statement["Condition"]["StringEquals"][key])
    assert accounts
    assert all(re.fullmatch(r"[0-9]{12}", account) for account in accounts), accounts
    (resource,) = resources
    pattern = _ANY_ACCOUNT_ROLE.fullmatch(resource)
    assert pattern is not None, resource
    return [f"{pattern.group(1)}{account}{pattern.group(2)}" for account in accounts]


def grants(statements: list[dict[str, Any]]) -> set[tuple[str, str]]:
    pairs = set()
    for statement in statements:
        assert statement["Effect"] == "Allow"
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition"}, (
            "no NotAction/NotResource/Principal tricks in an identity policy"
        )
        pairs |= set(itertools.product(_as_list(statement["Action"]), _resources(statement)))
    return pairs


BUS_ARN = "arn:aws:events:us-east-1:123456789012:event-bus"


@pytest.mark.parametrize(
    ("parameters", "table", "index", "reports", "bus", "events_in"),
    [
        ({}, "drs-execution-history", "StatusIndex", None, None, False),
        (
            {"AdoptExistingTable": "true", "TableName": "api-executions"},
            "api-executions",
            "StatusIndex",
            None,
            None,
            False,
        ),
        (
            {"TableName": "dr-history", "StatusIndex": "ByStatus"},
            "dr-history",
            "ByStatus",
            None,
            None,
            False,
        ),
        (
            {"ReportBucket": "dr-evidence"},
            "drs-execution-history",
            "StatusIndex",
            "dr-evidence/drs-poller/reports/",
            None,
            False,
        ),
        (
            {"ReportBucket": "dr.evidence-1", "ReportPrefix": "audit/drills/"},
            "drs-execution-history",
            "StatusIndex",
            "dr.evidence-1/audit/drills/",
            None,
            False,
        ),
        # Events out: a bus the stack creates, the default bus, an existing bus, and with
        # an email topic (which adds nothing to the task role).
        (
            {"EventBus": "dr-events"},
            "drs-execution-history",
            "StatusIndex",
            None,
            "{OutputBus.Arn}",
            False,
        ),
        (
            {"EventBus": "default"},
            "drs-execution-history",
            "StatusIndex",
            None,
            f"{BUS_ARN}/default",
            False,
        ),
        (
            {"EventBus": "shared-bus", "CreateEventBus": "false"},
            "drs-execution-history",
            "StatusIndex",
            None,
            f"{BUS_ARN}/shared-bus",
            False,
        ),
        (
            {
                "EventBus": "default",
                "CreateEventBus": "true",
                "NotificationEmail": "dr@example.com",
            },
            "drs-execution-history",
            "StatusIndex",
            None,
            f"{BUS_ARN}/default",
            False,
        ),
        # Events in, alone and with everything else.
        ({"EnableEventsIn": "true"}, "drs-execution-history", "StatusIndex", None, None, True),
        (
            {
                "EnableEventsIn": "true",
                "EventBus": "dr-events",
                "NotificationEmail": "dr@example.com",
                "ReportBucket": "dr-evidence",
            },
            "drs-execution-history",
            "StatusIndex",
            "dr-evidence/drs-poller/reports/",
            "{OutputBus.Arn}",
            True,
        ),
    ],
)
def test_task_role_grants_exactly_the_daemons_calls(  # noqa: PLR0917 - the table's columns
    parameters, table, index, reports, bus, events_in
):
    stack = Stack(**parameters)
    assert grants(role_statements(stack, "TaskRole")) == expected_task_grants(
        table=table, index=index, reports=reports, bus=bus, events_in=events_in
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
        elif action == "sts:AssumeRole":
            # Any account (no MemberAccountIds), never any role: the name is fixed.
            assert resource == f"arn:aws:iam::*:role/{MEMBER_ROLE}"
        else:
            assert "*" not in resource
    listed = Stack(MemberAccountIds="111122223333,444455556666")
    assert not {r for _, r in grants(role_statements(listed, "TaskRole")) if "*" in r} - {"*"}


@pytest.mark.parametrize(
    "parameters",
    [
        {},
        {"ReportBucket": "dr-evidence"},
        {"EventBus": "dr-events", "EnableEventsIn": "true", "NotificationEmail": "a@b.example"},
    ],
)
def test_task_role_cannot_start_stop_terminate_or_delete_anything(parameters):
    """The selling point in the README, held as a rule over action names."""
    # BatchGetItem only reads (discovery reads items whole by key with it).
    forbidden = re.compile(
        r":(Start|Stop|Terminate|Run|Reboot|Delete|Create|Put|BatchWrite|BatchExecute|Scan)"
    )
    granted = grants(role_statements(Stack(**parameters), "TaskRole"))
    # The one put: a drill report object under the report prefix (with a ReportBucket).
    reports = {("s3:PutObject", "arn:aws:s3:::dr-evidence/drs-poller/reports/*")}
    # The one put of events: on the configured bus (with an EventBus); and the one
    # delete: a handled message of the DRS events queue (with EnableEventsIn).
    events = {
        ("events:PutEvents", "{OutputBus.Arn}"),
        ("sqs:DeleteMessage", "{DrsEventsQueue.Arn}"),
    }
    actions = {action for action, resource in granted if (action, resource) not in reports | events}
    assert not {action for action in actions if forbidden.search(action)}
    assert all(
        action.startswith("dynamodb:")
        or ":Describe" in action
        or ":List" in action
        or action == "drs:GetLaunchConfiguration"  # a read of one source server's settings
        or action in TASK_TOKEN_ANSWERS
        or action in EVENTS_IN
        # The same reads in other accounts: the member role is read-only
        # (test_iam_member_role.py).
        or action == "sts:AssumeRole"
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


def test_events_grants_reach_only_the_bus_and_the_queue_of_the_stack():
    """PutEvents on the one bus, the queue's messages only: nothing without the parameters,
    no SendMessage, no other bus or queue, and the container is told the same names."""
    plain = grants(role_statements(Stack(), "TaskRole"))
    assert not {a for a, _ in plain if a.startswith(("events:", "sqs:"))}
    assert not {"DRS_POLLER_EVENT_BUS", "DRS_POLLER_EVENTS_QUEUE_URL"} & set(Stack().environment())
    stack = Stack(EventBus="dr-events", EnableEventsIn="true")
    granted = grants(role_statements(stack, "TaskRole"))
    assert {(a, r) for a, r in granted if a.startswith("events:")} == {
        ("events:PutEvents", "{OutputBus.Arn}")
    }
    assert {(a, r) for a, r in granted if a.startswith("sqs:")} == {
        (a, "{DrsEventsQueue.Arn}") for a in EVENTS_IN
    }
    environment = stack.environment()
    assert environment["DRS_POLLER_EVENT_BUS"] == "dr-events"
    assert environment["DRS_POLLER_EVENTS_QUEUE_URL"] == "{DrsEventsQueue}"
    assert stack.properties("OutputBus")["Name"] == "dr-events"
    assert not Stack(EventBus="default").exists("OutputBus")
    assert not Stack(EventBus="shared", CreateEventBus="false").exists("OutputBus")


# --- member accounts (docs/operations.md#many-accounts) ----------------------------------
ACCOUNTS = ["111122223333", "444455556666", "777788889999"]


@pytest.mark.parametrize(
    ("parameters", "role", "accounts"),
    [
        ({}, MEMBER_ROLE, None),
        ({"AccountRoleName": "dr-reader"}, "dr-reader", None),
        ({"MemberAccountIds": ACCOUNTS[0]}, MEMBER_ROLE, ACCOUNTS[:1]),
        ({"MemberAccountIds": ",".join(ACCOUNTS)}, MEMBER_ROLE, ACCOUNTS),
        (
            {"MemberAccountIds": ",".join(ACCOUNTS[:2]), "AccountRoleName": "dr-reader"},
            "dr-reader",
            ACCOUNTS[:2],
        ),
        (
            {"MemberAccountIds": ACCOUNTS[0], "AccountRoleExternalId": "drs-poller-hub-7"},
            MEMBER_ROLE,
            ACCOUNTS[:1],
        ),
    ],
)
def test_task_role_assumes_the_member_role_only_in_its_accounts(parameters, role, accounts):
    """Exact under both conditions: the role name in any account, or in exactly the
    MemberAccountIds; everything else the role grants is unchanged."""
    granted = grants(role_statements(Stack(**parameters), "TaskRole"))
    assert granted == expected_task_grants(
        table="drs-execution-history",
        index="StatusIndex",
        member_role=role,
        member_accounts=accounts,
    )
    assert {(a, r) for a, r in granted if a.startswith("sts:")} == member_role_grants(
        role, accounts
    )


def test_member_accounts_are_a_condition_on_the_roles_account_only_when_listed():
    """The statement as IAM reads it: the account is pinned by aws:ResourceAccount
    (StringEquals, so a request without the key matches nothing)."""

    def assume(stack: Stack) -> dict[str, Any]:
        (statement,) = [
            s for s in role_statements(stack, "TaskRole") if s["Action"] == "sts:AssumeRole"
        ]
        return statement

    anywhere = assume(Stack())
    assert anywhere == {
        "Sid": "AssumeMemberAccountRoles",
        "Effect": "Allow",
        "Action": "sts:AssumeRole",
        "Resource": f"arn:aws:iam::*:role/{MEMBER_ROLE}",
    }
    listed = assume(Stack(MemberAccountIds=",".join(ACCOUNTS[:2])))
    assert listed == {
        **anywhere,
        "Condition": {"StringEquals": {"aws:ResourceAccount": ACCOUNTS[:2]}},
    }


def test_member_role_settings_reach_the_container():
    """DRS_POLLER_ACCOUNT_ROLE_NAME always (its default is the daemon's), the external id
    only when set; MemberAccountIds is the stack's alone (the daemon is not told)."""
    plain = Stack().environment()
    assert plain["DRS_POLLER_ACCOUNT_ROLE_NAME"] == MEMBER_ROLE
    assert "DRS_POLLER_ACCOUNT_ROLE_EXTERNAL_ID" not in plain
    chosen = Stack(
        AccountRoleName="dr-reader",
        AccountRoleExternalId="drs-poller-hub-7",
        MemberAccountIds=ACCOUNTS[0],
    ).environment()
    assert chosen["DRS_POLLER_ACCOUNT_ROLE_NAME"] == "dr-reader"
    assert chosen["DRS_POLLER_ACCOUNT_ROLE_EXTERNAL_ID"] == "drs-poller-hub-7"
    assert not [name for name in chosen if "MEMBER_ACCOUNT" in name]


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("111122223333", True),
        ("", True),  # empty: any account
        ("11112222333", False),  # 11 digits
        ("1111222233334", False),
        ("arn:aws:iam::111122223333:root", False),
        ("11112222333a", False),
    ],
)
def test_member_account_ids_accept_only_account_ids(value, accepted):
    """CloudFormation applies a CommaDelimitedList's AllowedPattern to each item."""
    spec = load_template()["Parameters"]["MemberAccountIds"]
    assert spec["Type"] == "CommaDelimitedList"
    assert spec["Default"] == ""
    assert bool(re.fullmatch(spec["AllowedPattern"], value)) is accepted


def test_the_hub_outputs_the_task_role_arn_for_the_member_stacks():
    outputs = load_template()["Outputs"]
    assert outputs["TaskRoleArn"]["Value"] == {"Fn::GetAtt": ["TaskRole", "Arn"]}
    assert "HubRoleArn" in outputs["TaskRoleArn"]["Description"]
