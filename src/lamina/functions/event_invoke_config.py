"""Event-invoke configuration: how a function's asynchronous invocations are retried and where their results go.

Put/Get/Update/Delete/ListFunctionEventInvokeConfig(s) with AWS's fields, qualifier rules and recorded
errors (spec/events.md §1.3): one configuration per function and qualifier ($LATEST, a version, an alias;
$LATEST by default); Put replaces the whole configuration ("if you exclude any settings, they are
removed"), Update changes only what it names; PublishVersion copies none. The delivery loop (events/)
reads `effective()` for every event.

Destinations are checked when they are set: a destination of a kind Lamina has (another function
today; `destination_kinds` takes more, such as queues and event buses, from the parts that provide
them) must exist, and any other ARN gets AWS's error for a destination it cannot use.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from lamina.functions import validation as v
from lamina.functions.errors import AwsError, validation
from lamina.functions.names import check_qualifier, parse_function_name, resolve_qualifier
from lamina.functions.registry import LATEST, FunctionService
from lamina.store.db import Database
from lamina.store.event_invoke_configs import EventInvokeConfigRepo, EventInvokeConfigRow

DEFAULT_RETRIES = 2
DEFAULT_MAX_AGE = 21600
MIN_AGE, MAX_AGE = 60, 21600
MAX_RETRIES = 2
DESTINATION_PATTERN = re.compile(
    r"$|kafka://([^.]([a-zA-Z0-9\-_.]{0,248}))|arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\-])+:((eusc-)?[a-z]{2}((-gov)|"
    r"(-iso([a-z]?)))?-[a-z]+-\d{1})?:(\d{12})?:(.*)")
_SIDES = (("OnSuccess", "onSuccess"), ("OnFailure", "onFailure"))


@dataclass(frozen=True, slots=True)
class EventInvokeSettings:
    """What the delivery loop needs for one event: AWS's defaults where nothing is configured."""

    max_retries: int = DEFAULT_RETRIES
    max_age_s: int = DEFAULT_MAX_AGE
    on_success: str | None = None
    on_failure: str | None = None


DEFAULTS = EventInvokeSettings()


def arn_service(arn: str) -> str:
    """The service field of an ARN ('lambda', 'sqs', ...); '' for something else (kafka://...)."""
    parts = arn.split(":", 3)
    return parts[2] if len(parts) > 3 and parts[0] == "arn" else ""


