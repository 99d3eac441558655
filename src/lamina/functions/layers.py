"""Layers (LayerService): Publish/Get/List/DeleteLayerVersion(s), GetLayerVersionByArn, ListLayers and the layer
version permissions (Add/Get/RemoveLayerVersionPermission), with AWS's validation, errors and shapes; and what a
function's `Layers` setting resolves to. Their HTTP routes are api/layers.py.

A layer version is an immutable .zip, numbered 1, 2, ... per layer name (numbers are never reused, even after every
version was deleted). A function names up to five layer versions by ARN; their packages are unpacked in that order
into one read-only directory (a later layer's file replaces an earlier one's, as on AWS) that the sandbox shows at
/opt. A function keeps the layers it was configured with even when a layer version is deleted afterwards, as on
AWS: it holds on to the packages, not to the layer versions.

Each account has its own layers. A layer version of another account served here is used (by a function's Layers,
GetLayerVersionByArn) where its layer version policy grants this account, or everyone, lambda:GetLayerVersion (a
statement with an OrganizationId grants nobody: Lamina has no organizations); a layer ARN of another region, or of
an account not served here, is refused with AWS's messages.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from lamina.config import Settings
from lamina.functions import validation as v
from lamina.functions.code import code_sha256_b64, decode_zip
from lamina.functions.errors import AwsError, validation, validation_errors
from lamina.functions.paging import page
from lamina.functions.runtime_sets import (
    ARCHITECTURES,
    ARCHITECTURES_MESSAGE,
    FUNCTION_RUNTIMES_MESSAGE,
    LAYER_RUNTIMES,
    LAYER_RUNTIMES_MESSAGE,
)
from lamina.store.blobs import CodeStore
from lamina.store.db import Database
from lamina.store.layers import LayerRepo, LayerVersionRow

MAX_LAYERS_PER_FUNCTION = 5
DEFAULT_PAGE = 50
_REGION = r"(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}"
LAYER_NAME_RE = re.compile(rf"(arn:(aws[a-zA-Z-]*)?:lambda:{_REGION}:\d{{12}}:layer:[a-zA-Z0-9-_]+)|[a-zA-Z0-9-_]+")
LAYER_VERSION_ARN_RE = re.compile(
    rf"(arn:(aws[a-zA-Z-]*)?:lambda:{_REGION}:\d{{12}}:layer:[a-zA-Z0-9-_]+:[0-9]+)|"
    r"(arn:[a-zA-Z0-9-]+:lambda:::awslayer:[a-zA-Z0-9-_]+)")
# The model's pattern, as AWS's messages print it.
LAYER_VERSION_ARN_PATTERN = (
    r"(arn:(aws[a-zA-Z-]*)?:lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:\d{12}:layer:"
    r"[a-zA-Z0-9-_]+:[0-9]+)|(arn:[a-zA-Z0-9-]+:lambda:::awslayer:[a-zA-Z0-9-_]+)")
_ARN_PARTS = re.compile(r"arn:[^:]*:lambda:(?P<region>[^:]+):(?P<account>\d{12}):layer:(?P<name>[a-zA-Z0-9-_]+)"
                        r"(:(?P<version>[0-9]+))?")
_LIST_CONSTRAINT = ("Member must satisfy constraint: [Member must have length less than or equal to 2048, Member must "
                    "have length greater than or equal to 1, Member must satisfy regular expression pattern: "
                    f"{LAYER_VERSION_ARN_PATTERN}, Member must not be null]")
_STATEMENT_ID = re.compile(r"([a-zA-Z0-9-_]+)")
_PRINCIPAL = re.compile(r"\d{12}|\*|arn:(aws[a-zA-Z-]*):iam::\d{12}:root")
_ORGANIZATION = re.compile(r"o-[a-z0-9]{10,32}")
NOT_FOUND = "The resource you requested does not exist."
_BAD_VERSION = "Layer Version Cannot be less than 1"


def _timestamp() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}+0000"


@dataclass(eq=False)
class LayerVersion:
    name: str
    version: int
    config: dict         # GetLayerVersion's document without Content.Location
    code_hex: str
    policy: dict | None  # {"RevisionId": str, "Statements": {sid: statement}}

    def row(self) -> LayerVersionRow:
        return LayerVersionRow(self.name, self.version, self.config, self.code_hex, self.policy)


@dataclass(frozen=True)
class AttachedLayers:
    """What a function's `Layers` resolved to: the configuration's entries and the packages, in order."""

    entries: list[dict]      # [{"Arn": ..., "CodeSize": ...}]
    code_hexes: list[str]


class LayerService:
    def __init__(self, settings: Settings, db: Database, code: CodeStore) -> None:
        self.settings = settings
        self.code = code
        self.repo = LayerRepo(db)
        self.next_versions: dict[str, int] = {}
        self.layers: dict[str, dict[int, LayerVersion]] = {}   # name -> version -> layer version
        # Called after a layer version is deleted (its package may now be unused).
        self.delete_hooks: list[Callable[[], None]] = []
        # Other accounts' layers, by account id (set by the server when it serves more than one account).
        self.peers: Callable[[str], LayerService | None] = lambda account: None

    def load(self) -> None:
        self.next_versions = self.repo.counters()
        for row in self.repo.versions():
            self.layers.setdefault(row.layer_name, {})[row.version] = LayerVersion(
                row.layer_name, row.version, row.config, row.code_hex, row.policy)

    # ------------------------------------------------------------------ names and ARNs

    def layer_arn(self, name: str) -> str:
        return f"arn:aws:lambda:{self.settings.region}:{self.settings.account_id}:layer:{name}"

    def _name(self, raw: str) -> str:
        """A LayerName parameter: a name or a layer ARN (of this account and region: the only ones there are)."""
        if not raw or len(raw) > 140:
            raise validation(raw, "layerName", "Member must have length less than or equal to 140" if raw
                             else "Member must have length greater than or equal to 1")
        if not LAYER_NAME_RE.fullmatch(raw):
            raise validation(raw, "layerName",
                             f"Member must satisfy regular expression pattern: {LAYER_NAME_RE.pattern}")
        return raw.rsplit(":", 1)[-1] if raw.startswith("arn:") else raw

    @staticmethod
    def _version_number(raw: str) -> int:
        try:
            number = int(raw)
        except ValueError:
            raise validation(raw, "versionNumber", "Member must be a number") from None
        if number < 1:
            raise AwsError("InvalidParameterValueException", _BAD_VERSION)
        return number

    def _find(self, name: str, number: int) -> LayerVersion | None:
        return self.layers.get(name, {}).get(number)

    def _require(self, raw_name: str, raw_version: str) -> LayerVersion:
        """The layer version, or 404 naming its ARN (the permission operations' wording)."""
        name = self._name(raw_name)
        number = self._version_number(raw_version)
        found = self._find(name, number)
        if found is None:
            raise AwsError("ResourceNotFoundException",
                           f"Layer version {self.layer_arn(name)}:{number} does not exist.")
        return found

    # ------------------------------------------------------------------ documents

    def _document(self, lv: LayerVersion, base_url: str) -> dict:
        out = dict(lv.config)
        out["Content"] = dict(lv.config["Content"],
                              Location=f"{base_url}/lamina/v1/layers/{lv.name}/versions/{lv.version}/content")
        return out

    @staticmethod
    def _list_item(lv: LayerVersion) -> dict:
        keys = ("LayerVersionArn", "Version", "Description", "CreatedDate", "CompatibleRuntimes", "LicenseInfo",
                "CompatibleArchitectures")
        return {k: lv.config[k] for k in keys if k in lv.config}

    # ------------------------------------------------------------------ operations

    def publish(self, raw_name: str, body: dict) -> tuple[LayerVersion, dict]:
        body = v.require_object(body)
        name = self._name(raw_name)
        runtimes = body.get("CompatibleRuntimes")
        archs = body.get("CompatibleArchitectures")
        problems: list[tuple[object, str, str]] = []
        if runtimes is not None:
            if not isinstance(runtimes, list) or not all(isinstance(r, str) for r in runtimes):
                raise validation(runtimes, "compatibleRuntimes", "Member must be a list of strings")
            if set(runtimes) - LAYER_RUNTIMES:
                problems.append((runtimes, "compatibleRuntimes",
                                 f"Member must satisfy enum value set: {FUNCTION_RUNTIMES_MESSAGE}"))
            elif len(runtimes) > 15:
                problems.append((runtimes, "compatibleRuntimes", "Member must have length less than or equal to 15"))
        if archs is not None:
            if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
                raise validation(archs, "compatibleArchitectures", "Member must be a list of strings")
            if set(archs) - set(ARCHITECTURES):
                problems.append((archs, "compatibleArchitectures", "Member must satisfy constraint: [Member must "
                                 f"satisfy enum value set: {ARCHITECTURES_MESSAGE}, Member must not be null]"))
            elif len(archs) > 2:
                problems.append((archs, "compatibleArchitectures", "Member must have length less than or equal to 2"))
        if problems:
            raise validation_errors(problems)
        description = v.string(body, "Description", "description", 256) or ""
        license_info = v.string(body, "LicenseInfo", "licenseInfo", 512)
        content = v.required(body, "Content", "content")
        if not isinstance(content, dict):
            raise validation(content, "content", "Member must be a structure")
        if content.get("S3Bucket") or content.get("S3Key") or content.get("S3ObjectVersion"):
            raise AwsError("InvalidParameterValueException", "Lamina has no S3: upload the layer's package itself as "
                           "Content.ZipFile.")
        if "ZipFile" not in content:
            raise AwsError("InvalidParameterValueException", "Please provide a source for the layer's content: "
                           "Content.ZipFile.")
        data = decode_zip(content["ZipFile"], "PublishLayerVersion")
        code_hex = self.code.put_zip(data)
        number = self.next_versions.get(name, 1)
        self.next_versions[name] = number + 1
        arn = self.layer_arn(name)
        config: dict = {
            "Content": {"CodeSha256": code_sha256_b64(data), "CodeSize": len(data)},
            "LayerArn": arn,
            "LayerVersionArn": f"{arn}:{number}",
            "Description": description,
            "CreatedDate": _timestamp(),
            "Version": number,
            "CompatibleArchitectures": list(archs) if archs is not None else [],
            "CompatibleRuntimes": list(runtimes) if runtimes is not None else [],
        }
        if archs is None:
            del config["CompatibleArchitectures"]
        if runtimes is None:
            del config["CompatibleRuntimes"]
        if license_info is not None:
            config["LicenseInfo"] = license_info
        lv = LayerVersion(name, number, config, code_hex, None)
        self.layers.setdefault(name, {})[number] = lv
        self.repo.insert(lv.row(), number + 1)
        return lv, config

    def published(self, lv: LayerVersion, base_url: str) -> dict:
        return self._document(lv, base_url)

    def get(self, raw_name: str, raw_version: str, base_url: str) -> dict:
        name = self._name(raw_name)
        number = self._version_number(raw_version)
        found = self._find(name, number)
        if found is None:
            raise AwsError("ResourceNotFoundException", NOT_FOUND)
        return self._document(found, base_url)

    def get_by_arn(self, arn: str | None, base_url: str) -> dict:
        if arn is None:
            raise validation("null", "arn", "Member must not be null")
        if len(arn) > 140 or not LAYER_VERSION_ARN_RE.fullmatch(arn):
            raise validation(arn, "arn", f"Member must satisfy regular expression pattern: {LAYER_VERSION_ARN_PATTERN}")
        parts = _ARN_PARTS.fullmatch(arn)
        found = None
        owner: LayerService = self
        if parts is not None and self._ours(parts["region"], parts["account"]):
            found = self._find(parts["name"], int(parts["version"]))
        elif parts is not None and (shared := self._shared(parts)) is not None:
            found, owner = shared
        if found is None:
            raise AwsError("ResourceNotFoundException", NOT_FOUND)
        return owner._document(found, base_url)

    def _ours(self, region: str, account: str) -> bool:
        return region == self.settings.region and account == self.settings.account_id

    def _shared(self, parts: re.Match) -> tuple[LayerVersion, LayerService] | None:
        """Another account's layer version its policy lets this account use, with that account's service."""
        if parts["region"] != self.settings.region or parts["version"] is None:
            return None
        peer = self.peers(parts["account"])
        found = peer.granted(parts["name"], int(parts["version"]), self.settings.account_id) if peer else None
        return (found, peer) if found is not None and peer is not None else None

    def granted(self, name: str, number: int, account: str) -> LayerVersion | None:
        """This account's layer version if its policy grants `account` lambda:GetLayerVersion."""
        found = self._find(name, number)
        statements = (found.policy or {}).get("Statements", {}).values() if found is not None else ()
        for statement in statements:
            if not statement.get("Condition") and statement.get("Principal") in ("*", account):
                return found
        return None

    @staticmethod
    def _filters(runtime: str | None, arch: str | None) -> None:
        problems: list[tuple[object, str, str]] = []
        if arch is not None and arch not in ARCHITECTURES:
            problems.append((arch, "compatibleArchitecture",
                             f"Member must satisfy enum value set: {ARCHITECTURES_MESSAGE}"))
        if runtime is not None and runtime not in LAYER_RUNTIMES:
            problems.append((runtime, "compatibleRuntime",
                             f"Member must satisfy enum value set: {LAYER_RUNTIMES_MESSAGE}"))
        if problems:
            raise validation_errors(problems)

    @staticmethod
    def _matches(lv: LayerVersion, runtime: str | None, arch: str | None) -> bool:
        # Only versions that declare the runtime (architecture) compatible are listed under a filter, as on AWS.
        if runtime is not None and runtime not in lv.config.get("CompatibleRuntimes", []):
            return False
        return arch is None or arch in lv.config.get("CompatibleArchitectures", [])

    def list_layers(self, runtime: str | None, arch: str | None, marker: str | None, max_items: int | None) -> dict:
        """ListLayers: each layer by name with its newest version matching the filters."""
        self._filters(runtime, arch)
        items = []
        for name in sorted(self.layers):
            matching = [lv for n, lv in sorted(self.layers[name].items()) if self._matches(lv, runtime, arch)]
            if matching:
                items.append({"LayerName": name, "LayerArn": self.layer_arn(name),
                              "LatestMatchingVersion": self._list_item(matching[-1])})
        chunk, next_marker = page(items, lambda item: item["LayerName"], marker, max_items)
        out: dict = {"Layers": chunk}
        if next_marker:
            out["NextMarker"] = next_marker
        return out

    def list_versions(self, raw_name: str, runtime: str | None, arch: str | None, marker: str | None,
                      max_items: int | None) -> dict:
        """ListLayerVersions: newest first; a layer without versions (or unknown) lists none, as on AWS."""
        self._filters(runtime, arch)
        name = self._name(raw_name)
        versions = [lv for _, lv in sorted(self.layers.get(name, {}).items(), reverse=True)
                    if self._matches(lv, runtime, arch)]
        chunk, next_marker = page([self._list_item(lv) for lv in versions], lambda i: str(i["Version"]), marker,
                                  max_items)
        out: dict = {"LayerVersions": chunk}
        if next_marker:
            out["NextMarker"] = next_marker
        return out

    def delete(self, raw_name: str, raw_version: str) -> None:
        """DeleteLayerVersion: idempotent (204 whether or not it existed). Functions using it keep its files."""
        number = self._version_number(raw_version)
        name = self._name(raw_name)
        versions = self.layers.get(name, {})
        if versions.pop(number, None) is not None:
            self.repo.delete(name, number)
            if not versions:
                del self.layers[name]
            for hook in self.delete_hooks:
                hook()

    # ------------------------------------------------------------------ layer version permissions

    def add_permission(self, raw_name: str, raw_version: str, body: dict, revision: str | None) -> dict:
        body = v.require_object(body)
        for key, member in (("StatementId", "statementId"), ("Action", "action"), ("Principal", "principal")):
            v.required(body, key, member)
        sid = v.string(body, "StatementId", "statementId", 100, _STATEMENT_ID) or ""
        action = body["Action"]
        if action != "lambda:GetLayerVersion":
            raise validation(action, "action", "Member must satisfy regular expression pattern: lambda:GetLayerVersion")
        principal = v.string(body, "Principal", "principal", 10000, _PRINCIPAL) or ""
        organization = v.string(body, "OrganizationId", "organizationId", 34, _ORGANIZATION)
        lv = self._require(raw_name, raw_version)
        policy = lv.policy or {"RevisionId": str(uuid.uuid4()), "Statements": {}}
        if sid in policy["Statements"]:
            raise AwsError("ResourceConflictException", f"The statement id ({sid}) provided already exists. Please "
                           "provide a new statement id, or remove the existing statement.")
        if revision is not None and revision != policy["RevisionId"]:
            raise _revision_mismatch()
        statement: dict = {"Sid": sid, "Effect": "Allow", "Principal": principal, "Action": action,
                           "Resource": lv.config["LayerVersionArn"]}
        if organization is not None:
            statement["Condition"] = {"StringEquals": {"aws:PrincipalOrgID": organization}}
        lv.policy = {"RevisionId": str(uuid.uuid4()), "Statements": {**policy["Statements"], sid: statement}}
        self.repo.set_policy(lv.name, lv.version, lv.policy)
        return {"Statement": json.dumps(statement), "RevisionId": lv.policy["RevisionId"]}

    def remove_permission(self, raw_name: str, raw_version: str, sid: str, revision: str | None) -> None:
        lv = self._require(raw_name, raw_version)
        policy = lv.policy or {"RevisionId": "", "Statements": {}}
        if revision is not None and revision != policy["RevisionId"]:
            raise _revision_mismatch()
        if sid not in policy["Statements"]:
            raise AwsError("ResourceNotFoundException", f"Statement {sid} is not found in resource policy.")
        statements = {k: s for k, s in policy["Statements"].items() if k != sid}
        lv.policy = {"RevisionId": str(uuid.uuid4()), "Statements": statements}
        self.repo.set_policy(lv.name, lv.version, lv.policy)

    def get_policy(self, raw_name: str, raw_version: str) -> dict:
        lv = self._require(raw_name, raw_version)
        if lv.policy is None:
            raise AwsError("ResourceNotFoundException", "No policy is associated with the given resource.")
        document = {"Version": "2012-10-17", "Id": "default", "Statement": list(lv.policy["Statements"].values())}
        return {"Policy": json.dumps(document), "RevisionId": lv.policy["RevisionId"]}

    # ------------------------------------------------------------------ functions' Layers

    def attach(self, value: object) -> AttachedLayers:
        """A function's `Layers` (CreateFunction, UpdateFunctionConfiguration): checked as AWS checks them, resolved
        to the configuration's entries and the packages to unpack at /opt, in the order given."""
        if not isinstance(value, list):
            raise validation(value, "layers", "Member must be a list of layer version ARNs")
        if len(value) > MAX_LAYERS_PER_FUNCTION:
            raise AwsError("InvalidParameterValueException", "Cannot reference more than 5 layers.")
        entries: list[dict] = []
        hexes: list[str] = []
        seen: dict[str, str] = {}   # layer ARN -> the version ARN naming it first
        for arn in value:
            parts = _ARN_PARTS.fullmatch(arn) if isinstance(arn, str) and len(arn) <= 2048 else None
            if parts is None or parts["version"] is None:
                raise validation([arn], "layers", _LIST_CONSTRAINT)
            if parts["account"] == self.settings.account_id and parts["region"] != self.settings.region:
                raise AwsError("InvalidParameterValueException", "Layers are not in the same region as the function. "
                               f"Layers are expected to be in region {self.settings.region}.")
            found = self._find(parts["name"], int(parts["version"])) if self._ours(
                parts["region"], parts["account"]) else None
            if found is None and (shared := self._shared(parts)) is not None:
                found, peer = shared
                self.code.put_zip(peer.code.read_zip(found.code_hex))   # this account's copy of the package
            if found is None:
                raise AwsError("InvalidParameterValueException", f"Layer version {arn} does not exist.")
            layer = arn.rsplit(":", 1)[0]
            if layer in seen:
                raise AwsError("InvalidParameterValueException", "Two different versions of the same layer are not "
                               f"allowed to be referenced in the same function. {seen[layer]} and {arn} are "
                               "versions of the same layer.")
            seen[layer] = arn
            entries.append({"Arn": arn, "CodeSize": found.config["Content"]["CodeSize"]})
            hexes.append(found.code_hex)
        return AttachedLayers(entries, hexes)

    # ------------------------------------------------------------------ for the registry

    def package(self, name: str, number: int) -> bytes | None:
        found = self._find(name, number)
        return self.code.read_zip(found.code_hex) if found is not None else None

    def code_hexes(self) -> set[str]:
        return {lv.code_hex for versions in self.layers.values() for lv in versions.values()}

    def total_code_size(self) -> int:
        return sum(lv.config["Content"]["CodeSize"] for versions in self.layers.values() for lv in versions.values())


def _revision_mismatch() -> AwsError:
    return AwsError("PreconditionFailedException", "The Revision Id provided does not match the latest Revision Id. "
                    "Call the GetLayerPolicy API to retrieve the latest Revision Id")

