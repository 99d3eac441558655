"""A function's smaller settings (FunctionSettingsService): Put/GetFunctionRecursionConfig and
Put/GetRuntimeManagementConfig, with AWS's validation, defaults and shapes. Their HTTP routes are
api/function_settings.py.

- Recursion: `Terminate` (the default) or `Allow`. Lamina stores it and returns it; it has no recursive-loop detector
  (AWS's works on the X-Ray trace header across SQS, SNS and S3), so loops are never stopped for you — what `Allow`
  asks for. README lists the gap.
- Runtime management: `Auto` (the default), `FunctionUpdate` or `Manual` with a runtime version ARN. A function runs
  on the host's interpreter for its runtime, whose version ARN is the function's RuntimeVersionConfig; `Manual`
  accepts that version (the one the function runs) and refuses any other, since Lamina cannot run another one.
"""

from __future__ import annotations

import re

from lamina.functions import validation as v
from lamina.functions.errors import AwsError, not_found, validation
from lamina.functions.names import NAMESPACED, UNQUALIFIED, parse_function_name, resolve_qualifier
from lamina.functions.registry import LATEST, Function, FunctionService
from lamina.store.db import Database
from lamina.store.function_settings import SettingRow, SettingsRepo

RECURSIVE_LOOP = ("Allow", "Terminate")
UPDATE_RUNTIME_ON = ("Auto", "Manual", "FunctionUpdate")
_RUNTIME_VERSION_ARN = re.compile(
    r"((arn:(aws[a-zA-Z-]*):lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}::runtime:.+)|"
    r"(arn:(aws[a-zA-Z-]*):lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:\d{12}:runtime/"
    r"[A-Za-z0-9_.-]{1,128}/version/[A-Za-z0-9_.-]{1,128}))")
_QUALIFIER = re.compile(r"(\$LATEST(\.PUBLISHED)?|[0-9]+|(?!^[0-9]+$)([a-zA-Z0-9-_]+))")


class FunctionSettingsService:
    def __init__(self, functions: FunctionService, db: Database) -> None:
        self.functions = functions
        self.repo = SettingsRepo(db)
        self.recursion: dict[str, str] = {}                       # function -> RecursiveLoop
        self.runtime_management: dict[tuple[str, str], dict] = {}  # (function, qualifier) -> configuration
        functions.delete_hooks.append(self._function_deleted)
        functions.qualifier_hooks.append(self._qualifier_deleted)

    def load(self) -> None:
        for row in self.repo.all():
            if row.function_name not in self.functions.functions:
                continue
            if row.kind == "recursion":
                self.recursion[row.function_name] = row.doc["RecursiveLoop"]
            elif row.kind == "runtime-management":
                self.runtime_management[(row.function_name, row.qualifier)] = row.doc

    def _function_deleted(self, name: str) -> None:
        self.recursion.pop(name, None)
        for key in [k for k in self.runtime_management if k[0] == name]:
            del self.runtime_management[key]

    def _qualifier_deleted(self, name: str, qualifier: str) -> None:
        if self.runtime_management.pop((name, qualifier), None) is not None:
            self.repo.delete(name, qualifier, "runtime-management")

    def _function(self, raw_name: str) -> Function:
        ref = parse_function_name(raw_name, shape=UNQUALIFIED)
        fn = self.functions.functions.get(ref.name)
        if fn is None:
            raise not_found(self.functions.arn(ref.name))
        return fn

    # ------------------------------------------------------------------ recursion

    def put_recursion(self, raw_name: str, body: dict) -> dict:
        body = v.require_object(body)
        value = v.required(body, "RecursiveLoop", "recursiveLoop")
        if value not in RECURSIVE_LOOP:
            raise validation(value, "recursiveLoop", "Member must satisfy enum value set: [Terminate, Allow]")
        fn = self._function(raw_name)
        self.recursion[fn.name] = str(value)
        self.repo.put(SettingRow(fn.name, "", "recursion", {"RecursiveLoop": value}))
        return {"RecursiveLoop": value}

    def get_recursion(self, raw_name: str) -> dict:
        fn = self._function(raw_name)
        return {"RecursiveLoop": self.recursion.get(fn.name, "Terminate")}

    # ------------------------------------------------------------------ runtime management

    def _target(self, raw_name: str, query_qualifier: str | None) -> tuple[Function, str]:
        ref = parse_function_name(raw_name, shape=NAMESPACED)
        qualifier = resolve_qualifier(ref, query_qualifier)
        if qualifier is not None and (len(qualifier) > 128 or not _QUALIFIER.fullmatch(qualifier)):
            raise validation(qualifier, "qualifier", f"Member must satisfy regular expression pattern: "
                             f"{_QUALIFIER.pattern}")
        fn = self.functions.get(ref, qualifier)
        return fn, qualifier or LATEST

    def put_runtime_management(self, raw_name: str, query_qualifier: str | None, body: dict) -> dict:
        body = v.require_object(body)
        mode = v.required(body, "UpdateRuntimeOn", "updateRuntimeOn")
        if mode not in UPDATE_RUNTIME_ON:
            raise validation(mode, "updateRuntimeOn", "Member must satisfy enum value set: [Auto, Manual, "
                             "FunctionUpdate]")
        version_arn = body.get("RuntimeVersionArn")
        if version_arn is not None and (not isinstance(version_arn, str) or not 26 <= len(version_arn) <= 2048
                                        or not _RUNTIME_VERSION_ARN.fullmatch(version_arn)):
            raise validation(version_arn, "runtimeVersionArn", "Member must satisfy regular expression pattern: "
                             f"{_RUNTIME_VERSION_ARN.pattern}")
        fn, qualifier = self._target(raw_name, query_qualifier)
        version = self.functions.resolve(fn, None if qualifier == LATEST else qualifier)
        current = (version.config.get("RuntimeVersionConfig") or {}).get("RuntimeVersionArn")
        if mode == "Manual":
            if version_arn is None:
                raise AwsError("InvalidParameterValueException", "RuntimeVersionArn is required when UpdateRuntimeOn "
                               "is Manual.")
            if version_arn != current:
                raise AwsError("InvalidParameterValueException", f"The runtime version {version_arn} is not "
                               f"available on this Lamina host: it runs {version.config.get('Runtime')} as "
                               f"{current}.")
        elif version_arn is not None:
            raise AwsError("InvalidParameterValueException", "RuntimeVersionArn can be set only when UpdateRuntimeOn "
                           "is Manual.")
        arn = self.functions.arn(fn.name, qualifier)
        doc: dict = {"UpdateRuntimeOn": mode, "FunctionArn": arn}
        if mode == "Manual":
            doc["RuntimeVersionArn"] = version_arn
        key = (fn.name, qualifier)
        self.runtime_management[key] = doc
        self.repo.put(SettingRow(fn.name, qualifier, "runtime-management", doc))
        return dict(doc)

    def get_runtime_management(self, raw_name: str, query_qualifier: str | None) -> dict:
        fn, qualifier = self._target(raw_name, query_qualifier)
        doc = self.runtime_management.get((fn.name, qualifier))
        if doc is None:
            return {"UpdateRuntimeOn": "Auto", "FunctionArn": self.functions.arn(fn.name, qualifier)}
        return dict(doc)
