"""Versions and aliases (VersionService): PublishVersion, ListVersionsByFunction, Create/Get/Update/Delete/ListAliases.

A published version is an immutable snapshot of $LATEST's code and configuration, numbered
1, 2, ... per function (numbers are never reused); the dispatcher runs each version in its own
pool. An alias names a version and may send a weighted share of its invocations to one more
published version (RoutingConfig.AdditionalVersionWeights); the choice is made per invocation.
The records and qualifier resolution live in registry.py; this module owns the operations: their
validation in AWS's order, error types and messages, and what they change in the registry. Their HTTP
routes are api/versions.py.
"""

from __future__ import annotations

import re
import uuid

from lamina.functions import validation as v
from lamina.functions.errors import AwsError, not_found, validation
from lamina.functions.names import parse_function_name
from lamina.functions.paging import decode_marker, encode_marker
from lamina.functions.registry import LATEST, LISTING_OMITS, Alias, Function, FunctionService, publish_to

ALIAS_RE = re.compile(r"(?!^[0-9]+$)([a-zA-Z0-9-_]+)")
FUNCTION_VERSION_RE = re.compile(r"(\$LATEST(\.PUBLISHED)?|[0-9]+)")
_WEIGHT_CONSTRAINT = ("Map value must satisfy constraint: [Member must have value less than or equal to 1.0, Member "
                      "must have value greater than or equal to 0.0, Member must not be null]")
_KEY_CONSTRAINT = ("Map keys must satisfy constraint: [Member must have length less than or equal to 1024, Member "
                   "must have length greater than or equal to 1, Member must satisfy regular expression pattern: "
                   "[0-9]+]")
DEFAULT_PAGE = 50


class VersionService:
    def __init__(self, functions: FunctionService) -> None:
        self.functions = functions

    def _function(self, raw_name: str) -> Function:
        ref = parse_function_name(raw_name)
        fn = self.functions.functions.get(ref.name)
        if fn is None:
            raise not_found(self.functions.arn(ref.name))
        return fn

    # ------------------------------------------------------------------ versions

    def publish_version(self, raw_name: str, body: dict) -> dict:
        body = v.require_object(body)
        description = v.string(body, "Description", "description", 256)
        code_sha = v.string(body, "CodeSha256", "codeSha256", 1024)
        v.string(body, "RevisionId", "revisionId", 1024)
        publish_to(body)
        fn = self.functions.unqualified(raw_name)
        self.functions.check_updatable(fn, body)
        current = fn.config["CodeSha256"]
        if code_sha is not None and code_sha != current:
            raise AwsError("InvalidParameterValueException", f"CodeSHA256 ({code_sha}) is different from current "
                           f"CodeSHA256 in $LATEST ({current}). Please try again with the CodeSHA256 in $LATEST.")
        return dict(self.functions.publish(fn, description).config)

    def list_versions(self, raw_name: str, marker: str | None, max_items: int | None) -> dict:
        """$LATEST first, then the published versions in order; without State fields, as AWS lists them."""
        fn = self._function(raw_name)
        items = [fn] + sorted(fn.versions.values(), key=lambda f: int(f.version))
        start = 0
        if marker:
            after = _order(decode_marker(marker))
            start = next((i for i, f in enumerate(items) if _order(f.version) > after), len(items))
        limit = max_items or DEFAULT_PAGE
        page = items[start : start + limit]
        versions = []
        for ver in page:
            config = {k: val for k, val in ver.config.items() if k not in LISTING_OMITS}
            config["FunctionArn"] = self.functions.arn(fn.name, ver.version)
            versions.append(config)
        out: dict = {"Versions": versions}
        if start + limit < len(items):
            out["NextMarker"] = encode_marker(page[-1].version)
        return out

    # ------------------------------------------------------------------ aliases

    def describe(self, fn: Function, alias: Alias) -> dict:
        out: dict = {"AliasArn": self.functions.arn(fn.name, alias.name), "Name": alias.name,
                     "FunctionVersion": alias.function_version, "Description": alias.description}
        if alias.weights:
            out["RoutingConfig"] = {"AdditionalVersionWeights": dict(alias.weights)}
        out["RevisionId"] = alias.revision_id
        return out

    def create_alias(self, raw_name: str, body: dict) -> dict:
        body = v.require_object(body)
        v.required(body, "Name", "name")
        v.required(body, "FunctionVersion", "functionVersion")
        name = _alias_name(body["Name"])
        version = _function_version(body["FunctionVersion"])
        description = v.string(body, "Description", "description", 256) or ""
        weights = _routing(body) or {}
        ref = parse_function_name(raw_name)
        fn = self.functions.functions.get(ref.name)
        if fn is None:
            raise not_found(self.functions.arn(ref.name, version))
        self._version_exists(fn, version)
        if name in fn.aliases:
            raise AwsError("ResourceConflictException", f"Alias already exists: {self.functions.arn(fn.name, name)}")
        self._check_routing(fn, version, weights)
        alias = Alias(name, version, description, weights)
        self.functions.save_alias(fn, alias)
        return self.describe(fn, alias)

    def get_alias(self, raw_name: str, name: str) -> dict:
        name = _alias_name(name)
        fn = self._function(raw_name)
        alias = fn.aliases.get(name)
        if alias is None:
            raise AwsError("ResourceNotFoundException", f"Cannot find alias arn: {self.functions.arn(fn.name, name)}")
        return self.describe(fn, alias)

    def update_alias(self, raw_name: str, name: str, body: dict) -> dict:
        body = v.require_object(body)
        name = _alias_name(name)
        version = _function_version(body["FunctionVersion"]) if body.get("FunctionVersion") is not None else None
        description = v.string(body, "Description", "description", 256)
        weights = _routing(body)
        revision = v.string(body, "RevisionId", "revisionId", 1024)
        fn = self._function(raw_name)
        alias = fn.aliases.get(name)
        if alias is None:
            raise AwsError("ResourceNotFoundException", f"Alias not found: {self.functions.arn(fn.name, name)}")
        if revision is not None and revision != alias.revision_id:
            raise AwsError("PreconditionFailedException", "The Revision Id provided does not match the latest "
                           "Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id")
        if version is not None:
            self._version_exists(fn, version)
        else:
            version = alias.function_version
        if weights is None:
            weights = alias.weights
        self._check_routing(fn, version, weights)
        updated = Alias(name, version, alias.description if description is None else description, dict(weights),
                        str(uuid.uuid4()))
        self.functions.save_alias(fn, updated)
        return self.describe(fn, updated)

    def delete_alias(self, raw_name: str, name: str) -> None:
        name = _alias_name(name)
        fn = self._function(raw_name)
        self.functions.delete_alias(fn, name)  # an alias that is not there: 204 all the same, as on AWS

    def list_aliases(self, raw_name: str, function_version: str | None, marker: str | None,
                     max_items: int | None) -> dict:
        if function_version is not None:
            _function_version(function_version)
        fn = self._function(raw_name)
        aliases = sorted((a for a in fn.aliases.values()
                          if function_version is None or a.function_version == function_version),
                         key=lambda a: a.name)
        start = 0
        if marker:
            after = decode_marker(marker)
            start = next((i for i, a in enumerate(aliases) if a.name > after), len(aliases))
        limit = max_items or DEFAULT_PAGE
        page = aliases[start : start + limit]
        out: dict = {"Aliases": [self.describe(fn, a) for a in page]}
        if start + limit < len(aliases):
            out["NextMarker"] = encode_marker(page[-1].name)
        return out

    # ------------------------------------------------------------------ checks

    def _version_exists(self, fn: Function, version: str) -> None:
        if version != LATEST and version not in fn.versions:
            raise not_found(self.functions.arn(fn.name, version))

    def _check_routing(self, fn: Function, primary: str, weights: dict[str, float]) -> None:
        """AWS's rules and order: one additional version, a weight in [0, 1], not the primary version, a
        primary that is not $LATEST, a published version that exists."""
        if len(weights) > 1:
            raise AwsError("InvalidParameterValueException",
                           "Number of items in AdditionalVersionWeights cannot be greater than 1")
        for key, weight in weights.items():
            if not 0.0 <= weight <= 1.0:
                raise validation(f"{{{key}={weight}}}", "routingConfig.additionalVersionWeights", _WEIGHT_CONSTRAINT)
            if key == primary:
                raise AwsError("InvalidParameterValueException", f"Invalid function version {primary}. Function "
                               f"version {primary} is already included in routing configuration.")
            if primary == LATEST:
                err = AwsError("InvalidParameterValueException",
                               "$LATEST is not supported for an alias pointing to more than 1 version")
                err.typed = False   # AWS's answer here has no Type member
                raise err
            if not (key.isascii() and key.isdigit()) or len(key) > 1024:
                raise validation(f"{{{key}={weight}}}", "routingConfig.additionalVersionWeights", _KEY_CONSTRAINT)
            if key not in fn.versions:
                raise not_found(self.functions.arn(fn.name, key))


