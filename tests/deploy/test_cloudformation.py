"""The CloudFormation template, read as CloudFormation would read it for given parameters.

No AWS account is needed: the template is parsed with a small PyYAML loader that keeps
the short-form intrinsics (``!Ref``, ``!Sub``, ...), and ``Stack`` evaluates them for one
set of parameter values: conditions, ``Fn::If``, ``Fn::Sub``, ``Fn::Join`` and
``AWS::NoValue``. References to resources stay symbolic (``{LeaseTable.Arn}``), so a
test can say which resource a property points at. ``Stack`` is shared with
``test_cloudformation_settings.py`` and ``test_iam_task_role.py``; a subclass that names
another template (``template_path``, ``required_values``) reads the member-account
template in ``test_iam_member_role.py``.

cfn-lint and checkov check the same template in ``./dev test`` (their own virtualenv).
"""

from __future__ import annotations

import copy
import io
import json
import logging
import re
import subprocess
import sys
import threading
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml

from drs_poller.observability.logs import configure_logging

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "deploy" / "cloudformation" / "drs-poller.yaml"

PSEUDO_PARAMETERS = {
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::Region": "us-east-1",
    "AWS::StackName": "drs-poller",
    "AWS::URLSuffix": "amazonaws.com",
}
# Parameters without a default need a value to evaluate the template at all.
REQUIRED_VALUES = {
    "ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/drs-poller:0.1.0",
    "VpcId": "vpc-0123456789abcdef0",
    "SubnetIds": "subnet-0aaaaaaaaaaaaaaaa,subnet-0bbbbbbbbbbbbbbbb",
    "PrometheusSecurityGroupId": "sg-0123456789abcdef0",
}
CONTAINER = "drs-poller"


class _CfnLoader(yaml.SafeLoader):
    """A SafeLoader that reads ``!Ref x`` as ``{"Ref": "x"}``, ``!Sub s`` as ``{"Fn::Sub": s}``."""


