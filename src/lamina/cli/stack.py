"""`lamina deploy --template`: a stack of the resources a transformed SAM template (sam.py) describes, applied to a
Lamina server through its AWS APIs (boto3 at the server's endpoint), in dependency order, with a rich progress display.

A stack owns what it created: functions and queues carry the tags `lamina:stack` and `lamina:logical-id` (AWS tags
them `aws:cloudformation:stack-name` and `...:logical-id`), a function's layers are named in its `lamina:layers`
tag, and event source mappings belong to the stack's functions. EventBridge rules and Scheduler schedules take no
tags Lamina reads back, so each is recorded on the stack functions it targets (`lamina:rule:LOGICAL` = `bus/name`,
`lamina:schedule:LOGICAL` = `group/name`) and goes with them. Deploying again updates them in place and removes the
ones the template no longer has; `--delete` removes them all."""

from __future__ import annotations

import contextlib
import io
import json
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lamina.cli.packaging import zip_directory
from lamina.cli.sam import PLACEHOLDER_BUCKET, Prepared, TemplateError

STACK_TAG = "lamina:stack"
LOGICAL_TAG = "lamina:logical-id"
LAYERS_TAG = "lamina:layers"
RULE_TAG = "lamina:rule:"          # + logical id -> "bus/name"
SCHEDULE_TAG = "lamina:schedule:"  # + logical id -> "group/name"
IMPLICIT_APIS = ("ServerlessRestApi", "ServerlessHttpApi")
PSEUDO = {"AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com", "AWS::NoValue": None}


@dataclass
class Made:
    """A resource as deployed: Ref's value and the attributes Fn::GetAtt reads."""

    ref: str
    attrs: dict[str, str] = field(default_factory=dict)


