"""The function registry: create, update, delete and look up functions; Pending → Active.

Configurations live in memory (the invoke path reads them) and in SQLite (they survive a
restart). A create or update returns at once with State Pending / LastUpdateStatus InProgress;
a background activation unpacks the code and initialises a first environment — Lamina's
snapshot — and then marks the function Active (or Failed, with the reason), so boto3's waiters
and tools built on them (Terraform, CDK) behave as they do against AWS.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lamina.config import Settings
from lamina.control import validation as v
from lamina.control.code import code_sha256_b64, decode_zip, unpack
from lamina.control.errors import AwsError, not_found
from lamina.control.names import FunctionRef, parse_function_name
from lamina.dispatch.dispatcher import Dispatcher
from lamina.dispatch.environment import InitFailure
from lamina.dispatch.spec import FunctionSpec
from lamina.store.blobs import CodeStore
from lamina.store.db import Database
from lamina.store.functions import FunctionRepo
from lamina.store.logs import LogStore

log = logging.getLogger("lamina.control")

LATEST = "$LATEST"
DEFAULT_TIMEOUT = 3
DEFAULT_MEMORY = 128


def _timestamp() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}+0000"


@dataclass(eq=False)
class Function:
    name: str
    config: dict                     # the FunctionConfiguration as the API returns it
    tags: dict
    code_hex: str                    # sha256 of the stored zip, hex (where the code lives)
    activation: asyncio.Task | None = field(default=None, repr=False)

    @property
    def state(self) -> str:
        return self.config.get("State", "Pending")

    @property
    def updating(self) -> bool:
        return self.config.get("LastUpdateStatus") == "InProgress"


class FunctionService:
    def __init__(self, settings: Settings, db: Database, code: CodeStore, logs: LogStore,
                 dispatcher: Dispatcher) -> None:
        self.settings = settings
        self.repo = FunctionRepo(db)
        self.code = code
        self.logs = logs
        self.dispatcher = dispatcher
        self.functions: dict[str, Function] = {}
        # Called with the name of a deleted function (function URLs, policies: their rows go with it).
        self.delete_hooks: list[Callable[[str], None]] = []

    # ------------------------------------------------------------------ lifecycle

    def load(self) -> None:
        """Restore functions from the database; resume activations a restart interrupted."""
        for row in self.repo.all():
            fn = Function(row.name, row.config["Configuration"], row.tags, row.config["CodeHex"])
            self.functions[fn.name] = fn
            if fn.state == "Pending" or fn.updating:
                self._start_activation(fn, "create" if fn.state == "Pending" else "update")
            elif self.code.task_dir(fn.code_hex).exists():
                self.dispatcher.set_function(self.spec_for(fn))
            else:
                self._start_activation(fn, "update")

    async def close(self) -> None:
        tasks = [fn.activation for fn in self.functions.values() if fn.activation and not fn.activation.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------ lookups

    def arn(self, name: str, qualifier: str | None = None) -> str:
        base = f"arn:aws:lambda:{self.settings.region}:{self.settings.account_id}:function:{name}"
        return f"{base}:{qualifier}" if qualifier else base

    def get(self, ref: FunctionRef, qualifier: str | None = None) -> Function:
        fn = self.functions.get(ref.name)
        if fn is None or (qualifier not in (None, LATEST)):
            raise not_found(self.arn(ref.name, qualifier))
        return fn

    def lookup(self, raw_name: str, qualifier: str | None = None) -> Function:
        ref = parse_function_name(raw_name)
        return self.get(ref, ref.qualifier or qualifier)

    def spec_for(self, fn: Function) -> FunctionSpec:
        cfg = fn.config
        variables = (cfg.get("Environment") or {}).get("Variables") or {}
        return FunctionSpec(
            name=fn.name, arn=cfg["FunctionArn"], version=LATEST, runtime=cfg["Runtime"], handler=cfg["Handler"],
            memory_mb=cfg["MemorySize"], timeout_s=cfg["Timeout"], code_dir=self.code.task_dir(fn.code_hex),
            code_sha=cfg["CodeSha256"], environment=tuple(sorted(variables.items())),
            ephemeral_mb=cfg.get("EphemeralStorage", {}).get("Size", 512), region=self.settings.region,
            log_level=(cfg.get("LoggingConfig") or {}).get("ApplicationLogLevel", ""),
        )

    # ------------------------------------------------------------------ create / update / delete

    def create(self, body: dict) -> dict:
        body = v.require_object(body)
        for key, member in (("FunctionName", "functionName"), ("Role", "role"), ("Code", "code")):
            v.required(body, key, member)
        raw_name = body["FunctionName"]
        if not isinstance(raw_name, str):
            raise v.validation(raw_name, "functionName", "Member must be a string")
        v.boolean(body, "Publish", "publish")
        ref = parse_function_name(raw_name)
        if ref.qualifier:
            raise AwsError("InvalidParameterValueException",
                           "Unsupported FunctionName: a qualifier is not allowed when creating a function.")
        v.unsupported(body)
        runtime = v.runtime(body)
        handler = v.handler(body)
        if runtime is None:
            raise AwsError("InvalidParameterValueException", "Runtime and Handler are mandatory parameters "
                           "for functions created with deployment packages.")
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
        tags = v.tags(body)
        role = v.string(body, "Role", "role", 2048) or ""
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
            "TracingConfig": {"Mode": "PassThrough"},
            "RevisionId": str(uuid.uuid4()),
            "State": "Pending",
            "StateReason": "The function is being created.",
            "StateReasonCode": "Creating",
            "LastUpdateStatus": "InProgress",
            "LastUpdateStatusReason": "The function is being created.",
            "LastUpdateStatusReasonCode": "Creating",
            "PackageType": "Zip",
            "Architectures": ["x86_64"],
            "EphemeralStorage": {"Size": ephemeral},
            "SnapStart": {"ApplyOn": "None", "OptimizationStatus": "Off"},
            "LoggingConfig": {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{ref.name}"},
        }
        if env is not None:
            config["Environment"] = {"Variables": env}
        fn = Function(ref.name, config, tags, code_hex)
        self.functions[fn.name] = fn
        self._persist(fn, new=True)
        self._start_activation(fn, "create")
        return dict(config)

    def _check_updatable(self, fn: Function, body: dict) -> None:
        if fn.updating or fn.state == "Pending":
            raise AwsError("ResourceConflictException", "The operation cannot be performed at this time. An update "
                           f"is in progress for resource: {fn.config['FunctionArn']}")
        revision = body.get("RevisionId")
        if revision is not None and revision != fn.config["RevisionId"]:
            raise AwsError("PreconditionFailedException", "The Revision Id provided does not match the latest "
                           "Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id")

    def update_code(self, raw_name: str, body: dict) -> dict:
        body = v.require_object(body)
        fn = self.lookup(raw_name)
        v.unsupported({"Architectures": body.get("Architectures")} if body.get("Architectures") else {})
        if body.get("S3Bucket") or body.get("S3Key") or body.get("ImageUri"):
            raise AwsError("InvalidParameterValueException", "Lamina has no S3 or image registry: upload the "
                           "package itself as ZipFile.")
        if "ZipFile" not in body:
            raise AwsError("InvalidParameterValueException", "Please provide a source for function code: ZipFile.")
        v.boolean(body, "Publish", "publish")
        v.boolean(body, "DryRun", "dryRun")
        data = decode_zip(body["ZipFile"])
        self._check_updatable(fn, body)
        if body.get("DryRun"):
            return dict(fn.config, CodeSha256=code_sha256_b64(data), CodeSize=len(data))
        fn.code_hex = self.code.put_zip(data)
        fn.config.update(CodeSize=len(data), CodeSha256=code_sha256_b64(data))
        self._begin_update(fn)
        return dict(fn.config)

    def update_configuration(self, raw_name: str, body: dict) -> dict:
        body = v.require_object(body)
        fn = self.lookup(raw_name)
        v.unsupported(body)
        changes: dict = {}
        if (runtime := v.runtime(body)) is not None:
            changes["Runtime"] = runtime
        if (handler := v.handler(body)) is not None:
            changes["Handler"] = handler
        if (timeout := v.integer(body, "Timeout", "timeout", 1, v.MAX_TIMEOUT)) is not None:
            changes["Timeout"] = timeout
        if (memory := v.integer(body, "MemorySize", "memorySize", v.MIN_MEMORY, v.MAX_MEMORY)) is not None:
            changes["MemorySize"] = memory
        if (description := v.string(body, "Description", "description", 256)) is not None:
            changes["Description"] = description
        if (role := v.string(body, "Role", "role", 2048)) is not None:
            changes["Role"] = role
        if (ephemeral := v.ephemeral_storage(body)) is not None:
            changes["EphemeralStorage"] = {"Size": ephemeral}
        env = v.environment(body)
        self._check_updatable(fn, body)
        fn.config.update(changes)
        if env is not None:
            if env:
                fn.config["Environment"] = {"Variables": env}
            else:
                fn.config.pop("Environment", None)
        self._begin_update(fn)
        return dict(fn.config)

    def _begin_update(self, fn: Function) -> None:
        fn.config.update(LastModified=_timestamp(), RevisionId=str(uuid.uuid4()), LastUpdateStatus="InProgress",
                         LastUpdateStatusReason="The function is being updated.",
                         LastUpdateStatusReasonCode="Updating")
        self._persist(fn)
        self._start_activation(fn, "update")

    def delete(self, raw_name: str, qualifier: str | None) -> None:
        ref = parse_function_name(raw_name)
        q = ref.qualifier or qualifier
        if q == LATEST:
            raise AwsError("InvalidParameterValueException", "$LATEST version cannot be deleted without deleting "
                           "the function.")
        fn = self.get(ref, q)
        if fn.activation is not None and not fn.activation.done():
            fn.activation.cancel()
        del self.functions[fn.name]
        self.dispatcher.remove_function(fn.name)
        self.repo.delete(fn.name)
        for hook in self.delete_hooks:
            hook(fn.name)
        self.logs.delete(fn.name)
        self.code.collect({f.code_hex for f in self.functions.values()})

    # ------------------------------------------------------------------ reads

    def get_function(self, raw_name: str, qualifier: str | None, base_url: str) -> dict:
        fn = self.lookup(raw_name, qualifier)
        out: dict = {
            "Configuration": dict(fn.config),
            "Code": {"RepositoryType": "S3",
                     "Location": f"{base_url}/lamina/v1/functions/{fn.name}/code?sha={fn.code_hex}"},
        }
        if fn.tags:
            out["Tags"] = dict(fn.tags)
        return out

    def list_functions(self, marker: str | None, max_items: int | None) -> dict:
        names = sorted(self.functions)
        start = 0
        if marker:
            try:
                after = base64.urlsafe_b64decode(marker.encode()).decode()
            except (ValueError, UnicodeDecodeError):
                raise AwsError("InvalidParameterValueException", "Invalid pagination token (Marker).") from None
            start = next((i for i, n in enumerate(names) if n > after), len(names))
        limit = max_items or 50
        page = names[start : start + limit]
        out: dict = {"Functions": [dict(self.functions[n].config) for n in page]}
        if start + limit < len(names):
            out["NextMarker"] = base64.urlsafe_b64encode(page[-1].encode()).decode()
        return out

    def account_settings(self) -> dict:
        total = sum(fn.config.get("CodeSize", 0) for fn in self.functions.values())
        limit = self.settings.account_concurrency
        return {
            "AccountLimit": {"TotalCodeSize": 80530636800, "CodeSizeUnzipped": 262144000,
                             "CodeSizeZipped": 52428800, "ConcurrentExecutions": limit,
                             "UnreservedConcurrentExecutions": limit},
            "AccountUsage": {"TotalCodeSize": total, "FunctionCount": len(self.functions)},
        }

    # ------------------------------------------------------------------ tags

    def function_for_arn(self, arn: str) -> Function:
        ref = parse_function_name(arn, "resource", 256)
        fn = self.functions.get(ref.name)
        if fn is None:
            raise not_found(self.arn(ref.name))
        return fn

    def set_tags(self, fn: Function, tags: dict[str, str] | None = None, remove: list[str] | None = None) -> None:
        if tags:
            fn.tags.update(tags)
        for key in remove or []:
            fn.tags.pop(key, None)
        self._persist(fn)

    # ------------------------------------------------------------------ activation

    def _persist(self, fn: Function, new: bool = False) -> None:
        stored = {"Configuration": fn.config, "CodeHex": fn.code_hex}
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
            spec = self.spec_for(fn)
            problem = _static_problem(spec)
            if problem is not None:
                raise InitFailure(problem, None)
            await self.dispatcher.prewarm(spec)
        except asyncio.CancelledError:
            raise
        except InitFailure as failure:
            self._activation_failed(fn, kind, failure.body)
        except Exception as exc:  # noqa: BLE001 - reported on the function, not lost in a task
            log.exception("activating %s failed", fn.name)
            self._activation_failed(fn, kind, {"errorType": "InternalError", "errorMessage": str(exc)})
        else:
            if self.functions.get(fn.name) is not fn:
                return  # deleted meanwhile
            for key in ("StateReason", "StateReasonCode", "LastUpdateStatusReason", "LastUpdateStatusReasonCode"):
                fn.config.pop(key, None)
            fn.config.update(State="Active", LastUpdateStatus="Successful")
            self._persist(fn)

    def _activation_failed(self, fn: Function, kind: str, body: dict) -> None:
        if self.functions.get(fn.name) is not fn:
            return
        error_type = body.get("errorType") or "Runtime.Unknown"
        reason = f"{error_type}: {body.get('errorMessage', '')}".strip()
        code = "FunctionError.InitTimeout" if error_type == "Sandbox.Timedout" else (
            "InternalError" if error_type == "InternalError" else "FunctionError.RuntimeInitError")
        if error_type == "Runtime.InvalidEntrypoint":
            code = "FunctionError.InvalidEntryPoint"
        elif error_type == "InvalidRuntime":
            code = "InvalidRuntime"
        if kind == "create":
            fn.config.update(State="Failed", StateReason=reason, StateReasonCode=code)
        fn.config.update(LastUpdateStatus="Failed", LastUpdateStatusReason=reason, LastUpdateStatusReasonCode=code)
        self._persist(fn)
        # Invocations still run the new code and report its init error, as on AWS.
        self.dispatcher.set_function(self.spec_for(fn))


def _static_problem(spec: FunctionSpec) -> dict | None:
    """Problems visible without running anything (custom runtimes need an executable bootstrap)."""
    if spec.is_python:
        return None
    bootstrap = Path(spec.code_dir) / "bootstrap"
    if not (bootstrap.is_file() and os.access(bootstrap, os.X_OK)):
        return {"errorType": "Runtime.InvalidEntrypoint",
                "errorMessage": "Couldn't find valid bootstrap(s): [/var/task/bootstrap /opt/bootstrap]"}
    return None
