"""The function registry (FunctionService): create, update, delete and look up functions; Pending → Active.

Configurations live in memory (the invoke path reads them) and in SQLite (they survive a
restart). A create or update returns at once with State Pending / LastUpdateStatus InProgress;
a background activation unpacks the code and initialises a first environment — Lamina's
snapshot — and then marks the function Active (or Failed, with the reason), so boto3's waiters
and tools built on them (Terraform, CDK) behave as they do against AWS.

A function is its $LATEST plus published versions ("1", "2", ...: immutable snapshots of
$LATEST's code and configuration, each run by its own pool in the dispatcher) and aliases (a
name for a version, optionally sending a weighted share of invocations to a second version).
Resolving a qualifier (`get`, `resolve`, `pick`) and the spec the dispatcher runs a version by are here,
for every front end; the version and alias operations are in versions.py. The Lambda API's routes over
this service are api/lambda_api.py.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import hashlib
import json
import logging
import os
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from lamina.config import Settings
from lamina.dispatch.dispatcher import Dispatcher
from lamina.dispatch.environment import InitFailure
from lamina.dispatch.spec import FunctionSpec, pool_key
from lamina.functions import validation as v
from lamina.functions.code import code_sha256_b64, decode_zip, layers_dir, unpack, unpack_layers
from lamina.functions.errors import AwsError, not_found
from lamina.functions.layers import LayerService
from lamina.functions.names import (
    FUNCTION_NAME,
    NAMESPACED,
    FunctionRef,
    NameShape,
    parse_function_name,
    resolve_qualifier,
    set_home,
)
from lamina.functions.paging import decode_marker, encode_marker
from lamina.functions.runtime_sets import runtime_version_arn
from lamina.net.errors import NetError
from lamina.net.service import NetworkService
from lamina.store.blobs import CodeStore
from lamina.store.db import Database
from lamina.store.functions import FunctionRepo
from lamina.store.logs import LogStore
from lamina.store.versions import AliasRepo, AliasRow, VersionRepo, VersionRow

if TYPE_CHECKING:
    from lamina.functions.async_queue import EventSink

log = logging.getLogger("lamina.functions")

LATEST = "$LATEST"
DEFAULT_TIMEOUT = 3
DEFAULT_MEMORY = 128
STATUS_KEYS = ("State", "StateReason", "StateReasonCode", "LastUpdateStatus", "LastUpdateStatusReason",
               "LastUpdateStatusReasonCode")
# What ListFunctions and ListVersionsByFunction leave out of each configuration, as AWS lists them.
LISTING_OMITS = frozenset((*STATUS_KEYS, "RuntimeVersionConfig"))
# Not part of what a version snapshots: publishing unchanged code and configuration returns the
# newest version instead of a new one (as on AWS), whatever these say.
_VOLATILE_KEYS = {"FunctionArn", "Version", "RevisionId", "LastModified", *STATUS_KEYS}


def _timestamp() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}+0000"


class CodeSigningHook(Protocol):
    """What CreateFunction needs of the code signing configurations (functions/code_signing.py)."""

    def check_create(self, raw_arn: object) -> str:
        """The ARN of a configuration that exists (else AWS's error)."""
        ...

    def bind(self, name: str, arn: str) -> None:
        """Bind the new function to it."""
        ...


@dataclass(eq=False)
class Function:
    """A function's $LATEST, or one of its published versions (version "1", "2", ...)."""

    name: str
    config: dict                     # the FunctionConfiguration as the API returns it
    tags: dict
    code_hex: str                    # sha256 of the stored zip, hex (where the code lives)
    version: str = LATEST
    activation: asyncio.Task | None = field(default=None, repr=False)
    # $LATEST only: published versions by number, aliases by name, the next version's number.
    versions: dict[str, Function] = field(default_factory=dict, repr=False)
    aliases: dict[str, Alias] = field(default_factory=dict, repr=False)
    next_version: int = 1
    # A published version only: the digest of the $LATEST it was published from.
    source_digest: str = ""
    # The packages of its Layers, in order (kept even if a layer version is deleted, as on AWS).
    layer_hexes: list[str] = field(default_factory=list)

    @property
    def state(self) -> str:
        return self.config.get("State", "Pending")

    @property
    def updating(self) -> bool:
        return self.config.get("LastUpdateStatus") == "InProgress"

    @functools.cached_property
    def key(self) -> str:
        """The dispatcher pool that runs this version (name and version never change)."""
        return pool_key(self.name, self.version)

    def digest(self) -> str:
        """What a published version snapshots: the code and every configuration field that is not bookkeeping."""
        snapshot = {k: v for k, v in self.config.items() if k not in _VOLATILE_KEYS}
        raw = json.dumps([self.code_hex, snapshot], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(eq=False)
class Alias:
    """A name for a version; with weights, that share of invocations runs the additional version."""

    name: str
    function_version: str
    description: str = ""
    weights: dict[str, float] = field(default_factory=dict)   # RoutingConfig.AdditionalVersionWeights
    revision_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def targets(self) -> set[str]:
        """Every version an invocation through this alias may run."""
        return {self.function_version, *self.weights}

    def pick(self) -> str:
        """The version one invocation runs: the additional version with its weight's probability."""
        for version, weight in self.weights.items():
            if random.random() < weight:
                return version
        return self.function_version

    def stored(self) -> dict:
        return {"FunctionVersion": self.function_version, "Description": self.description,
                "AdditionalVersionWeights": self.weights, "RevisionId": self.revision_id}

    @classmethod
    def from_stored(cls, name: str, doc: dict) -> Alias:
        return cls(name, doc["FunctionVersion"], doc.get("Description", ""),
                   dict(doc.get("AdditionalVersionWeights") or {}), doc["RevisionId"])


class FunctionService:
    def __init__(self, settings: Settings, db: Database, code: CodeStore, logs: LogStore,
                 dispatcher: Dispatcher, networks: NetworkService | None = None) -> None:
        self.settings = settings
        # VPCs, subnets and security groups (VpcConfig); without one given, the model alone (no plumbing).
        self.networks = networks or NetworkService(db, settings.region, settings.account_id)
        self.repo = FunctionRepo(db)
        self.version_repo = VersionRepo(db)
        self.alias_repo = AliasRepo(db)
        self.code = code
        self.logs = logs
        self.dispatcher = dispatcher
        set_home(settings.region, settings.account_id)   # an ARN of another region or account names none here
        self.layers = LayerService(settings, db, code)
        self.layers.delete_hooks.append(self._collect_code)
        self.functions: dict[str, Function] = {}
        # Called with the name of a deleted function (function URLs, policies: their rows go with it).
        self.delete_hooks: list[Callable[[str], None]] = []
        # Called with (function, version or alias) when one version or alias is deleted.
        self.qualifier_hooks: list[Callable[[str, str], None]] = []
        # Called with the function's name when an alias is created or changed (it may name another version now).
        self.alias_hooks: list[Callable[[str], None]] = []
        # Concurrency taken out of the account's unreserved pool besides reservations (provisioned concurrency of
        # functions without a reservation): GetAccountSettings' UnreservedConcurrentExecutions leaves it out.
        self.unreserved_claims: list[Callable[[], int]] = []
        # Where Event invocations go: the durable async queue (events/), set by the server that composes them.
        self.event_sink: EventSink | None = None
        # Called with a function ($LATEST) whose State or LastUpdateStatus settled (Active / Failed, Successful /
        # Failed): Lamina's own events on the EventBridge default bus (events/lamina_events.py).
        self.state_listeners: list[Callable[[Function], None]] = []
        # Code signing configurations (CreateFunction's CodeSigningConfigArn); the service sets itself here.
        self.code_signing: CodeSigningHook | None = None
        # Dead-letter queue kinds by ARN service ('sqs', 'sns'), each with whether an ARN names one that exists;
        # the parts that provide queues or topics register theirs. A DeadLetterConfig of another kind is refused.
        self.dead_letter_targets: dict[str, Callable[[str], bool]] = {}

    # ------------------------------------------------------------------ lifecycle

    def load(self) -> None:
        """Restore functions, versions and aliases from the database; resume activations a restart interrupted."""
        self.layers.load()
        for row in self.repo.all():
            fn = Function(row.name, row.config["Configuration"], row.tags, row.config["CodeHex"],
                          next_version=row.config.get("NextVersion", 1),
                          layer_hexes=row.config.get("LayerHexes", []))
            self.functions[fn.name] = fn
        for vrow in self.version_repo.all():
            if (owner := self.functions.get(vrow.function_name)) is None:
                continue
            number = str(vrow.version)
            owner.versions[number] = Function(owner.name, vrow.config["Configuration"], owner.tags,
                                              vrow.config["CodeHex"], version=number,
                                              source_digest=vrow.config.get("SourceDigest", ""),
                                              layer_hexes=vrow.config.get("LayerHexes", []))
            owner.next_version = max(owner.next_version, vrow.version + 1)
        for arow in self.alias_repo.all():
            if (owner := self.functions.get(arow.function_name)) is not None:
                owner.aliases[arow.name] = Alias.from_stored(arow.name, arow.config)
        for fn in self.functions.values():
            for ver in (fn, *fn.versions.values()):
                self._use_network(ver)
            if fn.state == "Pending" or fn.updating:
                self._start_activation(fn, "create" if fn.state == "Pending" else "update")
            elif self.code.task_dir(fn.code_hex).exists():
                unpack_layers(self.code, fn.layer_hexes)  # normally already there
                self.dispatcher.set_function(self.spec_for(fn))
            else:
                self._start_activation(fn, "update")
            for ver in fn.versions.values():
                if ver.state == "Pending" and fn.activation is not None:
                    continue  # becomes Active (or Failed) with the activation of the $LATEST it snapshots
                if ver.state == "Pending":
                    self._version_settled(ver, None)
                unpack(self.code, ver.code_hex)  # normally already there; only a damaged data dir lacks it
                unpack_layers(self.code, ver.layer_hexes)
                self.dispatcher.set_function(self.spec_for(ver))

    async def close(self) -> None:
        tasks = [f.activation for fn in self.functions.values() for f in (fn, *fn.versions.values())
                 if f.activation and not f.activation.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------ lookups

    def arn(self, name: str, qualifier: str | None = None) -> str:
        base = f"arn:aws:lambda:{self.settings.region}:{self.settings.account_id}:function:{name}"
        return f"{base}:{qualifier}" if qualifier else base

    def get(self, ref: FunctionRef, qualifier: str | None = None) -> Function:
        """The function ($LATEST) if it exists and so does the qualifier (a version or alias) when given."""
        fn = self.functions.get(ref.name)
        if fn is None or not (qualifier in (None, LATEST) or qualifier in fn.versions or qualifier in fn.aliases):
            raise not_found(self.arn(ref.name, qualifier))
        return fn

    def target(self, raw_name: str, qualifier: str | None = None,
               shape: NameShape = NAMESPACED) -> tuple[Function, str | None]:
        """(the function, the qualifier) for a name in any accepted form plus an optional ?Qualifier=; `shape`: the
        operation's FunctionName shape (the reads take NamespacedFunctionName)."""
        ref = parse_function_name(raw_name, shape=shape, qualifier=qualifier)
        q = resolve_qualifier(ref, qualifier)
        return self.get(ref, q), q

    def lookup(self, raw_name: str, qualifier: str | None = None) -> Function:
        return self.target(raw_name, qualifier)[0]

    def unqualified(self, raw_name: str) -> Function:
        """For operations on the function itself (updates): $LATEST, never a version or alias."""
        fn, q = self.target(raw_name, shape=FUNCTION_NAME)
        if q not in (None, LATEST):
            raise AwsError("InvalidParameterValueException", "This operation is permitted on Lambda functions only. "
                           "Aliases and versions do not support this operation. Please specify either a function "
                           "name or an unqualified function ARN.")
        return fn

    @staticmethod
    def resolve(fn: Function, qualifier: str | None) -> Function:
        """The version a qualifier names now: $LATEST, a published version, or an alias's (primary) version."""
        if qualifier in (None, LATEST):
            return fn
        if (alias := fn.aliases.get(qualifier)) is not None:
            qualifier = alias.function_version
        return fn if qualifier == LATEST else fn.versions[qualifier]

    @staticmethod
    def pick(fn: Function, qualifier: str | None) -> Function:
        """The version one invocation through the qualifier runs (an alias with weights picks at random)."""
        if qualifier in (None, LATEST):
            return fn
        if (alias := fn.aliases.get(qualifier)) is not None:
            qualifier = alias.pick() if alias.weights else alias.function_version
        return fn if qualifier == LATEST else fn.versions[qualifier]

    def configuration(self, fn: Function, qualifier: str | None) -> dict:
        """GetFunctionConfiguration: the version's configuration; the ARN says how it was asked for."""
        config = dict(self.resolve(fn, qualifier).config)
        if qualifier is not None:
            config["FunctionArn"] = self.arn(fn.name, qualifier)
        return config

    def spec_for(self, fn: Function) -> FunctionSpec:
        cfg = fn.config
        variables = (cfg.get("Environment") or {}).get("Variables") or {}
        log_cfg = cfg.get("LoggingConfig") or {}
        return FunctionSpec(
            name=fn.name, arn=self.arn(fn.name), version=fn.version, runtime=cfg["Runtime"], handler=cfg["Handler"],
            memory_mb=cfg["MemorySize"], timeout_s=cfg["Timeout"], code_dir=self.code.task_dir(fn.code_hex),
            code_sha=cfg["CodeSha256"], environment=tuple(sorted(variables.items())),
            ephemeral_mb=cfg.get("EphemeralStorage", {}).get("Size", 512), region=self.settings.region,
            log_level=log_cfg.get("ApplicationLogLevel", ""), log_format=log_cfg.get("LogFormat", "Text"),
            system_log_level=log_cfg.get("SystemLogLevel", ""),
            log_group_name="" if log_cfg.get("LogGroup") == f"/aws/lambda/{fn.name}" else log_cfg.get("LogGroup", ""),
            per_tenant=is_per_tenant(cfg), network=self.networks.network_for(cfg.get("VpcConfig")),
            role=cfg.get("Role", ""),
            opt_dir=layers_dir(self.code, fn.layer_hexes),
        )

    def _vpc_config(self, body: dict) -> dict | None:
        """VpcConfig as AWS answers it (VpcId added), checked as AWS checks it: its form, then that the security
        groups exist, then the subnets, then that they are in one VPC."""
        vpc = v.vpc_config(body)
        if vpc is None:
            return None
        vpc_id = ""
        if vpc["SubnetIds"]:
            try:
                vpc_id = self.networks.resolve(vpc["SubnetIds"], vpc["SecurityGroupIds"])
            except NetError as exc:
                operation = {"InvalidGroup.NotFound": "DescribeSecurityGroups",
                             "InvalidSubnetID.NotFound": "DescribeSubnets"}.get(exc.code)
                if operation is None:
                    raise AwsError("InvalidParameterValueException", exc.message) from None
                raise AwsError("InvalidParameterValueException", f"Error occurred while {operation}. EC2 Error Code: "
                               f"{exc.code}. EC2 Error Message: {exc.message}") from None
        return {"SubnetIds": vpc["SubnetIds"], "SecurityGroupIds": vpc["SecurityGroupIds"], "VpcId": vpc_id,
                "Ipv6AllowedForDualStack": vpc["Ipv6AllowedForDualStack"]}

    def _use_network(self, fn: Function) -> None:
        """The version's shared interfaces (its VpcConfig's pairs) are in use by it from now on."""
        vpc = fn.config.get("VpcConfig")
        self.networks.use(fn.key, fn.name, vpc if vpc and vpc.get("SubnetIds") else None)

    # ------------------------------------------------------------------ create / update / delete

    def create(self, body: dict) -> dict:
        body = v.require_object(body)
        v.member_types(body, "CreateFunction")
        for key, member in (("FunctionName", "functionName"), ("Role", "role"), ("Code", "code")):
            v.required(body, key, member)
        raw_name = body["FunctionName"]
        if not isinstance(raw_name, str):
            raise v.validation(raw_name, "functionName", "Member must be a string")
        publish = v.boolean(body, "Publish", "publish")
        publish_to(body)
        ref = parse_function_name(raw_name)
        if ref.qualifier:
            raise AwsError("InvalidParameterValueException",
                           "Unsupported FunctionName: a qualifier is not allowed when creating a function.")
        v.unsupported(body)
        snap_start = v.snap_start(body)
        tracing = v.tracing_config(body)
        runtime = v.runtime(body)
        handler = v.handler(body)
        if runtime is None:
            raise AwsError("InvalidParameterValueException", "Runtime and Handler are mandatory parameters "
                           "for functions created with deployment packages.")
        v.check_snap_start(snap_start or "None", runtime)
        self._check_host_runtime(runtime)
        if handler is None:
            if not runtime.startswith("provided"):
                raise AwsError("InvalidParameterValueException", "Runtime and Handler are mandatory parameters "
                               "for functions created with deployment packages.")
            handler = "bootstrap"
        timeout = v.integer(body, "Timeout", "timeout", 1, v.MAX_TIMEOUT) or DEFAULT_TIMEOUT
        memory = v.integer(body, "MemorySize", "memorySize", v.MIN_MEMORY, v.MAX_MEMORY) or DEFAULT_MEMORY
        description = v.string(body, "Description", "description", 256) or ""
        env = v.environment(body)
        ephemeral = v.ephemeral_storage(body) or 512
        logging_config = v.logging_config(body, {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{ref.name}"})
        tags = v.tags(body)
        tenancy = v.tenancy_config(body)
        dead_letter = v.dead_letter_config(body, self.dead_letter_targets)
        attached = self.layers.attach(body["Layers"]) if body.get("Layers") is not None else None
        vpc = self._vpc_config(body)
        signing = None
        if body.get("CodeSigningConfigArn") is not None and self.code_signing is not None:
            signing = self.code_signing.check_create(body["CodeSigningConfigArn"])
        role = v.role(body) or ""
        code = body.get("Code")
        if not isinstance(code, dict):
            raise AwsError("InvalidParameterValueException", "Code is required: give Code.ZipFile, the "
                           "base64-encoded .zip package.")
        if code.get("S3Bucket") or code.get("S3Key") or code.get("ImageUri"):
            raise AwsError("InvalidParameterValueException", "Lamina has no S3 or image registry: upload the "
                           "package itself as Code.ZipFile.")
        if "ZipFile" not in code:
            raise AwsError("InvalidParameterValueException", "Code.ZipFile is required.")
        data = decode_zip(code["ZipFile"])
        if ref.name in self.functions:
            raise AwsError("ResourceConflictException", f"Function already exist: {ref.name}")
        code_hex = self.code.put_zip(data)
        config = {
            "FunctionName": ref.name,
            "FunctionArn": self.arn(ref.name),
            "Runtime": runtime,
            "Role": role,
            "Handler": handler,
            "CodeSize": len(data),
            "Description": description,
            "Timeout": timeout,
            "MemorySize": memory,
            "LastModified": _timestamp(),
            "CodeSha256": code_sha256_b64(data),
            "Version": LATEST,
            "TracingConfig": tracing or {"Mode": "PassThrough"},
            "RevisionId": str(uuid.uuid4()),
            "State": "Pending",
            "StateReason": "The function is being created.",
            "StateReasonCode": "Creating",
            "PackageType": "Zip",
            "Architectures": ["x86_64"],
            "EphemeralStorage": {"Size": ephemeral},
            "SnapStart": {"ApplyOn": snap_start or "None", "OptimizationStatus": "Off"},
            "LoggingConfig": logging_config or {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{ref.name}"},
            "RuntimeVersionConfig": self.runtime_version(runtime),
        }
        if env is not None:
            config["Environment"] = {"Variables": env}
        if tenancy is not None:
            config["TenancyConfig"] = tenancy  # immutable from now on
        if dead_letter:
            config["DeadLetterConfig"] = {"TargetArn": dead_letter}
        if vpc is not None:
            config["VpcConfig"] = vpc
        if attached is not None and attached.entries:
            config["Layers"] = attached.entries
        fn = Function(ref.name, config, tags, code_hex, layer_hexes=attached.code_hexes if attached else [])
        self.functions[fn.name] = fn
        self._persist(fn, new=True)
        if signing is not None and self.code_signing is not None:
            self.code_signing.bind(fn.name, signing)
        self._start_activation(fn, "create")
        if publish:
            # Version 1 is published from what was just created; it goes Active with it. AWS answers
            # with that version's configuration under the function's unqualified ARN.
            return dict(self.publish(fn, None, pending=True).config, FunctionArn=config["FunctionArn"])
        return dict(config)

    def runtime_version(self, runtime: str) -> dict:
        """RuntimeVersionConfig: the runtime as this host runs it (its interpreter's version, for python and node)."""
        lang = self.dispatcher.runtimes.get(runtime)
        return {"RuntimeVersionArn": runtime_version_arn(self.settings.region, runtime, lang.version if lang else "")}

    def _check_host_runtime(self, runtime: str) -> None:
        """A runtime this host has no interpreter for is refused up front, saying how to install one."""
        problem = self.dispatcher.runtimes.check(runtime)
        if problem is not None:
            raise AwsError("InvalidParameterValueException",
                           f"The runtime {runtime} is not available on this Lamina host. {problem}")

    def check_updatable(self, fn: Function, body: dict) -> None:
        if fn.updating or fn.state == "Pending":
            raise AwsError("ResourceConflictException", "The operation cannot be performed at this time. An update "
                           f"is in progress for resource: {fn.config['FunctionArn']}")
        revision = body.get("RevisionId")
        if revision is not None and revision != fn.config["RevisionId"]:
            raise AwsError("PreconditionFailedException", "The Revision Id provided does not match the latest "
                           "Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id")

    def update_code(self, raw_name: str, body: dict) -> dict:
        body = v.require_object(body)
        v.member_types(body, "UpdateFunctionCode")
        v.unsupported({"SourceKMSKeyArn": body.get("SourceKMSKeyArn")})
        fn = self.unqualified(raw_name)
        v.unsupported({"Architectures": body.get("Architectures")} if body.get("Architectures") else {})
        if body.get("S3Bucket") or body.get("S3Key") or body.get("ImageUri"):
            raise AwsError("InvalidParameterValueException", "Lamina has no S3 or image registry: upload the "
                           "package itself as ZipFile.")
        if "ZipFile" not in body:
            raise AwsError("InvalidParameterValueException", "Please provide a source for function code: ZipFile.")
        publish = v.boolean(body, "Publish", "publish")
        publish_to(body)
        v.boolean(body, "DryRun", "dryRun")
        data = decode_zip(body["ZipFile"])
        self.check_updatable(fn, body)
        if body.get("DryRun"):
            return dict(fn.config, CodeSha256=code_sha256_b64(data), CodeSize=len(data))
        fn.code_hex = self.code.put_zip(data)
        fn.config.update(CodeSize=len(data), CodeSha256=code_sha256_b64(data))
        self._begin_update(fn)
        if publish:
            # A new version of the new code, Active once the update is (the newest one if nothing changed).
            return dict(self.publish(fn, None, pending=True).config)
        return dict(fn.config)

    def update_configuration(self, raw_name: str, body: dict) -> dict:
        body = v.require_object(body)
        v.member_types(body, "UpdateFunctionConfiguration")
        fn = self.unqualified(raw_name)
        v.unsupported(body)
        changes: dict = {}
        snap_start = v.snap_start(body)
        if (runtime := v.runtime(body)) is not None:
            self._check_host_runtime(runtime)
            changes["Runtime"] = runtime
            changes["RuntimeVersionConfig"] = self.runtime_version(runtime)
        if (handler := v.handler(body)) is not None:
            changes["Handler"] = handler
        if (timeout := v.integer(body, "Timeout", "timeout", 1, v.MAX_TIMEOUT)) is not None:
            changes["Timeout"] = timeout
        if (memory := v.integer(body, "MemorySize", "memorySize", v.MIN_MEMORY, v.MAX_MEMORY)) is not None:
            changes["MemorySize"] = memory
        if (description := v.string(body, "Description", "description", 256)) is not None:
            changes["Description"] = description
        if (role := v.role(body)) is not None:
            changes["Role"] = role
        if (ephemeral := v.ephemeral_storage(body)) is not None:
            changes["EphemeralStorage"] = {"Size": ephemeral}
        if (logging_config := v.logging_config(body, fn.config.get("LoggingConfig") or {})) is not None:
            changes["LoggingConfig"] = logging_config
        if snap_start is not None:
            changes["SnapStart"] = {"ApplyOn": snap_start, "OptimizationStatus": "Off"}
        if (tracing := v.tracing_config(body)) is not None:
            changes["TracingConfig"] = tracing
        v.check_snap_start((changes.get("SnapStart") or fn.config.get("SnapStart") or {}).get("ApplyOn", "None"),
                           changes.get("Runtime", fn.config["Runtime"]))
        env = v.environment(body)
        dead_letter = v.dead_letter_config(body, self.dead_letter_targets)
        attached = self.layers.attach(body["Layers"]) if body.get("Layers") is not None else None
        vpc = self._vpc_config(body)
        if body.get("TenancyConfig") is not None and v.tenancy_config(body) != fn.config.get("TenancyConfig"):
            raise AwsError("InvalidParameterValueException", "Tenancy configuration cannot be modified after "
                           "function creation.")
        self.check_updatable(fn, body)
        fn.config.update(changes)
        if env is not None:
            if env:
                fn.config["Environment"] = {"Variables": env}
            else:
                fn.config.pop("Environment", None)
        if dead_letter is not None:
            if dead_letter:
                fn.config["DeadLetterConfig"] = {"TargetArn": dead_letter}
            else:
                fn.config.pop("DeadLetterConfig", None)
        if attached is not None:
            fn.layer_hexes = attached.code_hexes
            if attached.entries:
                fn.config["Layers"] = attached.entries
            else:
                fn.config.pop("Layers", None)
        network_change = vpc is not None and vpc != fn.config.get("VpcConfig")
        if network_change:
            fn.config["VpcConfig"] = vpc
        self._begin_update(fn, network_change)
        return dict(fn.config)

    def _begin_update(self, fn: Function, network_change: bool = False) -> None:
        # Every update is reported as AWS reports it (recorded for configuration, code and VPC changes alike):
        # "The function is being created." / "Creating", a reason code absent from botocore's enum.
        del network_change
        fn.config.update(LastModified=_timestamp(), RevisionId=str(uuid.uuid4()), LastUpdateStatus="InProgress",
                         LastUpdateStatusReason="The function is being created.",
                         LastUpdateStatusReasonCode="Creating")
        self._persist(fn)
        self._start_activation(fn, "update")

    def delete(self, raw_name: str, qualifier: str | None) -> None:
        """DeleteFunction: the whole function (versions and aliases too), or with a qualifier one version."""
        ref = parse_function_name(raw_name, shape=NAMESPACED, qualifier=qualifier)
        q = resolve_qualifier(ref, qualifier)
        if q == LATEST:
            raise AwsError("InvalidParameterValueException", "$LATEST version cannot be deleted without deleting "
                           "the function.")
        fn = self.functions.get(ref.name)
        if fn is None:
            raise not_found(self.arn(ref.name))
        if q is not None:
            if not q.isdigit():
                raise AwsError("InvalidParameterValueException", "Deletion of aliases is not currently supported.")
            self.delete_version(fn, q)
            return
        for f in (fn, *fn.versions.values()):
            if f.activation is not None and not f.activation.done():
                f.activation.cancel()
        del self.functions[fn.name]
        self.dispatcher.remove_function(fn.name)
        for ver in (fn, *fn.versions.values()):
            self.networks.release(ver.key)
        self.repo.delete(fn.name)  # its versions and aliases go with it (ON DELETE CASCADE)
        for hook in self.delete_hooks:
            hook(fn.name)
        self.logs.delete(fn.name)
        self._collect_code()

    def delete_version(self, fn: Function, number: str) -> None:
        """One published version; refused while an alias can route to it. A version that is not there is
        already deleted (204, as on AWS)."""
        if (ver := fn.versions.get(number)) is None:
            return
        using = sorted(a.name for a in fn.aliases.values() if number in a.targets)
        if using:
            raise AwsError("ResourceConflictException", "Unable to delete version because the following aliases "
                           f"reference it: [{', '.join(using)}]")
        if ver.activation is not None and not ver.activation.done():
            ver.activation.cancel()   # a SnapStart snapshot still being made
        del fn.versions[number]
        self.dispatcher.remove_version(fn.name, ver.version)
        self.networks.release(ver.key)
        self.version_repo.delete(fn.name, int(number))
        for hook in self.qualifier_hooks:
            hook(fn.name, number)
        self._collect_code()

    def _collect_code(self) -> None:
        every = [v for f in self.functions.values() for v in (f, *f.versions.values())]
        in_use = {f.code_hex for f in every} | {h for f in every for h in f.layer_hexes} | self.layers.code_hexes()
        opts = {self.code.opt_key(f.layer_hexes) for f in every if f.layer_hexes}
        self.code.collect(in_use, opts)

    # ------------------------------------------------------------------ versions and aliases

    def publish(self, fn: Function, description: str | None, pending: bool = False) -> Function:
        """Snapshot $LATEST's code and configuration as the next version; when nothing changed since the
        newest version, that version instead (as on AWS). pending: $LATEST is being created or updated
        (Publish=true), and the version goes Active, or Failed, with it."""
        digest = fn.digest()
        newest = fn.versions.get(str(fn.next_version - 1))
        if newest is not None and newest.source_digest == digest:
            return newest
        number = str(fn.next_version)
        fn.next_version += 1
        config = copy.deepcopy(fn.config)
        for key in STATUS_KEYS:
            config.pop(key, None)
        config.update(FunctionArn=self.arn(fn.name, number), Version=number, RevisionId=str(uuid.uuid4()))
        if description is not None:
            config["Description"] = description
        snap = (config.get("SnapStart") or {}).get("ApplyOn") == "PublishedVersions"
        if snap:
            config["SnapStart"] = {"ApplyOn": "PublishedVersions", "OptimizationStatus": "On"}
        if pending or snap:
            # SnapStart: Pending until the version's snapshot (its zygote, init done) is made, as on AWS.
            config.update(State="Pending", StateReason="The function is being created.", StateReasonCode="Creating")
        else:
            config.update({k: fn.config[k] for k in ("State", "StateReason", "StateReasonCode") if k in fn.config})
            config["LastUpdateStatus"] = "Successful"
        ver = Function(fn.name, config, fn.tags, fn.code_hex, version=number, source_digest=digest,
                       layer_hexes=list(fn.layer_hexes))
        fn.versions[number] = ver
        self._use_network(ver)
        self.version_repo.insert(VersionRow(fn.name, int(number), self._version_doc(ver)))
        fn.config["RevisionId"] = str(uuid.uuid4())  # publishing is a change to $LATEST's revision on AWS too
        self._persist(fn)
        if not pending:
            # Its pool starts environments on the first invoke; the code is $LATEST's, already unpacked.
            self.dispatcher.set_function(self.spec_for(ver))
            if snap:
                ver.activation = asyncio.get_running_loop().create_task(self._snapshot(ver))
        return ver

    async def _snapshot(self, ver: Function) -> None:
        """SnapStart: initialise the version now (its zygote, from which every environment is a restore), then
        Active; an init error fails the version, as AWS's snapshot does."""
        try:
            await self.dispatcher.prewarm(self.spec_for(ver))
        except asyncio.CancelledError:
            raise
        except InitFailure as failure:
            error_type = failure.body.get("errorType") or "Runtime.Unknown"
            self._version_settled(ver, (f"{error_type}: {failure.body.get('errorMessage', '')}".strip(),
                                        "FunctionError.RuntimeInitError"))
        except Exception as exc:
            log.exception("snapshotting %s:%s failed", ver.name, ver.version)
            self._version_settled(ver, (f"InternalError: {exc}", "InternalError"))
        else:
            self._version_settled(ver, None)

    @staticmethod
    def _version_doc(ver: Function) -> dict:
        return {"Configuration": ver.config, "CodeHex": ver.code_hex, "SourceDigest": ver.source_digest,
                "LayerHexes": ver.layer_hexes}

    def _version_settled(self, ver: Function, failure: tuple[str, str] | None) -> None:
        """A Pending version (Publish=true) follows its $LATEST's activation: Active, or Failed (reason, code)."""
        for key in STATUS_KEYS:
            ver.config.pop(key, None)
        if failure is None:
            # Settling is a change of state: a new revision, as AWS gives it.
            ver.config.update(State="Active", LastUpdateStatus="Successful", RevisionId=str(uuid.uuid4()))
        else:
            reason, code = failure
            ver.config.update(State="Failed", StateReason=reason, StateReasonCode=code, LastUpdateStatus="Failed",
                              LastUpdateStatusReason=reason, LastUpdateStatusReasonCode=code)
        self.version_repo.update(VersionRow(ver.name, int(ver.version), self._version_doc(ver)))

    def _settle_pending_versions(self, fn: Function, failure: tuple[str, str] | None) -> None:
        for ver in fn.versions.values():
            if ver.state == "Pending":
                self._version_settled(ver, failure)
                self.dispatcher.set_function(self.spec_for(ver))

    def save_alias(self, fn: Function, alias: Alias) -> None:
        fn.aliases[alias.name] = alias
        self.alias_repo.upsert(AliasRow(fn.name, alias.name, alias.stored()))
        for hook in self.alias_hooks:
            hook(fn.name)

    def delete_alias(self, fn: Function, name: str) -> None:
        if fn.aliases.pop(name, None) is None:
            return
        self.alias_repo.delete(fn.name, name)
        for hook in self.qualifier_hooks:
            hook(fn.name, name)

    # ------------------------------------------------------------------ reads

    def get_function(self, raw_name: str, qualifier: str | None, base_url: str) -> dict:
        fn, q = self.target(raw_name, qualifier)
        code_hex = self.resolve(fn, q).code_hex
        out: dict = {
            "Configuration": self.configuration(fn, q),
            "Code": {"RepositoryType": "S3",
                     "Location": f"{base_url}/lamina/v1/functions/{fn.name}/code?sha={code_hex}"},
        }
        if fn.tags:
            out["Tags"] = dict(fn.tags)
        reserved = self.dispatcher.reserved.get(fn.name)
        if reserved is not None:
            out["Concurrency"] = {"ReservedConcurrentExecutions": reserved}
        return out

    def list_functions(self, marker: str | None, max_items: int | None, function_version: str | None = None) -> dict:
        """ListFunctions: $LATEST of each function by name, or with FunctionVersion=ALL each function's $LATEST
        and published versions (qualified ARNs, as AWS lists them). At most 50 a page, as on AWS."""
        if function_version is not None and function_version != "ALL":
            raise v.validation(function_version, "functionVersion", "Member must satisfy enum value set: [ALL]")
        every = function_version == "ALL"
        entries: list[tuple[str, int, Function]] = []   # (name, version order, the version), in listing order
        for name in sorted(self.functions):
            fn = self.functions[name]
            entries.append((name, 0, fn))
            if every:
                entries.extend((name, int(n), ver) for n, ver in sorted(fn.versions.items(), key=lambda i: int(i[0])))
        start = 0
        if marker:
            after = decode_marker(marker)
            # "name" (after all of that function) or "name:order" (after that entry of it).
            after_name, _, after_order = after.partition(":")
            position = (after_name, int(after_order) if after_order.isdigit() else float("inf"))
            start = next((i for i, (n, o, _) in enumerate(entries) if (n, o) > position), len(entries))
        limit = min(max_items or 50, 50)
        page = entries[start : start + limit]
        functions = []
        for name, _, ver in page:
            # As AWS lists them (and as ListVersionsByFunction does): no State fields, no RuntimeVersionConfig
            # (GetFunction has them; `lamina ls` reads Lamina's own listing).
            config = {k: val for k, val in ver.config.items() if k not in LISTING_OMITS}
            if every:
                config["FunctionArn"] = self.arn(name, ver.version)
            functions.append(config)
        out: dict = {"Functions": functions}
        if start + limit < len(entries):
            name, order, _ = page[-1]
            out["NextMarker"] = encode_marker(f"{name}:{order}")
        return out

    def account_settings(self) -> dict:
        # Every published version keeps its own copy of the package on AWS, so versions count towards code storage.
        total = sum(ver.config.get("CodeSize", 0) for fn in self.functions.values()
                    for ver in (fn, *fn.versions.values())) + self.layers.total_code_size()
        limit = self.settings.account_concurrency
        unreserved = self.dispatcher.unreserved_limit - sum(claim() for claim in self.unreserved_claims)
        return {
            "AccountLimit": {"TotalCodeSize": 80530636800, "CodeSizeUnzipped": 262144000,
                             "CodeSizeZipped": 52428800, "ConcurrentExecutions": limit,
                             "UnreservedConcurrentExecutions": unreserved},
            "AccountUsage": {"TotalCodeSize": total, "FunctionCount": len(self.functions)},
        }

    # ------------------------------------------------------------------ tags

    def function_for_arn(self, arn: str) -> Function:
        ref = parse_function_name(arn, "resource", 256)
        if ref.qualifier is not None:
            raise AwsError("InvalidParameterValueException", "Tags on function aliases and versions are not "
                           "supported. Please specify a function ARN.")
        fn = self.functions.get(ref.name)
        if fn is None:
            raise not_found(self.arn(ref.name))
        return fn

    def set_tags(self, fn: Function, tags: dict[str, str] | None = None, remove: list[str] | None = None) -> None:
        if tags:
            fn.tags.update(tags)
        for key in remove or []:
            fn.tags.pop(key, None)
        fn.config["RevisionId"] = str(uuid.uuid4())   # tagging is a change of the function's revision on AWS
        self._persist(fn)

    # ------------------------------------------------------------------ activation

    def _persist(self, fn: Function, new: bool = False) -> None:
        stored = {"Configuration": fn.config, "CodeHex": fn.code_hex, "NextVersion": fn.next_version,
                  "LayerHexes": fn.layer_hexes}
        if new:
            self.repo.insert(fn.name, stored, fn.tags)
        else:
            self.repo.update(fn.name, stored, fn.tags)

    def _start_activation(self, fn: Function, kind: str) -> None:
        if fn.activation is not None and not fn.activation.done():
            fn.activation.cancel()
        fn.activation = asyncio.get_running_loop().create_task(self._activate(fn, kind))

    async def _activate(self, fn: Function, kind: str) -> None:
        try:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, unpack, self.code, fn.code_hex)
            await loop.run_in_executor(None, unpack_layers, self.code, fn.layer_hexes)
            spec = self.spec_for(fn)
            problem = _static_problem(spec)
            if problem is not None:
                raise InitFailure(problem, None)
            # Pending (or InProgress) while the function's shared interfaces are set up, as on AWS.
            self._use_network(fn)
            await self.networks.ready(fn.key)
            await self.dispatcher.prewarm(spec)
        except asyncio.CancelledError:
            raise
        except NetError as exc:
            self._activation_failed(fn, kind, {"errorType": "NetworkError", "errorMessage": exc.message,
                                               "reasonCode": _NETWORK_REASONS.get(exc.code, "InternalError")})
        except InitFailure as failure:
            if failure.body.get("errorType") in _HOST_PROBLEMS:
                self._activation_failed(fn, kind, failure.body)
            else:
                # The function's own init error (its handler cannot be imported, its bootstrap exits...): Active all
                # the same, as on AWS, where it shows at invoke time — each invocation reports it (the function's log
                # has it from this first try too).
                self.dispatcher.set_function(self.spec_for(fn))
                self._activation_succeeded(fn)
        except Exception as exc:
            log.exception("activating %s failed", fn.name)
            self._activation_failed(fn, kind, {"errorType": "InternalError", "errorMessage": str(exc)})
        else:
            self._activation_succeeded(fn)

    def _activation_succeeded(self, fn: Function) -> None:
        if self.functions.get(fn.name) is not fn:
            return  # deleted meanwhile
        for key in ("StateReason", "StateReasonCode", "LastUpdateStatusReason", "LastUpdateStatusReasonCode"):
            fn.config.pop(key, None)
        # Settling is a change of state: AWS gives the function a new revision for it.
        fn.config.update(State="Active", LastUpdateStatus="Successful", RevisionId=str(uuid.uuid4()))
        self._persist(fn)
        self._settle_pending_versions(fn, None)
        for listener in self.state_listeners:
            listener(fn)

    def _activation_failed(self, fn: Function, kind: str, body: dict) -> None:
        if self.functions.get(fn.name) is not fn:
            return
        error_type = body.get("errorType") or "Runtime.Unknown"
        reason = f"{error_type}: {body.get('errorMessage', '')}".strip()
        code = "FunctionError.InitTimeout" if error_type == "Sandbox.Timedout" else (
            "InternalError" if error_type == "InternalError" else "FunctionError.RuntimeInitError")
        if error_type == "NetworkError":
            reason, code = body.get("errorMessage", ""), body["reasonCode"]
        elif error_type == "Runtime.InvalidEntrypoint":
            code = "FunctionError.InvalidEntryPoint"
        elif error_type == "InvalidRuntime":
            code = "InvalidRuntime"
        if kind == "create":
            fn.config.update(State="Failed", StateReason=reason, StateReasonCode=code)
        fn.config.update(LastUpdateStatus="Failed", LastUpdateStatusReason=reason, LastUpdateStatusReasonCode=code,
                         RevisionId=str(uuid.uuid4()))
        self._persist(fn)
        # Invocations still run the new code and report its init error, as on AWS.
        self.dispatcher.set_function(self.spec_for(fn))
        self._settle_pending_versions(fn, (reason, code))
        for listener in self.state_listeners:
            listener(fn)


# EC2 errors met while setting up a function's interfaces, as State/LastUpdateStatus reason codes.
_NETWORK_REASONS = {"SubnetOutOfIPAddresses": "SubnetOutOfIPAddresses", "InvalidSubnetID.NotFound": "InvalidSubnet",
                    "InvalidGroup.NotFound": "InvalidSecurityGroup"}


# Init failures that are this host's problem, not the function's: the function is Failed with the reason. Anything
# else the function's own code or configuration brings about (an import error, a bootstrap that exits, a timeout) is
# reported at invoke time, as on AWS.
_HOST_PROBLEMS = ("InvalidRuntime", "InternalError")


def is_per_tenant(config: dict) -> bool:
    """TenancyConfig.TenantIsolationMode PER_TENANT: invocations carry a tenant id; environments serve one tenant."""
    return (config.get("TenancyConfig") or {}).get("TenantIsolationMode") == "PER_TENANT"


def publish_to(body: dict) -> None:
    value = body.get("PublishTo")
    if value is None:
        return
    if value != "LATEST_PUBLISHED":
        raise v.validation(value, "publishTo", "Member must satisfy enum value set: [LATEST_PUBLISHED]")
    raise AwsError("InvalidParameterValueException", "PublishTo LATEST_PUBLISHED is for functions on a capacity "
                   "provider, which Lamina does not have: publish numbered versions instead.")


def _static_problem(spec: FunctionSpec) -> dict | None:
    """Problems visible without running anything (custom runtimes need an executable bootstrap)."""
    if spec.is_python or spec.is_node:
        return None
    candidates = [Path(spec.code_dir) / "bootstrap"] + ([spec.opt_dir / "bootstrap"] if spec.opt_dir else [])
    if not any(b.is_file() and os.access(b, os.X_OK) for b in candidates):
        return {"errorType": "Runtime.InvalidEntrypoint",
                "errorMessage": "Couldn't find valid bootstrap(s): [/var/task/bootstrap /opt/bootstrap]"}
    return None