class Stack:
    def __init__(self, name: str, session: Any, endpoint: str, region: str, report: Callable[[str], None]) -> None:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,127}", name):
            raise TemplateError(f"Stack name {name!r}: letters, digits and hyphens, starting with a letter")
        self.name = name
        self.region = region
        self.report = report
        kw = {"endpoint_url": endpoint, "region_name": region}
        self.lam = session.client("lambda", **kw)
        self.sqs = session.client("sqs", **kw)
        self.events = session.client("events", **kw)
        self.scheduler = session.client("scheduler", **kw)
        self.account = "000000000000"
        self.made: dict[str, Made] = {}
        self.parameters: dict[str, str] = {}
        self.function_layers: dict[str, list[str]] = {}   # function name -> its stack layers' names
        self.recorded: set[str] = set()   # "rule:bus/name" and "schedule:group/name" the stack's functions record
        self.recorders: dict[str, set[str]] = {}   # record tag key -> ARNs of the functions that record it now

    # ------------------------------------------------------------------ intrinsic functions

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                return self._ref(arg)
            if key == "Fn::GetAtt":
                logical, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                return self._getatt(logical, attr)
            if key == "Fn::Sub":
                text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))
                return re.sub(r"\$\{([^}!][^}]*)\}", lambda m: str(self._sub_var(m.group(1), extra)), text)
            if key == "Fn::Join":
                sep, items = arg
                return sep.join(str(x) for x in self.resolve(items))
            if key == "Fn::Select":
                index, items = self.resolve(arg)
                return items[int(index)]
            if key == "Fn::Split":
                sep, text = self.resolve(arg)
                return text.split(sep)
            if key.startswith("Fn::"):
                raise TemplateError(f"{key} is not supported by lamina deploy")
        return {k: self.resolve(v) for k, v in value.items()}

    def _sub_var(self, name: str, extra: dict) -> Any:
        if name in extra:
            return extra[name]
        if "." in name and not name.startswith("AWS::"):
            logical, attr = name.split(".", 1)
            return self._getatt(logical, attr)
        return self._ref(name)

    def _ref(self, name: str) -> Any:
        if name in self.parameters:
            return self.parameters[name]
        if name == "AWS::Region":
            return self.region
        if name == "AWS::AccountId":
            return self.account
        if name == "AWS::StackName":
            return self.name
        if name in PSEUDO:
            return PSEUDO[name]
        if name in IMPLICIT_APIS:
            return name   # the implicit API of Api/HttpApi events: outputs() shows the function URL instead
        if name not in self.made:
            raise TemplateError(f"Ref {name}: no such parameter or resource (or not deployed yet)")
        return self.made[name].ref

    def _getatt(self, logical: str, attr: str) -> Any:
        made = self.made.get(logical)
        if made is None or attr not in made.attrs:
            raise TemplateError(f"Fn::GetAtt {logical}.{attr}: not available in Lamina")
        return made.attrs[attr]

    # ------------------------------------------------------------------ plan

    @staticmethod
    def order(resources: dict[str, dict]) -> list[str]:
        """Logical ids with each resource after those it refers to (Ref, GetAtt, Sub, DependsOn)."""
        deps = {k: {d for d in _refs(v) if d in resources and d != k} for k, v in resources.items()}
        out: list[str] = []
        seen: set[str] = set()

        def visit(k: str, path: tuple[str, ...]) -> None:
            if k in seen:
                return
            if k in path:
                raise TemplateError(f"Circular dependency: {' -> '.join((*path, k))}")
            for d in sorted(deps[k]):
                visit(d, (*path, k))
            seen.add(k)
            out.append(k)

        for k in resources:
            visit(k, ())
        return out

    # ------------------------------------------------------------------ apply

    def deploy(self, cfn: dict, prepared: Prepared, parameters: dict[str, str],
               progress: Callable[[str, str], None]) -> dict[str, str]:
        """Create or update every resource; remove the stack's resources the template no longer has. Returns the
        template's outputs, resolved."""
        declared = cfn.get("Parameters") or {}
        for key, spec in declared.items():
            if key in parameters:
                self.parameters[key] = parameters[key]
            elif "Default" in spec:
                self.parameters[key] = str(spec["Default"])
            else:
                raise TemplateError(f"Parameter {key} has no default: pass --parameter {key}=VALUE")
        unknown = set(parameters) - set(declared)
        if unknown:
            raise TemplateError(f"Unknown parameter(s): {', '.join(sorted(unknown))}")
        resources = cfn["Resources"]
        self.recorded = {_recorded_key(key, value) for _logical, tags, _arn in self.owned_functions().values()
                         for key, value in tags.items() if key.startswith((RULE_TAG, SCHEDULE_TAG))}
        for logical in self.order(resources):
            res = resources[logical]
            progress(logical, res["Type"])
            self._apply(logical, res["Type"], self.resolve(res.get("Properties") or {}), prepared)
        self._prune(resources)
        return self.outputs(cfn, prepared)

    def _apply(self, logical: str, kind: str, props: dict, prepared: Prepared) -> None:
        handler = getattr(self, "_" + kind.replace("AWS::", "").replace("::", "_").lower())
        self.made[logical] = handler(logical, props, prepared)

    def _iam_role(self, logical: str, props: dict, prepared: Prepared) -> Made:
        name = props.get("RoleName") or f"{self.name}-{logical}"
        arn = f"arn:aws:iam::{self.account}:role/{name}"
        self.report(f"{logical}: execution role recorded as {arn} (Lamina has no IAM: its policies are not enforced)")
        return Made(name, {"Arn": arn, "RoleId": name})

    def _code(self, code: dict, prepared: Prepared) -> bytes:
        if "ZipFile" in code:   # inline code (InlineCode): a zip with index.py, as CloudFormation makes one
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w") as zf:
                zf.writestr("index.py", code["ZipFile"])
            return buf.getvalue()
        if code.get("S3Bucket") != PLACEHOLDER_BUCKET or code.get("S3Key") not in prepared.code:
            raise TemplateError("Code in S3 is not supported (Lamina has no S3): use a local CodeUri")
        path = prepared.code[code["S3Key"]]
        return path.read_bytes() if path.is_file() else zip_directory(path)

    def _lambda_function(self, logical: str, props: dict, prepared: Prepared) -> Made:
        name = props.get("FunctionName") or f"{self.name}-{logical}"[:64]
        code = self._code(props["Code"], prepared)
        config = {k: props[k] for k in ("Handler", "Runtime", "MemorySize", "Timeout", "Environment", "Description",
                                         "Architectures", "EphemeralStorage", "TracingConfig", "LoggingConfig",
                                         "DeadLetterConfig", "Role", "Layers")
                  if k in props}
        config.setdefault("Role", f"arn:aws:iam::{self.account}:role/lamina")
        tags = {t["Key"]: t["Value"] for t in props.get("Tags") or []}
        tags.update({STACK_TAG: self.name, LOGICAL_TAG: logical})
        layer_names = [m.attrs["LayerName"] for m in self.made.values()
                       if "LayerName" in m.attrs and m.ref in (props.get("Layers") or [])]
        if layer_names:
            tags[LAYERS_TAG] = ",".join(layer_names)
        try:
            existing = self.lam.get_function(FunctionName=name)
        except self.lam.exceptions.ResourceNotFoundException:
            existing = None
        if existing is None:
            resp = self.lam.create_function(FunctionName=name, Code={"ZipFile": code}, Tags=tags, **config)
            self.lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1})
            self.report(f"{logical}: created function {name}")
        else:
            owner = (existing.get("Tags") or {}).get(STACK_TAG)
            if owner != self.name:
                raise TemplateError(f"{logical}: function {name} exists and belongs to "
                                    f"{'stack ' + owner if owner else 'no stack'}, not {self.name}")
            self.lam.update_function_code(FunctionName=name, ZipFile=code)
            self._wait_updated(name)
            resp = self.lam.update_function_configuration(FunctionName=name, **config)
            self._wait_updated(name)
            self.lam.tag_resource(Resource=resp["FunctionArn"], Tags=tags)
            self.report(f"{logical}: updated function {name}")
        if "ReservedConcurrentExecutions" in props:
            self.lam.put_function_concurrency(FunctionName=name,
                                              ReservedConcurrentExecutions=int(props["ReservedConcurrentExecutions"]))
        elif existing is not None:
            self.lam.delete_function_concurrency(FunctionName=name)
        arn = resp["FunctionArn"]
        self.account = arn.split(":")[4]
        return Made(name, {"Arn": arn})

    def _wait_updated(self, name: str) -> None:
        self.lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1})

    def _lambda_version(self, logical: str, props: dict, prepared: Prepared) -> Made:
        resp = self.lam.publish_version(FunctionName=props["FunctionName"], Description=props.get("Description", ""))
        self.report(f"{logical}: version {resp['Version']} of {props['FunctionName']}")
        return Made(resp["FunctionArn"], {"Version": resp["Version"], "FunctionArn": resp["FunctionArn"]})

    def _lambda_alias(self, logical: str, props: dict, prepared: Prepared) -> Made:
        fn, alias = props["FunctionName"], props["Name"]
        kw: dict[str, Any] = {"FunctionVersion": props["FunctionVersion"], "Description": props.get("Description", "")}
        if props.get("RoutingConfig"):
            kw["RoutingConfig"] = props["RoutingConfig"]
        try:
            resp = self.lam.update_alias(FunctionName=fn, Name=alias, **kw)
        except self.lam.exceptions.ResourceNotFoundException:
            resp = self.lam.create_alias(FunctionName=fn, Name=alias, **kw)
        pc = (props.get("ProvisionedConcurrencyConfig") or {}).get("ProvisionedConcurrentExecutions")
        if pc:
            self.lam.put_provisioned_concurrency_config(FunctionName=fn, Qualifier=alias,
                                                        ProvisionedConcurrentExecutions=int(pc))
        else:
            with contextlib.suppress(self.lam.exceptions.ResourceNotFoundException):
                self.lam.delete_provisioned_concurrency_config(FunctionName=fn, Qualifier=alias)
        self.report(f"{logical}: alias {alias} -> version {props['FunctionVersion']}")
        return Made(resp["AliasArn"], {})

    @staticmethod
    def _split(target: str) -> tuple[str, str | None]:
        """A function name or (qualified) ARN as (function, qualifier)."""
        if target.startswith("arn:"):
            parts = target.split(":")
            return parts[6], (parts[7] if len(parts) > 7 else None)
        fn, _, qualifier = target.partition(":")
        return fn, qualifier or None

    def _lambda_url(self, logical: str, props: dict, prepared: Prepared) -> Made:
        fn, qualifier = self._split(props["TargetFunctionArn"])
        if props.get("Qualifier"):
            qualifier = props["Qualifier"]
        kw = {k: props[k] for k in ("AuthType", "Cors", "InvokeMode") if k in props}
        q = {"Qualifier": qualifier} if qualifier else {}
        try:
            resp = self.lam.update_function_url_config(FunctionName=fn, **q, **kw)
        except self.lam.exceptions.ResourceNotFoundException:
            resp = self.lam.create_function_url_config(FunctionName=fn, **q, **kw)
        self.report(f"{logical}: function URL {resp['FunctionUrl']}")
        return Made(resp["FunctionArn"], {"FunctionUrl": resp["FunctionUrl"], "FunctionArn": resp["FunctionArn"]})

    def _lambda_permission(self, logical: str, props: dict, prepared: Prepared) -> Made:
        fn, qualifier = self._split(props["FunctionName"])
        sid = f"{self.name}-{logical}"[:100]
        kw = {k: props[k] for k in ("Action", "Principal", "SourceArn", "SourceAccount", "FunctionUrlAuthType",
                                     "PrincipalOrgID", "EventSourceToken") if k in props}
        q = {"Qualifier": qualifier} if qualifier else {}
        with contextlib.suppress(self.lam.exceptions.ResourceNotFoundException):
            self.lam.remove_permission(FunctionName=fn, StatementId=sid, **q)
        self.lam.add_permission(FunctionName=fn, StatementId=sid, **q, **kw)
        return Made(sid, {})

    def _lambda_layerversion(self, logical: str, props: dict, prepared: Prepared) -> Made:
        name = props.get("LayerName") or f"{self.name}-{logical}"
        kw = {k: props[k] for k in ("Description", "CompatibleRuntimes", "CompatibleArchitectures", "LicenseInfo")
              if k in props}
        resp = self.lam.publish_layer_version(LayerName=name, Content={"ZipFile": self._code(props["Content"],
                                                                                                  prepared)}, **kw)
        self.report(f"{logical}: layer {name} version {resp['Version']}")
        return Made(resp["LayerVersionArn"], {"LayerName": name, "LayerVersionArn": resp["LayerVersionArn"]})

    def _lambda_eventsourcemapping(self, logical: str, props: dict, prepared: Prepared) -> Made:
        kw = {k: props[k] for k in ("BatchSize", "Enabled", "FunctionResponseTypes", "MaximumBatchingWindowInSeconds",
                                     "ScalingConfig", "FilterCriteria") if k in props}
        source, target = props["EventSourceArn"], props["FunctionName"]
        fn, _ = self._split(target)
        current = [m for m in self.lam.list_event_source_mappings(FunctionName=fn)["EventSourceMappings"]
                   if m["EventSourceArn"] == source]
        if current:
            resp = self.lam.update_event_source_mapping(UUID=current[0]["UUID"], FunctionName=target, **kw)
        else:
            resp = self.lam.create_event_source_mapping(EventSourceArn=source, FunctionName=target, **kw)
        self.report(f"{logical}: {source.rsplit(':', 1)[-1]} -> {target.split(':function:')[-1]}")
        return Made(resp["UUID"], {})

    def _sqs_queue(self, logical: str, props: dict, prepared: Prepared) -> Made:
        fifo = str(props.get("FifoQueue", "")).lower() == "true"
        name = props.get("QueueName") or f"{self.name}-{logical}"[: 75 if fifo else 80] + (".fifo" if fifo else "")
        attrs = {k: _attribute(v) for k, v in props.items() if k not in ("QueueName", "Tags")}
        tags = {t["Key"]: t["Value"] for t in props.get("Tags") or []}
        tags.update({STACK_TAG: self.name, LOGICAL_TAG: logical})
        try:
            url = self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
            owner = self.sqs.list_queue_tags(QueueUrl=url).get("Tags", {}).get(STACK_TAG)
            if owner != self.name:
                raise TemplateError(f"{logical}: queue {name} exists and belongs to "
                                    f"{'stack ' + owner if owner else 'no stack'}, not {self.name}")
            if attrs:
                self.sqs.set_queue_attributes(QueueUrl=url, Attributes=attrs)
            self.report(f"{logical}: updated queue {name}")
        except self.sqs.exceptions.QueueDoesNotExist:
            url = self.sqs.create_queue(QueueName=name, Attributes=attrs, tags=tags)["QueueUrl"]
            self.report(f"{logical}: created queue {name}")
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return Made(url, {"Arn": arn, "QueueName": name, "QueueUrl": url})

    def _target_functions(self, logical: str, targets: list[dict]) -> list[str]:
        """ARNs of the stack's functions among a rule's or schedule's targets (sam.prepare made sure there is one)."""
        ours = {m.attrs["Arn"].split(":")[6]: m.attrs["Arn"] for m in self.made.values()
                if m.attrs.get("Arn", "").count(":") >= 6 and ":function:" in m.attrs["Arn"]}
        found = [ours[self._split(t.get("Arn", ""))[0]] for t in targets
                 if t.get("Arn", "").startswith("arn:") and self._split(t["Arn"])[0] in ours]
        if not found:
            raise TemplateError(f"{logical}: no target is a function of this stack")
        return found

    def _record(self, functions: list[str], key: str, value: str) -> None:
        self.recorders[key] = set(functions)
        for arn in functions:
            self.lam.tag_resource(Resource=arn, Tags={key: value})

    def _check_owner(self, logical: str, what: str, key: str) -> None:
        if key not in self.recorded:
            raise TemplateError(f"{logical}: {what} exists and belongs to no stack's functions, not {self.name}")

    def _events_rule(self, logical: str, props: dict, prepared: Prepared) -> Made:
        name = props.get("Name") or f"{self.name}-{logical}"[:64]
        bus = str(props.get("EventBusName") or "default").rsplit("/", 1)[-1]
        targets = [{k: v for k, v in t.items() if k in RULE_TARGET_KEYS} for t in props.get("Targets") or []]
        functions = self._target_functions(logical, targets)
        try:
            self.events.describe_rule(Name=name, EventBusName=bus)
            self._check_owner(logical, f"rule {name} on bus {bus}", f"rule:{bus}/{name}")
            existed = True
        except self.events.exceptions.ResourceNotFoundException:
            existed = False
        kw = {k: props[k] for k in ("ScheduleExpression", "State", "Description", "RoleArn") if k in props}
        if "EventPattern" in props:
            pattern = props["EventPattern"]
            kw["EventPattern"] = pattern if isinstance(pattern, str) else json.dumps(pattern)
        arn = self.events.put_rule(Name=name, EventBusName=bus, **kw)["RuleArn"]
        current = {t["Id"] for t in self.events.list_targets_by_rule(Rule=name, EventBusName=bus)["Targets"]}
        stale = sorted(current - {t["Id"] for t in targets})
        if stale:
            self.events.remove_targets(Rule=name, EventBusName=bus, Ids=stale)
        failed = self.events.put_targets(Rule=name, EventBusName=bus, Targets=targets).get("FailedEntries") or []
        if failed:
            raise TemplateError(f"{logical}: rule {name}: " + "; ".join(f"target {f.get('TargetId')}: "
                                                                         f"{f.get('ErrorMessage')}" for f in failed))
        self._record(functions, RULE_TAG + logical, f"{bus}/{name}")
        self.report(f"{logical}: {'updated' if existed else 'created'} rule {name}"
                    f"{'' if bus == 'default' else ' on bus ' + bus}")
        return Made(name if bus == "default" else f"{bus}|{name}", {"Arn": arn})

    def _scheduler_schedule(self, logical: str, props: dict, prepared: Prepared) -> Made:
        name = props.get("Name") or f"{self.name}-{logical}"[:64]
        group = props.get("GroupName") or "default"
        target = props.get("Target") or {}
        functions = self._target_functions(logical, [target])
        kw = {k: props[k] for k in ("ScheduleExpression", "ScheduleExpressionTimezone", "StartDate", "EndDate",
                                     "FlexibleTimeWindow", "State", "Description", "KmsKeyArn", "Target")
              if k in props}
        try:
            self.scheduler.get_schedule(Name=name, GroupName=group)
            self._check_owner(logical, f"schedule {name} in group {group}", f"schedule:{group}/{name}")
            arn = self.scheduler.update_schedule(Name=name, GroupName=group, **kw)["ScheduleArn"]
            verb = "updated"
        except self.scheduler.exceptions.ResourceNotFoundException:
            arn = self.scheduler.create_schedule(Name=name, GroupName=group, **kw)["ScheduleArn"]
            verb = "created"
        self._record(functions, SCHEDULE_TAG + logical, f"{group}/{name}")
        self.report(f"{logical}: {verb} schedule {name} ({props.get('ScheduleExpression')})")
        return Made(name, {"Arn": arn})

    def _delete_recorded(self, arn: str, tags: dict, keep: dict | None = None) -> None:
        """Remove the rules and schedules a function records (those whose logical id is not in `keep`); a record of a
        rule or schedule kept that no longer targets the function is dropped."""
        gone = []
        for key, value in tags.items():
            if not key.startswith((RULE_TAG, SCHEDULE_TAG)):
                continue
            if keep is not None and key.split(":", 2)[2] in keep:
                if arn not in self.recorders.get(key, {arn}):
                    gone.append(key)
                continue
            where, _, name = value.partition("/")
            if key.startswith(RULE_TAG):
                with contextlib.suppress(self.events.exceptions.ResourceNotFoundException):
                    ids = [t["Id"] for t in self.events.list_targets_by_rule(Rule=name, EventBusName=where)["Targets"]]
                    if ids:
                        self.events.remove_targets(Rule=name, EventBusName=where, Ids=ids)
                    self.events.delete_rule(Name=name, EventBusName=where)
                self.report(f"{key.split(':', 2)[2]}: deleted rule {name}")
            else:
                with contextlib.suppress(self.scheduler.exceptions.ResourceNotFoundException):
                    self.scheduler.delete_schedule(Name=name, GroupName=where)
                self.report(f"{key.split(':', 2)[2]}: deleted schedule {name}")
            gone.append(key)
        if gone and keep is not None:
            self.lam.untag_resource(Resource=arn, TagKeys=gone)

    # ------------------------------------------------------------------ ownership

    def owned_functions(self) -> dict[str, tuple[str, dict, str]]:
        """The stack's functions: name -> (logical id, tags, ARN)."""
        out = {}
        for page in self.lam.get_paginator("list_functions").paginate():
            for fn in page["Functions"]:
                tags = self.lam.list_tags(Resource=fn["FunctionArn"]).get("Tags", {})
                if tags.get(STACK_TAG) == self.name:
                    out[fn["FunctionName"]] = (tags.get(LOGICAL_TAG, ""), tags, fn["FunctionArn"])
        return out

    def owned_queues(self) -> dict[str, str]:
        """The stack's queues: URL -> logical id."""
        out = {}
        for url in self.sqs.list_queues().get("QueueUrls", []):
            tags = self.sqs.list_queue_tags(QueueUrl=url).get("Tags", {})
            if tags.get(STACK_TAG) == self.name:
                out[url] = tags.get(LOGICAL_TAG, "")
        return out

    def _prune(self, resources: dict) -> None:
        for name, (logical, tags, arn) in self.owned_functions().items():
            if logical not in resources:
                self._delete_function(name, tags, arn)
            else:
                self._delete_recorded(arn, tags, keep=resources)
        for url, logical in self.owned_queues().items():
            if logical not in resources:
                self.sqs.delete_queue(QueueUrl=url)
                self.report(f"{logical}: deleted queue (no longer in the template)")

    def _delete_function(self, name: str, tags: dict, arn: str) -> None:
        self._delete_recorded(arn, tags)
        for m in self.lam.list_event_source_mappings(FunctionName=name)["EventSourceMappings"]:
            self.lam.delete_event_source_mapping(UUID=m["UUID"])
        self.lam.delete_function(FunctionName=name)
        for layer in filter(None, tags.get(LAYERS_TAG, "").split(",")):
            for v in self.lam.list_layer_versions(LayerName=layer).get("LayerVersions", []):
                self.lam.delete_layer_version(LayerName=layer, VersionNumber=v["Version"])
        self.report(f"{tags.get(LOGICAL_TAG, name)}: deleted function {name}")

    def delete(self) -> int:
        """Remove everything the stack owns; how many functions and queues."""
        functions = self.owned_functions()
        for name, (_logical, tags, arn) in functions.items():
            self._delete_function(name, tags, arn)
        queues = self.owned_queues()
        for url, logical in queues.items():
            self.sqs.delete_queue(QueueUrl=url)
            self.report(f"{logical}: deleted queue {url.rsplit('/', 1)[-1]}")
        return len(functions) + len(queues)

    # ------------------------------------------------------------------ outputs

    def outputs(self, cfn: dict, prepared: Prepared) -> dict[str, str]:
        out = {}
        for key, spec in (cfn.get("Outputs") or {}).items():
            value = spec.get("Value")
            text = _implicit_api_url(value, prepared, self)
            out[key] = text if text is not None else str(self.resolve(value))
        return out