class EventInvokeConfigService:
    def __init__(self, functions: FunctionService, db: Database) -> None:
        self.functions = functions
        self.repo = EventInvokeConfigRepo(db)
        self.configs: dict[tuple[str, str], dict] = {}
        # ARN service -> whether an ARN of it names a destination that exists. Only kinds listed here can be set;
        # the parts that add queues or event buses register theirs (the delivery side: events/destinations.py).
        self.destination_kinds: dict[str, Callable[[str], bool]] = {"lambda": self._function_exists}
        functions.delete_hooks.append(self._function_deleted)
        functions.qualifier_hooks.append(self._qualifier_deleted)

    def load(self) -> None:
        for row in self.repo.all():
            self.configs[(row.function_name, row.qualifier)] = row.config

    # ------------------------------------------------------------------ the API

    def put(self, raw_name: str, qualifier: str | None, body: object) -> dict:
        config = self._settings(body)
        name, q = self._target(raw_name, qualifier, missing_config=False)
        self._check_destinations(name, config.get("DestinationConfig"))
        return self._save(name, q, config)

    def update(self, raw_name: str, qualifier: str | None, body: object) -> dict:
        changes = self._settings(body)
        name, q = self._target(raw_name, qualifier, missing_config=False)
        current = self.configs.get((name, q))
        if current is None:
            raise self._no_config(name, q)
        self._check_destinations(name, changes.get("DestinationConfig"))
        merged = {k: val for k, val in current.items() if k != "LastModified"}
        for key in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds"):
            if key in changes:
                merged[key] = changes[key]
        if "DestinationConfig" in changes:
            dest = dict(merged.get("DestinationConfig") or {})
            dest.update(changes["DestinationConfig"])  # a side given replaces that side; the other stays
            merged["DestinationConfig"] = dest
        return self._save(name, q, merged)

    def get(self, raw_name: str, qualifier: str | None) -> dict:
        name, q = self._target(raw_name, qualifier, missing_config=True)
        config = self.configs.get((name, q))
        if config is None:
            raise self._no_config(name, q)
        return self._render(name, q, config)

    def delete(self, raw_name: str, qualifier: str | None) -> None:
        name, q = self._target(raw_name, qualifier, missing_config=True)
        if self.configs.pop((name, q), None) is None:
            raise self._no_config(name, q)
        self.repo.delete(name, q)

    def list(self, raw_name: str, marker: str | None, max_items: str | None) -> dict:
        limit = 50
        if max_items is not None:
            try:
                limit = int(max_items)
            except ValueError:
                raise validation(max_items, "maxItems", "Member must be an integer") from None
            if limit < 1:
                raise validation(limit, "maxItems", "Member must have value greater than or equal to 1")
            if limit > 50:
                raise validation(limit, "maxItems", "Member must have value less than or equal to 50")
        ref = parse_function_name(raw_name)
        fn = self.functions.functions.get(ref.name)
        if fn is None:
            raise _function_missing()
        entries = sorted(((q, c) for (n, q), c in self.configs.items() if n == fn.name), key=lambda e: _order(e[0]))
        start = 0
        if marker:
            start = next((i for i, (q, _) in enumerate(entries) if q == marker), None)  # type: ignore[assignment]
            if start is None:
                raise AwsError("InvalidParameterValueException", "Invalid pagination token (Marker).")
        page = entries[start : start + limit]
        out: dict = {"FunctionEventInvokeConfigs": [self._render(fn.name, q, c) for q, c in page]}
        if start + limit < len(entries):
            out["NextMarker"] = entries[start + limit][0]
        return out

    # ------------------------------------------------------------------ the delivery loop's view

    def effective(self, function: str, qualifier: str | None) -> EventInvokeSettings:
        config = self.configs.get((function, qualifier or LATEST))
        if config is None:
            return DEFAULTS
        dest = config.get("DestinationConfig") or {}
        return EventInvokeSettings(
            config.get("MaximumRetryAttempts", DEFAULT_RETRIES),
            config.get("MaximumEventAgeInSeconds", DEFAULT_MAX_AGE),
            (dest.get("OnSuccess") or {}).get("Destination") or None,
            (dest.get("OnFailure") or {}).get("Destination") or None)

    # ------------------------------------------------------------------ checks

    def _settings(self, body: object) -> dict:
        """The settings a Put or Update gives, range-checked (ValidationException, as AWS words it)."""
        body = v.require_object(body)
        out: dict = {}
        retries = v.integer(body, "MaximumRetryAttempts", "maximumRetryAttempts", 0, MAX_RETRIES)
        if retries is not None:
            out["MaximumRetryAttempts"] = retries
        age = v.integer(body, "MaximumEventAgeInSeconds", "maximumEventAgeInSeconds", MIN_AGE, MAX_AGE)
        if age is not None:
            out["MaximumEventAgeInSeconds"] = age
        dest = body.get("DestinationConfig")
        if dest is not None:
            if not isinstance(dest, dict):
                raise validation(dest, "destinationConfig", "Member must be a structure")
            clean: dict = {}
            for key, member in _SIDES:
                side = dest.get(key)
                if side is None:
                    continue
                if not isinstance(side, dict):
                    raise validation(side, f"destinationConfig.{member}", "Member must be a structure")
                arn = side.get("Destination")
                if arn is None:
                    clean[key] = {}
                    continue
                if not isinstance(arn, str):
                    raise validation(arn, f"destinationConfig.{member}.destination", "Member must be a string")
                if len(arn) > 350:
                    raise validation(arn, f"destinationConfig.{member}.destination",
                                     "Member must have length less than or equal to 350")
                if not DESTINATION_PATTERN.fullmatch(arn):
                    raise validation(arn, f"destinationConfig.{member}.destination",
                                     f"Member must satisfy regular expression pattern: {DESTINATION_PATTERN.pattern}")
                clean[key] = {"Destination": arn} if arn else {}
            out["DestinationConfig"] = clean
        if not out:
            raise AwsError("InvalidParameterValueException",
                           "You must specify at least one of error handling or destination setting.")
        return out

    def _target(self, raw_name: str, qualifier: str | None, missing_config: bool) -> tuple[str, str]:
        """(function name, qualifier) of an existing function and qualifier. A missing one is AWS's 'doesn't
        exist' for Put, Update and List, and 'doesn't have an EventInvokeConfig' for Get and Delete."""
        ref = parse_function_name(raw_name)
        q = resolve_qualifier(ref, qualifier) or LATEST
        if q != LATEST:
            check_qualifier(q)
        fn = self.functions.functions.get(ref.name)
        if fn is None or not (q == LATEST or q in fn.versions or q in fn.aliases):
            if missing_config:
                raise self._no_config(ref.name, q)
            raise _function_missing()
        return fn.name, q

    def _check_destinations(self, name: str, dest: dict | None) -> None:
        if not dest:
            return
        for key, _ in _SIDES:
            arn = (dest.get(key) or {}).get("Destination")
            if not arn:
                continue
            service = arn_service(arn)
            exists = self.destination_kinds.get(service)
            if exists is None:
                raise AwsError("InvalidParameterValueException",
                               f"The provided destination config {_describe(dest)} is invalid.")
            if service == "lambda" and self._same_function(arn, name):
                raise AwsError("InvalidParameterValueException",
                               "You can't specify the function as a destination for itself.")
            if not exists(arn):
                raise AwsError("InvalidParameterValueException", f"The destination ARN {arn} is invalid.")

    def _function_exists(self, arn: str) -> bool:
        try:
            ref = parse_function_name(arn)
        except AwsError:
            return False
        fn = self.functions.functions.get(ref.name)
        q = ref.qualifier
        return fn is not None and (q in (None, LATEST) or q in fn.versions or q in fn.aliases)

    @staticmethod
    def _same_function(arn: str, name: str) -> bool:
        try:
            return parse_function_name(arn).name == name
        except AwsError:
            return False

    # ------------------------------------------------------------------ storage and shapes

    def _save(self, name: str, qualifier: str, config: dict) -> dict:
        config = dict(config, LastModified=time.time())
        self.configs[(name, qualifier)] = config
        self.repo.upsert(EventInvokeConfigRow(name, qualifier, config))
        return self._render(name, qualifier, config)

    def _render(self, name: str, qualifier: str, config: dict) -> dict:
        dest = config.get("DestinationConfig") or {}
        out: dict = {"LastModified": config["LastModified"], "FunctionArn": self.functions.arn(name, qualifier)}
        for key in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds"):
            if key in config:
                out[key] = config[key]
        out["DestinationConfig"] = {"OnSuccess": dict(dest.get("OnSuccess") or {}),
                                    "OnFailure": dict(dest.get("OnFailure") or {})}
        return out

    def _no_config(self, name: str, qualifier: str) -> AwsError:
        return AwsError("ResourceNotFoundException",
                        f"The function {self.functions.arn(name, qualifier)} doesn't have an EventInvokeConfig")

    def _function_deleted(self, name: str) -> None:
        for key in [k for k in self.configs if k[0] == name]:
            del self.configs[key]
        self.repo.delete_function(name)

    def _qualifier_deleted(self, name: str, qualifier: str) -> None:
        if self.configs.pop((name, qualifier), None) is not None:
            self.repo.delete(name, qualifier)


def _function_missing() -> AwsError:
    return AwsError("ResourceNotFoundException", "The function doesn't exist.")


def _order(qualifier: str) -> tuple[int, int, str]:
    """$LATEST, then versions by number, then aliases by name."""
    if qualifier == LATEST:
        return (0, 0, "")
    if qualifier.isdigit():
        return (1, int(qualifier), "")
    return (2, 0, qualifier)


def _describe(dest: dict) -> str:
    """DestinationConfig as AWS prints it in its 'provided destination config ... is invalid' message."""
    parts = []
    for key, member in _SIDES:
        side = dest.get(key)
        if side is None:
            parts.append(f"{member}=null")
        else:
            parts.append(f"{member}={key}(destination={side.get('Destination') or 'null'})")
    return f"DestinationConfig({', '.join(parts)})"
