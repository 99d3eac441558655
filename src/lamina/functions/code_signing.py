"""Code signing configurations (CodeSigningService): Create/Get/Update/Delete/ListCodeSigningConfigs,
ListFunctionsByCodeSigningConfig and a function's binding (Put/Get/DeleteFunctionCodeSigningConfig, CreateFunction's
CodeSigningConfigArn), with AWS's validation, errors and shapes. Their HTTP routes are api/code_signing.py.

The configurations are stored, validated and returned so that tools managing them (Terraform, SAM, CDK) work
unchanged. Lamina has no AWS Signer to check a package's signature against the allowed signing profiles, so it does
not verify signatures: a function bound to a configuration deploys as it would under the `Warn` policy. That is a
known gap (README: "What behaves like AWS Lambda").
"""

from __future__ import annotations

import re
import secrets
import string
import time
from dataclasses import dataclass, field

from lamina.config import Settings
from lamina.functions import validation as v
from lamina.functions.errors import AwsError, not_found, validation
from lamina.functions.names import NAMESPACED, parse_function_name
from lamina.functions.paging import page
from lamina.functions.registry import FunctionService
from lamina.store.db import Database
from lamina.store.function_settings import CodeSigningRepo, CodeSigningRow, SettingRow, SettingsRepo

_REGION = r"(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}"
CSC_ARN_RE = re.compile(rf"arn:(aws[a-zA-Z-]*)?:lambda:{_REGION}:\d{{12}}:code-signing-config:csc-[a-z0-9]{{17}}")
_ARN_RE = re.compile(r"arn:(aws[a-zA-Z-]*)?:([a-zA-Z0-9-.]+):([a-zA-Z0-9-]*):(\d{12})?:(.+)")
POLICIES = ("Warn", "Enforce")
KIND = "code-signing"
DEFAULT_PAGE = 50
_ID_ALPHABET = string.ascii_lowercase + string.digits


def _timestamp() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}+0000"


@dataclass(eq=False)
class CodeSigningConfig:
    config_id: str
    config: dict
    tags: dict = field(default_factory=dict)

    @property
    def arn(self) -> str:
        return self.config["CodeSigningConfigArn"]