def _implicit_api_url(value: Any, prepared: Prepared, stack: Stack) -> str | None:
    """An output naming the implicit API (`https://${ServerlessRestApi}.execute-api...amazonaws.com/Prod/hello/`):
    the function URL of the function with the API event, with the path after the stage."""
    if isinstance(value, dict) and value.get("Ref") in IMPLICIT_APIS:   # the API's id: its base URL
        value = {"Fn::Sub": "https://${" + value["Ref"] + "}.execute-api.amazonaws.com/"}
    sub = value.get("Fn::Sub") if isinstance(value, dict) else None
    text = sub if isinstance(sub, str) else (sub[0] if isinstance(sub, list) else None)
    if text is None or not any("${" + api in text for api in IMPLICIT_APIS):
        return None
    urls = [m.attrs["FunctionUrl"] for logical, m in stack.made.items() if "FunctionUrl" in m.attrs
            and any(logical.startswith(fn) for fn in prepared.api_paths)]
    if not urls:
        return None
    path = re.sub(r"^.*?amazonaws\.com(/[^/]*)?", "", text)   # drop scheme, host and stage
    return urls[0].rstrip("/") + (path if path.startswith("/") else "/" + path)


RULE_TARGET_KEYS = ("Id", "Arn", "Input", "InputPath", "InputTransformer", "RetryPolicy", "DeadLetterConfig",
                    "RoleArn")


