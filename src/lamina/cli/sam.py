"""AWS SAM templates for `lamina deploy --template`: read (YAML with CloudFormation's short-form tags), checked against
what Lamina has, and transformed into CloudFormation by aws-sam-translator (AWS's own library).

Before the transform, local code (CodeUri, ContentUri: a directory or a .zip) is swapped for placeholder S3 URIs the
translator accepts (`sam deploy` uploads it instead), and API events (Api, HttpApi) become a function URL: Lamina has
no API Gateway, and a function URL answers every path and method of the function (the documented difference).
Schedule, ScheduleV2 and EventBridgeRule events (and AWS::Events::Rule, AWS::Scheduler::Schedule resources) become
Lamina's EventBridge rules and schedules; their targets must be the template's functions (the stack records them on
those functions, as rules and schedules take no tags Lamina could read back).
Everything Lamina does not have is collected and refused in one error, never skipped."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SAM_TRANSFORM = "AWS::Serverless-2016-10-31"
PLACEHOLDER_BUCKET = "lamina-local-code"

# Resource types a template may hold (before and after the transform) and what Lamina does with them.
SAM_TYPES = {"AWS::Serverless::Function", "AWS::Serverless::LayerVersion"}
CFN_TYPES = {
    "AWS::Lambda::Function", "AWS::Lambda::Version", "AWS::Lambda::Alias", "AWS::Lambda::Url",
    "AWS::Lambda::Permission", "AWS::Lambda::EventSourceMapping", "AWS::Lambda::LayerVersion",
    "AWS::SQS::Queue", "AWS::Events::Rule", "AWS::Scheduler::Schedule",
    # SAM makes an execution role per function: Lamina records its ARN (it has no IAM to enforce it).
    "AWS::IAM::Role",
}
# Function event types: SQS becomes an event source mapping; Api/HttpApi a function URL; Schedule, EventBridgeRule
# (CloudWatchEvent is its old name) an EventBridge rule; ScheduleV2 an EventBridge Scheduler schedule.
EVENT_TYPES = {"SQS", "Api", "HttpApi", "Schedule", "ScheduleV2", "EventBridgeRule", "CloudWatchEvent"}
FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")
# Resources whose targets must be the template's functions, and where their targets are.
TARGETED = {"AWS::Events::Rule": "Targets", "AWS::Scheduler::Schedule": "Target"}


class TemplateError(Exception):
    """The template cannot be deployed to Lamina; the message lists every reason."""


@dataclass
class Prepared:
    template: dict                       # ready for the translator
    code: dict[str, Path] = field(default_factory=dict)   # placeholder S3 key -> local directory or zip
    api_paths: dict[str, list[str]] = field(default_factory=dict)   # function logical id -> API event paths


def load(path: Path) -> dict:
    from samtranslator.yaml_helper import yaml_parse

    try:
        doc = yaml_parse(path.read_text())
    except Exception as exc:  # YAML and JSON syntax errors alike
        raise TemplateError(f"{path}: not a valid template: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("Resources"), dict):
        raise TemplateError(f"{path}: a template needs a Resources section")
    return doc


def prepare(template: dict, base: Path) -> Prepared:
    """Check the template against what Lamina has and make it ready for the translator."""
    t = copy.deepcopy(template)
    out = Prepared(t)
    problems: list[str] = []
    transforms = t.get("Transform", [])
    transforms = [transforms] if isinstance(transforms, str) else list(transforms)
    for other in (x for x in transforms if x != SAM_TRANSFORM):
        problems.append(f"Transform {other}: Lamina applies only {SAM_TRANSFORM}")
    if t.get("Conditions"):
        problems.append("Conditions: Lamina deploys templates without conditions")
    globals_fn = (t.get("Globals") or {}).get("Function") or {}
    for logical, res in t["Resources"].items():
        kind = res.get("Type", "") if isinstance(res, dict) else ""
        props = res.get("Properties") or {} if isinstance(res, dict) else {}
        if isinstance(res, dict) and res.get("Condition"):
            problems.append(f"{logical}: Condition is not supported")
        if kind in TARGETED:
            _targets(logical, kind, props, t["Resources"], problems)
        elif kind == "AWS::Serverless::Function":
            _function(logical, props, globals_fn, base, out, problems)
        elif kind == "AWS::Serverless::LayerVersion":
            uri = props.get("ContentUri")
            key = _local_code(logical, "ContentUri", uri, base, out, problems)
            if key is not None:
                props["ContentUri"] = f"s3://{PLACEHOLDER_BUCKET}/{key}"
        elif kind not in SAM_TYPES and kind not in CFN_TYPES:
            problems.append(f"{logical} ({kind or 'no Type'}): Lamina has no such resource")
    if problems:
        raise TemplateError("Lamina cannot deploy this template:\n" + "\n".join(f"  - {p}" for p in problems))
    return out


def _function(logical: str, props: dict, globals_fn: dict, base: Path, out: Prepared, problems: list[str]) -> None:
    if (props.get("PackageType") or globals_fn.get("PackageType")) == "Image":
        problems.append(f"{logical}: container image functions (PackageType: Image) are not in Lamina")
        return
    if "InlineCode" not in props:
        uri = props.get("CodeUri", globals_fn.get("CodeUri"))
        key = _local_code(logical, "CodeUri", uri, base, out, problems)
        if key is not None:
            props["CodeUri"] = f"s3://{PLACEHOLDER_BUCKET}/{key}"
    events = props.get("Events") or {}
    for name, event in list(events.items()):
        kind = (event or {}).get("Type", "")
        if kind not in EVENT_TYPES:
            problems.append(f"{logical}.Events.{name} ({kind}): Lamina has no such event source")
        elif kind in ("Api", "HttpApi"):
            path = ((event.get("Properties") or {}).get("Path")) or "/"
            out.api_paths.setdefault(logical, []).append(path)
            del events[name]
    if logical in out.api_paths and "FunctionUrlConfig" not in props:
        props["FunctionUrlConfig"] = {"AuthType": "NONE"}
    if not events:
        props.pop("Events", None)


def _targets(logical: str, kind: str, props: dict, resources: dict, problems: list[str]) -> None:
    """A rule's or schedule's targets must be functions of the template (`!GetAtt Fn.Arn`, `!Ref` an alias or
    version of one): the stack records the rule or schedule on them, so it can update and remove it later."""
    targets = props.get(TARGETED[kind])
    targets = targets if isinstance(targets, list) else [targets] if targets else []
    if not targets:
        problems.append(f"{logical} ({kind}): Lamina deploys rules and schedules with targets only")
    for target in targets:
        arn = (target or {}).get("Arn") if isinstance(target, dict) else None
        if _function_of(arn, resources) is None:
            shown = (target or {}).get("Id", "Target") if isinstance(target, dict) else "Target"
            problems.append(f"{logical} ({kind}): target {shown} is not a function of this template (Lamina applies "
                            "rules and schedules whose targets are the template's functions)")


def _function_of(arn: Any, resources: dict) -> str | None:
    """The logical id of the template function an intrinsic ARN names (`!GetAtt Fn.Arn`, or `!Ref` an alias or
    version of it), if it names one."""
    if not isinstance(arn, dict) or len(arn) != 1:
        return None
    (key, arg), = arn.items()
    if key == "Fn::GetAtt":
        logical, attr = arg if isinstance(arg, list) else str(arg).split(".", 1)
        if attr == "Arn" and (resources.get(logical) or {}).get("Type") in FUNCTION_TYPES:
            return str(logical)
    elif key == "Ref" and isinstance(arg, str):
        res = resources.get(arg) or {}
        if res.get("Type") in ("AWS::Lambda::Alias", "AWS::Lambda::Version"):
            fn = (res.get("Properties") or {}).get("FunctionName")
            if isinstance(fn, dict) and fn.get("Ref") in resources:
                return _function_of({"Fn::GetAtt": [fn["Ref"], "Arn"]}, resources)
            return _function_of(fn, resources)
    return None


def _local_code(logical: str, prop: str, uri: Any, base: Path, out: Prepared, problems: list[str]) -> str | None:
    if uri is None:
        problems.append(f"{logical}: {prop} is required (a directory or .zip beside the template)")
        return None
    if not isinstance(uri, str) or uri.startswith("s3://"):
        problems.append(f"{logical}: {prop} must be a local directory or .zip (Lamina has no S3)")
        return None
    path = (base / uri).resolve()
    if not path.exists():
        problems.append(f"{logical}: {prop} {uri} does not exist (looked in {path})")
        return None
    key = f"{logical}.zip"
    out.code[key] = path
    return key


def translate(prepared: Prepared, parameters: dict[str, str], region: str) -> dict:
    """The CloudFormation template aws-sam-translator makes of the SAM template."""
    from samtranslator.model.exceptions import InvalidDocumentException
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:
        # Policies name IAM managed policies; Lamina has no IAM, so their ARNs are not looked up.
        def load(self) -> dict:
            return {}

    os.environ.setdefault("AWS_DEFAULT_REGION", region)
    try:
        return transform(prepared.template, parameters, NoManagedPolicies())
    except InvalidDocumentException as exc:
        causes = "\n".join(f"  - {c.message}" for c in exc.causes) or f"  - {exc}"
        raise TemplateError(f"The SAM transform refused the template:\n{causes}") from None