def _intrinsic(loader: _CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix in ("Ref", "Condition"):
        return {suffix: value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


@cache
def _parsed_template(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    return yaml.load(text, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """A fresh copy each time (parsed once): tests may not share mutable state through it."""
    return copy.deepcopy(_parsed_template(path))


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


class Stack:
    """The template as CloudFormation sees it for one set of parameter values."""

    template_path: Path = TEMPLATE_PATH
    required_values: dict[str, str] = REQUIRED_VALUES

    def __init__(self, **parameters: str) -> None:
        self.template = load_template(self.template_path)
        specs = self.template["Parameters"]
        unknown = set(parameters) - set(specs)
        assert not unknown, f"no such parameters: {unknown}"
        values = {name: spec.get("Default") for name, spec in specs.items()}
        values.update(self.required_values)
        values.update(parameters)
        self.parameters: dict[str, Any] = {}
        for name, value in values.items():
            assert value is not None, f"parameter {name} has no value"
            kind = specs[name]["Type"]
            text = str(value)
            is_list = kind.startswith("List<") or kind == "CommaDelimitedList"
            self.parameters[name] = text.split(",") if is_list else text
        self._conditions: dict[str, bool] = {}

    # --- evaluation ---------------------------------------------------------------------
    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = bool(self.resolve(self.template["Conditions"][name]))
        return self._conditions[name]

    def resolve(self, node: Any) -> Any:  # noqa: PLR0911, PLR0912 - one branch per intrinsic
        if isinstance(node, list):
            items = [self.resolve(item) for item in node]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Ref":
                return self._ref(arg)
            if key == "Condition" and isinstance(arg, str):
                return self.condition(arg)
            if key == "Fn::GetAtt":
                return "{" + ".".join(arg) + "}"
            if key == "Fn::If":
                name, when_true, when_false = arg
                return self.resolve(when_true if self.condition(name) else when_false)
            if key == "Fn::Equals":
                left, right = (self.resolve(part) for part in arg)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::And":
                return all(self.resolve(part) for part in arg)
            if key == "Fn::Or":
                return any(self.resolve(part) for part in arg)
            if key == "Fn::Join":
                delimiter, parts = arg
                return delimiter.join(str(part) for part in self.resolve(parts))
            if key == "Fn::Split":
                delimiter, text = arg
                return str(self.resolve(text)).split(delimiter)
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::FindInMap":
                mapping, first, second = (self.resolve(part) for part in arg)
                return self.template["Mappings"][mapping][first][second]
            if key.startswith("Fn::"):
                raise NotImplementedError(f"{key} is not evaluated by these tests")
        resolved = {key: self.resolve(value) for key, value in node.items()}
        return {key: value for key, value in resolved.items() if value is not NO_VALUE}

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in PSEUDO_PARAMETERS:
            return PSEUDO_PARAMETERS[name]
        if name in self.parameters:
            return self.parameters[name]
        assert name in self.template["Resources"], f"Ref to unknown {name}"
        assert self.exists(name), f"Ref to {name}, which this stack does not create"
        return "{" + name + "}"

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else arg
        local = {name: self.resolve(value) for name, value in variables.items()}

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in local:
                return str(local[name])
            if "." in name:
                return "{" + name + "}"
            return str(self._ref(name))

        return _SUB_VARIABLE.sub(one, text).replace("${!", "${")

    # --- questions tests ask ------------------------------------------------------------
    def exists(self, logical_id: str) -> bool:
        condition = self.template["Resources"][logical_id].get("Condition")
        return condition is None or self.condition(condition)

    def resources(self, kind: str | None = None) -> dict[str, dict[str, Any]]:
        """The resources this stack creates (of one type), properties resolved."""
        out = {}
        for logical_id, resource in self.template["Resources"].items():
            if (kind is None or resource["Type"] == kind) and self.exists(logical_id):
                out[logical_id] = {
                    "Type": resource["Type"],
                    "Properties": self.resolve(resource.get("Properties", {})),
                    "DeletionPolicy": resource.get("DeletionPolicy"),
                    "Metadata": resource.get("Metadata", {}),
                }
        return out

    def properties(self, logical_id: str) -> dict[str, Any]:
        assert self.exists(logical_id), f"{logical_id} is not created with these parameters"
        return self.resolve(self.template["Resources"][logical_id].get("Properties", {}))

    def container(self) -> dict[str, Any]:
        (container,) = self.properties("TaskDefinition")["ContainerDefinitions"]
        assert container["Name"] == CONTAINER
        return container

    def environment(self) -> dict[str, str]:
        return {pair["Name"]: pair["Value"] for pair in self.container()["Environment"]}

    def rules_hold(self) -> bool:
        return all(
            self.resolve(assertion["Assert"])
            for rule in self.template.get("Rules", {}).values()
            for assertion in rule["Assertions"]
        )


# --- the execution-history table (contract §1) ----------------------------------------------
@pytest.mark.parametrize(
    ("projection", "expected"),
    [
        ("KEYS_ONLY", {"ProjectionType": "KEYS_ONLY"}),
        (
            "INCLUDE",
            {
                "ProjectionType": "INCLUDE",
                "NonKeyAttributes": ["PollerRevision", "TaskTokensPending"],
            },
        ),
        ("ALL", {"ProjectionType": "ALL"}),
    ],
)
def test_status_index_projection_parameter(projection, expected):
    stack = Stack(StatusIndexProjection=projection)
    props = stack.resources("AWS::DynamoDB::Table")["ExecutionTable"]["Properties"]
    assert props["GlobalSecondaryIndexes"][0]["Projection"] == expected


def test_execution_table_is_the_contracts_schema_and_is_protected():
    table = Stack().resources("AWS::DynamoDB::Table")["ExecutionTable"]
    props = table["Properties"]
    types = {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]}
    assert types == {"ExecutionId": "S", "PlanId": "S", "Status": "S", "StartTime": "N"}
    assert props["KeySchema"] == [
        {"AttributeName": "ExecutionId", "KeyType": "HASH"},
        {"AttributeName": "PlanId", "KeyType": "RANGE"},
    ]
    (index,) = props["GlobalSecondaryIndexes"]
    assert index == {
        "IndexName": "StatusIndex",
        "KeySchema": [
            {"AttributeName": "Status", "KeyType": "HASH"},
            {"AttributeName": "StartTime", "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "KEYS_ONLY"},  # the lean default (contract §1)
    }
    assert props["TableName"] == "drs-execution-history"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"] == {"SSEEnabled": True, "SSEType": "KMS"}
    assert props["DeletionProtectionEnabled"] is True
    assert table["DeletionPolicy"] == "Retain"


def test_the_index_name_follows_the_status_index_setting():
    props = Stack(StatusIndex="ByStatus").properties("ExecutionTable")
    assert [index["IndexName"] for index in props["GlobalSecondaryIndexes"]] == ["ByStatus"]
    assert Stack(StatusIndex="ByStatus").environment()["DRS_POLLER_STATUS_INDEX"] == "ByStatus"


def test_an_adopted_table_is_not_created_and_the_task_is_given_its_name():
    stack = Stack(AdoptExistingTable="true", TableName="initiator-executions")
    assert not stack.exists("ExecutionTable")
    assert list(stack.resources("AWS::DynamoDB::Table")) == ["LeaseTable"]
    assert stack.environment()["DRS_POLLER_TABLE_NAME"] == "initiator-executions"
    # Created: the task refers to the table resource, so it waits until the table exists.
    assert Stack().environment()["DRS_POLLER_TABLE_NAME"] == "{ExecutionTable}"


@pytest.mark.parametrize("table", ["ExecutionTable", "LeaseTable"])
def test_tables_use_the_kms_key_only_when_one_is_given(table):
    key = "arn:aws:kms:us-east-1:123456789012:key/0b1c2d3e-aaaa-bbbb-cccc-0123456789ab"
    with_key = Stack(TableKmsKeyArn=key).properties(table)["SSESpecification"]
    assert with_key == {"SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": key}
    without = Stack().properties(table)["SSESpecification"]
    assert "KMSMasterKeyId" not in without
    assert without["SSEEnabled"] is True


# --- the replica lease table --------------------------------------------------------------
def test_lease_table_keys_ttl_and_why_it_has_no_point_in_time_recovery():
    stack = Stack()
    table = stack.resources("AWS::DynamoDB::Table")["LeaseTable"]
    props = table["Properties"]
    assert props["KeySchema"] == [
        {"AttributeName": "LeaseGroup", "KeyType": "HASH"},
        {"AttributeName": "ReplicaId", "KeyType": "RANGE"},
    ]
    types = {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]}
    assert types == {"LeaseGroup": "S", "ReplicaId": "S"}
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["TimeToLiveSpecification"] == {"AttributeName": "ExpiresAt", "Enabled": True}
    assert "PointInTimeRecoverySpecification" not in props
    (skip,) = table["Metadata"]["checkov"]["skip"]
    assert skip["id"] == "CKV_AWS_28"
    assert "soft state" in skip["comment"]
    assert stack.environment()["DRS_POLLER_LEASE_TABLE_NAME"] == "{LeaseTable}"


# --- the task -------------------------------------------------------------------------------
def test_task_is_a_small_arm_fargate_task_running_read_only_as_non_root():
    stack = Stack()
    task = stack.properties("TaskDefinition")
    assert task["RequiresCompatibilities"] == ["FARGATE"]
    assert task["NetworkMode"] == "awsvpc"
    assert (task["Cpu"], task["Memory"]) == ("256", "512")  # 0.25 vCPU, 0.5 GB
    bigger = Stack(TaskSize="512-1024").properties("TaskDefinition")
    assert (bigger["Cpu"], bigger["Memory"]) == ("512", "1024")
    assert task["RuntimePlatform"] == {"CpuArchitecture": "ARM64", "OperatingSystemFamily": "LINUX"}
    assert (
        Stack(CpuArchitecture="X86_64").properties("TaskDefinition")["RuntimePlatform"][
            "CpuArchitecture"
        ]
        == "X86_64"
    )
    container = stack.container()
    assert container["ReadonlyRootFilesystem"] is True
    assert container["Privileged"] is False
    assert container["LinuxParameters"]["Capabilities"] == {"Drop": ["ALL"]}
    uid = container["User"].split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0
    spec = stack.template["Parameters"]["ContainerUser"]
    assert not re.fullmatch(spec["AllowedPattern"], "0")
    assert not re.fullmatch(spec["AllowedPattern"], "0:0")
    assert not re.fullmatch(spec["AllowedPattern"], "root")
    assert container["Command"] == ["run"]
    assert container["PortMappings"][0]["ContainerPort"] == "9100"


def test_stop_timeout_leaves_a_margin_after_the_longest_shutdown_grace():
    stack = Stack()
    grace = stack.template["Parameters"]["ShutdownGrace"]
    stop_timeout = stack.container()["StopTimeout"]
    assert stop_timeout == 30
    assert grace["Default"] == 20
    # After the grace period the daemon cancels, closes its clients and exits: 5 s for that.
    assert grace["MaxValue"] + 5 <= stop_timeout


def test_logs_go_to_the_stacks_log_group_with_the_retention_parameter():
    stack = Stack(LogRetentionDays="90")
    assert stack.properties("LogGroup")["RetentionInDays"] == "90"
    options = stack.container()["LogConfiguration"]
    assert options["LogDriver"] == "awslogs"
    assert options["Options"]["awslogs-group"] == "{LogGroup}"
    assert options["Options"]["awslogs-region"] == "us-east-1"
    assert options["Options"]["mode"] == "non-blocking"


class _Healthz(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = self.status if self.path == "/healthz" else 404
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"ok\n" if code == 200 else b"no\n")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        pass


@pytest.mark.parametrize(("served", "healthy"), [(200, True), (503, False), (None, False)])
def test_the_container_health_check_command_really_checks_healthz(served, healthy):
    """Run the health check's python command, as ECS would, against a /healthz on loopback."""
    handler = type("Handler", (_Healthz,), {"status": served or 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    port = server.server_address[1]
    if served is None:
        server.server_close()  # nothing listens: the check must fail, not hang
    else:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        check = Stack(MetricsPort=str(port)).container()["HealthCheck"]
        kind, program, flag, code = check["Command"]
        assert (kind, program, flag) == ("CMD", "python", "-c")  # the image has no curl
        assert f"http://127.0.0.1:{port}/healthz" in code
        result = subprocess.run(  # noqa: S603 - our own interpreter and the template's code
            [sys.executable, "-c", code], capture_output=True, timeout=30, check=False
        )
        assert (result.returncode == 0) is healthy, result.stderr.decode()
    finally:
        if served is not None:
            server.shutdown()
            server.server_close()
    assert check["Timeout"] < check["Interval"]


# --- the service ----------------------------------------------------------------------------
def test_service_runs_two_replicas_with_a_rolling_deploy_that_rolls_back():
    service = Stack().properties("Service")
    assert service["DesiredCount"] == "2"
    assert service["LaunchType"] == "FARGATE"
    assert service["DeploymentConfiguration"] == {
        "MinimumHealthyPercent": 100,
        "MaximumPercent": 200,
        "DeploymentCircuitBreaker": {"Enable": True, "Rollback": True},
    }
    network = service["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["AssignPublicIp"] == "DISABLED"
    assert network["Subnets"] == REQUIRED_VALUES["SubnetIds"].split(",")
    assert network["SecurityGroups"] == ["{TaskSecurityGroup}"]
    assert service["EnableExecuteCommand"] is False
    assert service["Cluster"] == "{Cluster}"


def test_service_joins_extra_security_groups_and_an_existing_cluster():
    stack = Stack(
        ExtraSecurityGroupIds="sg-0aaaaaaaaaaaaaaaa,sg-0bbbbbbbbbbbbbbbb",
        ExistingClusterName="shared",
    )
    service = stack.properties("Service")
    assert service["NetworkConfiguration"]["AwsvpcConfiguration"]["SecurityGroups"] == [
        "{TaskSecurityGroup}",
        "sg-0aaaaaaaaaaaaaaaa",
        "sg-0bbbbbbbbbbbbbbbb",
    ]
    assert service["Cluster"] == "shared"
    assert not stack.exists("Cluster")


def test_created_cluster_has_container_insights_for_the_task_count_alarm():
    settings = Stack().properties("Cluster")["ClusterSettings"]
    assert {"Name": "containerInsights", "Value": "enabled"} in settings


# --- the metrics port -----------------------------------------------------------------------
def _ingress(stack: Stack) -> list[dict[str, Any]]:
    rules = [r["Properties"] for r in stack.resources("AWS::EC2::SecurityGroupIngress").values()]
    assert "SecurityGroupIngress" not in stack.properties("TaskSecurityGroup")
    return rules


def test_metrics_port_opens_only_to_the_prometheus_group():
    (rule,) = _ingress(Stack())
    assert rule["GroupId"] == "{TaskSecurityGroup}"
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", "9100", "9100")
    assert rule["SourceSecurityGroupId"] == REQUIRED_VALUES["PrometheusSecurityGroupId"]
    assert "CidrIp" not in rule


def test_metrics_port_opens_only_to_the_prometheus_cidr():
    (rule,) = _ingress(Stack(PrometheusSecurityGroupId="", PrometheusCidr="10.20.0.0/16"))
    assert rule["CidrIp"] == "10.20.0.0/16"
    assert (rule["FromPort"], rule["ToPort"]) == ("9100", "9100")


@pytest.mark.parametrize(
    ("group", "cidr", "accepted"),
    [
        ("sg-0123456789abcdef0", "", True),
        ("", "10.20.0.0/16", True),
        ("sg-0123456789abcdef0", "10.20.0.0/16", True),
        ("", "", False),  # one source is required
        ("", "0.0.0.0/0", False),  # the world is not a source
    ],
)
def test_the_template_rules_require_one_metrics_source(group, cidr, accepted):
    stack = Stack(PrometheusSecurityGroupId=group, PrometheusCidr=cidr)
    assert stack.rules_hold() is accepted


def test_tasks_may_only_reach_https_out():
    egress = Stack().properties("TaskSecurityGroup")["SecurityGroupEgress"]
    assert [(e["IpProtocol"], e["FromPort"], e["ToPort"]) for e in egress] == [("tcp", 443, 443)]


# --- Cloud Map --------------------------------------------------------------------------------
def test_service_discovery_registers_a_and_srv_records_for_prometheus():
    stack = Stack()
    namespace = stack.properties("DiscoveryNamespace")
    assert namespace["Name"] == "drs-poller.local"
    discovery = stack.properties("DiscoveryService")
    assert discovery["Name"] == "drs-poller"
    assert discovery["NamespaceId"] == "{DiscoveryNamespace}"
    assert [r["Type"] for r in discovery["DnsConfig"]["DnsRecords"]] == ["A", "SRV"]
    (registry,) = stack.properties("Service")["ServiceRegistries"]
    assert registry == {
        "RegistryArn": "{DiscoveryService.Arn}",
        "ContainerName": CONTAINER,
        "ContainerPort": "9100",
    }


def test_service_discovery_can_use_an_existing_namespace_or_be_off():
    existing = Stack(ExistingNamespaceId="ns-abcdefghijklmnop")
    assert not existing.exists("DiscoveryNamespace")
    assert existing.properties("DiscoveryService")["NamespaceId"] == "ns-abcdefghijklmnop"
    off = Stack(EnableServiceDiscovery="false")
    assert not off.resources("AWS::ServiceDiscovery::Service")
    assert not off.resources("AWS::ServiceDiscovery::PrivateDnsNamespace")
    assert "ServiceRegistries" not in off.properties("Service")


# --- alarms -------------------------------------------------------------------------------------
ALARMS = ("TasksBelowDesiredAlarm", "ErrorLinesAlarm", "TaskRestartsAlarm")


def test_alarms_notify_the_topic_when_one_is_given():
    topic = "arn:aws:sns:us-east-1:123456789012:oncall"
    alarms = Stack(AlarmTopicArn=topic).resources("AWS::CloudWatch::Alarm")
    assert set(alarms) == set(ALARMS)
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [topic]
        assert alarm["Properties"]["OKActions"] == [topic]
    for alarm in Stack().resources("AWS::CloudWatch::Alarm").values():
        assert "AlarmActions" not in alarm["Properties"]


def test_task_count_alarm_compares_container_insights_running_and_desired():
    alarm = Stack().properties("TasksBelowDesiredAlarm")
    metrics = {m["Id"]: m for m in alarm["Metrics"]}
    assert metrics["missing"]["Expression"] == "desired - running"
    for metric_id, name in (("running", "RunningTaskCount"), ("desired", "DesiredTaskCount")):
        metric = metrics[metric_id]["MetricStat"]["Metric"]
        assert metric["Namespace"] == "ECS/ContainerInsights"
        assert metric["MetricName"] == name
        assert metric["Dimensions"] == [
            {"Name": "ClusterName", "Value": "{Cluster}"},
            {"Name": "ServiceName", "Value": "{Service.Name}"},
        ]
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
    assert alarm["TreatMissingData"] == "breaching"


def _json_log_line(emit: str) -> dict[str, Any]:
    """One line exactly as the daemon writes it (its own structlog configuration)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    out = io.StringIO()
    configure_logging(fmt="json", level="INFO", stream=out)
    try:
        getattr(structlog.get_logger("drs_poller.test"), emit)("drs-poller started")
    finally:  # leave logging as the other tests expect it
        structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(level)
    return json.loads(out.getvalue().strip().splitlines()[-1])


def test_metric_filters_match_the_fields_the_daemon_really_logs():
    """CloudWatch filter syntax cannot run here; the fields and values it names can be checked."""
    stack = Stack()
    filters = {
        f["Properties"]["MetricTransformations"][0]["MetricName"]: f["Properties"]["FilterPattern"]
        for f in stack.resources("AWS::Logs::MetricFilter").values()
    }
    assert filters == {
        "ErrorLogLines": '{ $.level = "error" || $.level = "critical" }',
        "TaskStarts": '{ $.event = "drs-poller started" }',
    }
    assert _json_log_line("error")["level"] == "error"
    assert _json_log_line("info")["event"] == "drs-poller started"
    daemon_source = (ROOT / "drs_poller" / "engine" / "daemon.py").read_text(encoding="utf-8")
    assert '"drs-poller started"' in daemon_source  # the event TaskStarts counts
    for alarm_id, metric in (
        ("ErrorLinesAlarm", "ErrorLogLines"),
        ("TaskRestartsAlarm", "TaskStarts"),
    ):
        alarm = stack.properties(alarm_id)
        assert alarm["MetricName"] == metric
        assert alarm["Namespace"] == "DrsPoller/drs-poller"