def _order(version: str) -> int:
    return 0 if version == LATEST else int(version) if version.isdigit() else -1


def _alias_name(value: object) -> str:
    if not isinstance(value, str):
        raise validation(value, "name", "Member must be a string")
    if not 1 <= len(value) <= 128:
        raise validation(value, "name", "Member must have length less than or equal to 128" if value
                         else "Member must have length greater than or equal to 1")
    if not ALIAS_RE.fullmatch(value):
        raise validation(value, "name", f"Member must satisfy regular expression pattern: {ALIAS_RE.pattern}")
    return value


def _function_version(value: object) -> str:
    if not isinstance(value, str):
        raise validation(value, "functionVersion", "Member must be a string")
    if not 1 <= len(value) <= 1024:
        raise validation(value, "functionVersion", "Member must have length less than or equal to 1024" if value
                         else "Member must have length greater than or equal to 1")
    if not FUNCTION_VERSION_RE.fullmatch(value):
        raise validation(value, "functionVersion",
                         f"Member must satisfy regular expression pattern: {FUNCTION_VERSION_RE.pattern}")
    return value


def _routing(body: dict) -> dict[str, float] | None:
    """RoutingConfig.AdditionalVersionWeights as given (None: not given; {}: no additional version)."""
    config = body.get("RoutingConfig")
    if config is None:
        return None
    if not isinstance(config, dict):
        raise validation(config, "routingConfig", "Member must be an object with AdditionalVersionWeights")
    weights = config.get("AdditionalVersionWeights") or {}
    if not isinstance(weights, dict):
        raise validation(weights, "routingConfig.additionalVersionWeights", "Member must be a map")
    out: dict[str, float] = {}
    for key, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise validation(f"{{{key}={weight}}}", "routingConfig.additionalVersionWeights", _WEIGHT_CONSTRAINT)
        out[str(key)] = float(weight)
    return out