class CodeSigningService:
    def __init__(self, settings: Settings, functions: FunctionService, db: Database) -> None:
        self.settings = settings
        self.functions = functions
        self.repo = CodeSigningRepo(db)
        self.settings_repo = SettingsRepo(db)
        self.configs: dict[str, CodeSigningConfig] = {}     # by ARN, in creation order
        self.bindings: dict[str, str] = {}                  # function name -> configuration ARN
        functions.delete_hooks.append(self._function_deleted)
        functions.code_signing = self   # CreateFunction's CodeSigningConfigArn

    def load(self) -> None:
        for row in self.repo.all():
            csc = CodeSigningConfig(row.config_id, row.config, row.tags)
            self.configs[csc.arn] = csc
        for srow in self.settings_repo.all():
            if srow.kind == KIND and srow.function_name in self.functions.functions:
                self.bindings[srow.function_name] = srow.doc["CodeSigningConfigArn"]

    def _function_deleted(self, name: str) -> None:
        self.bindings.pop(name, None)   # its row goes with the function (ON DELETE CASCADE)

    # ------------------------------------------------------------------ lookups

    def _not_found(self, arn: str) -> AwsError:
        err = AwsError("ResourceNotFoundException", f"The Lambda code signing configuration {arn} can not be found.")
        err.typed = False
        return err

    def _arn(self, raw: object, member: str = "codeSigningConfigArn") -> str:
        if not isinstance(raw, str) or len(raw) > 200 or not CSC_ARN_RE.fullmatch(raw):
            raise validation(raw, member, f"Member must satisfy regular expression pattern: {CSC_ARN_RE.pattern}")
        return raw

    def get_config(self, raw_arn: str) -> CodeSigningConfig:
        arn = self._arn(raw_arn)
        csc = self.configs.get(arn)
        if csc is None:
            raise self._not_found(arn)
        return csc

    def find(self, arn: str) -> CodeSigningConfig | None:
        return self.configs.get(arn)

    # ------------------------------------------------------------------ members

    @staticmethod
    def _publishers(value: object) -> dict:
        if not isinstance(value, dict):
            raise validation(value, "allowedPublishers", "Member must not be null")
        arns = value.get("SigningProfileVersionArns")
        if arns is None:
            raise validation("null", "allowedPublishers.signingProfileVersionArns", "Member must not be null")
        if not isinstance(arns, list) or not all(isinstance(a, str) for a in arns):
            raise validation(arns, "allowedPublishers.signingProfileVersionArns", "Member must be a list of ARNs")
        if not 1 <= len(arns) <= 20:
            bound = "greater than or equal to 1" if not arns else "less than or equal to 20"
            raise validation(arns, "allowedPublishers.signingProfileVersionArns", f"Member must have length {bound}")
        for arn in arns:
            if not _ARN_RE.fullmatch(arn):
                raise validation(arns, "allowedPublishers.signingProfileVersionArns",
                                 "Member must satisfy constraint: [Member must satisfy regular expression pattern: "
                                 f"{_ARN_RE.pattern}]")
        return {"SigningProfileVersionArns": list(arns)}

    @staticmethod
    def _policies(value: object) -> dict:
        if not isinstance(value, dict):
            raise validation(value, "codeSigningPolicies", "Member must be a structure")
        policy = value.get("UntrustedArtifactOnDeployment", "Warn")
        if policy not in POLICIES:
            raise validation(policy, "codeSigningPolicies.untrustedArtifactOnDeployment",
                             "Member must satisfy enum value set: [Warn, Enforce]")
        return {"UntrustedArtifactOnDeployment": policy}

    # ------------------------------------------------------------------ configurations

    def create(self, body: dict) -> dict:
        body = v.require_object(body)
        publishers = self._publishers(body.get("AllowedPublishers"))
        policies = self._policies(body.get("CodeSigningPolicies") or {})
        description = v.string(body, "Description", "description", 256) or ""
        tags = v.tags(body)
        config_id = "csc-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(17))
        arn = (f"arn:aws:lambda:{self.settings.region}:{self.settings.account_id}:code-signing-config:"
               f"{config_id}")
        config = {"CodeSigningConfigId": config_id, "CodeSigningConfigArn": arn, "Description": description,
                  "AllowedPublishers": publishers, "CodeSigningPolicies": policies, "LastModified": _timestamp()}
        csc = CodeSigningConfig(config_id, config, tags)
        self.configs[arn] = csc
        self.repo.put(CodeSigningRow(config_id, config, tags))
        return {"CodeSigningConfig": dict(config)}

    def get(self, raw_arn: str) -> dict:
        return {"CodeSigningConfig": dict(self.get_config(raw_arn).config)}

    def update(self, raw_arn: str, body: dict) -> dict:
        body = v.require_object(body)
        csc = self.get_config(raw_arn)
        changes: dict = {}
        if body.get("AllowedPublishers") is not None:
            changes["AllowedPublishers"] = self._publishers(body["AllowedPublishers"])
        if body.get("CodeSigningPolicies") is not None:
            changes["CodeSigningPolicies"] = self._policies(body["CodeSigningPolicies"])
        if (description := v.string(body, "Description", "description", 256)) is not None:
            changes["Description"] = description
        if changes:
            csc.config.update(changes, LastModified=_timestamp())
            self.repo.put(CodeSigningRow(csc.config_id, csc.config, csc.tags))
        return {"CodeSigningConfig": dict(csc.config)}

    def delete(self, raw_arn: str) -> None:
        csc = self.get_config(raw_arn)
        users = sorted(name for name, arn in self.bindings.items() if arn == csc.arn)
        if users:
            raise AwsError("ResourceConflictException", "The code signing configuration cannot be deleted because "
                           f"it is used by the following functions: {', '.join(users)}.")
        del self.configs[csc.arn]
        self.repo.delete(csc.config_id)

    def list_configs(self, marker: str | None, max_items: int | None) -> dict:
        items = [dict(c.config) for c in self.configs.values()]
        chunk, next_marker = page(items, lambda c: c["CodeSigningConfigId"], marker, max_items)
        out: dict = {"CodeSigningConfigs": chunk}
        if next_marker:
            out["NextMarker"] = next_marker
        return out

    def list_functions(self, raw_arn: str, marker: str | None, max_items: int | None) -> dict:
        csc = self.get_config(raw_arn)
        arns = [{"arn": self.functions.arn(name)} for name, bound in sorted(self.bindings.items())
                if bound == csc.arn]
        chunk, next_marker = page(arns, lambda a: a["arn"], marker, max_items)
        out: dict = {"FunctionArns": [a["arn"] for a in chunk]}
        if next_marker:
            out["NextMarker"] = next_marker
        return out

    # ------------------------------------------------------------------ a function's binding

    def _function_name(self, raw_name: str) -> str:
        ref = parse_function_name(raw_name, shape=NAMESPACED)
        if ref.name not in self.functions.functions:
            raise not_found(self.functions.arn(ref.name))
        return ref.name

    def put_function(self, raw_name: str, body: dict) -> dict:
        body = v.require_object(body)
        raw_arn = v.required(body, "CodeSigningConfigArn", "codeSigningConfigArn")
        arn = self._arn(raw_arn)
        parse_function_name(raw_name, shape=NAMESPACED)
        if arn not in self.configs:
            raise AwsError("CodeSigningConfigNotFoundException", "The code signing configuration cannot be found. "
                           f"Check that the provided configuration is not deleted: {arn}.")
        name = self._function_name(raw_name)
        self.bind(name, arn)
        return {"CodeSigningConfigArn": arn, "FunctionName": name}

    def bind(self, name: str, arn: str) -> None:
        self.bindings[name] = arn
        self.settings_repo.put(SettingRow(name, "", KIND, {"CodeSigningConfigArn": arn}))

    def check_create(self, raw_arn: object) -> str:
        """CreateFunction's CodeSigningConfigArn: a configuration that exists (bound once the function is made)."""
        arn = self._arn(raw_arn)
        if arn not in self.configs:
            raise AwsError("CodeSigningConfigNotFoundException", "The code signing configuration cannot be found. "
                           f"Check that the provided configuration is not deleted: {arn}.")
        return arn

    def get_function(self, raw_name: str) -> dict:
        name = self._function_name(raw_name)
        arn = self.bindings.get(name)
        return {"CodeSigningConfigArn": arn, "FunctionName": name} if arn else {}

    def delete_function(self, raw_name: str) -> None:
        name = self._function_name(raw_name)
        if self.bindings.pop(name, None) is not None:
            self.settings_repo.delete(name, "", KIND)

    # ------------------------------------------------------------------ tags (ListTags, TagResource, UntagResource)

    def set_tags(self, csc: CodeSigningConfig, tags: dict[str, str] | None = None,
                 remove: list[str] | None = None) -> None:
        csc.tags.update(tags or {})
        for key in remove or []:
            csc.tags.pop(key, None)
        self.repo.put(CodeSigningRow(csc.config_id, csc.config, csc.tags))