def _recorded_key(tag: str, value: str) -> str:
    """A function's record of a rule or schedule (tag key and value) as the key `self.recorded` holds."""
    return ("rule:" if tag.startswith(RULE_TAG) else "schedule:") + value


def _attribute(value: Any) -> str:
    """An AWS::SQS::Queue property as the SQS attribute string (RedrivePolicy is JSON, booleans lower case)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def _refs(value: Any) -> set[str]:
    out: set[str] = set()
    if isinstance(value, list):
        for v in value:
            out |= _refs(v)
    elif isinstance(value, dict):
        for k, v in value.items():
            if k == "Ref" and isinstance(v, str):
                out.add(v)
            elif k == "Fn::GetAtt":
                out.add((v if isinstance(v, list) else v.split("."))[0])
            elif k == "Fn::Sub":
                text = v if isinstance(v, str) else v[0]
                out |= {m.split(".")[0] for m in re.findall(r"\$\{([^}!][^}]*)\}", text)}
                if not isinstance(v, str):
                    out |= _refs(v[1])
            elif k == "DependsOn":
                out |= {v} if isinstance(v, str) else set(v)
            else:
                out |= _refs(v)
    return out


def parse_parameters(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise TemplateError(f"--parameter {item!r}: use KEY=VALUE")
        out[key] = value
    return out

