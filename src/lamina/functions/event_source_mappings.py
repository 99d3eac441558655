"""Event source mappings: Create/Get/Update/Delete/ListEventSourceMappings with AWS's fields, states and errors
(spec/events.md §3.1). A mapping's source is one of this server's SQS queues (queues/); the pollers that feed
its function (events/esm.py) watch this service through `listeners`.

States: Create answers `Creating`, Update `Updating` (`Enabling` / `Disabling` when it toggles Enabled), Delete
`Deleting`; a moment later (once the pollers have been told) the mapping is `Enabled` or `Disabled`, or gone.

Deleting the function leaves its mappings as they are (AWS: "To delete ... use DeleteEventSourceMapping"; its
recorded Get after DeleteFunction is unchanged, still Enabled): they stay listable, deletable and updatable, their
poller delivers nothing while the function is missing, and resumes once a function of that name exists again (the
mapping names the function by ARN).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

from lamina.eventpattern import PatternError, compile_pattern
from lamina.functions import validation as v
from lamina.functions.errors import AwsError, validation
from lamina.functions.names import NAMESPACED, parse_function_name, resolve_qualifier
from lamina.functions.registry import FunctionService
from lamina.queues.queue import Queue
from lamina.queues.service import QueueService
from lamina.store.db import Database
from lamina.store.event_source_mappings import EventSourceMappingRepo

SETTLE_S = 0.05
MAX_FILTERS = 5
STREAM_ONLY = ("StartingPosition", "StartingPositionTimestamp", "MaximumRecordAgeInSeconds",
               "BisectBatchOnFunctionError", "MaximumRetryAttempts", "ParallelizationFactor", "DestinationConfig",
               "TumblingWindowInSeconds", "Topics", "Queues", "SourceAccessConfigurations", "SelfManagedEventSource")
RESPONSE_TYPES = ("ReportBatchItemFailures",)


class EventSourceMappingService:
    def __init__(self, functions: FunctionService, db: Database, queues: QueueService) -> None:
        self.functions = functions
        self.queues = queues
        self.repo = EventSourceMappingRepo(db)
        self.mappings: dict[str, dict] = {}
        # Told the UUID of a mapping that was created, changed or deleted (the pollers).
        self.listeners: list[Callable[[str], None]] = []

    def load(self) -> None:
        for config in self.repo.all():
            state = config.get("State")
            if state == "Deleting":
                self.repo.delete(config["UUID"])
                continue
            config["State"] = "Enabled" if config.get("_Enabled", True) else "Disabled"
            self.mappings[config["UUID"]] = config

    # ------------------------------------------------------------------ the API

    def create(self, body: dict) -> dict:
        body = v.require_object(body)
        self._refuse_stream_fields(body)
        arn = body.get("EventSourceArn")
        if not isinstance(arn, str) or not arn:
            raise AwsError("InvalidParameterValueException", "Unrecognized event source, must be kinesis, dynamodb "
                           "stream or sqs.")
        queue = self._queue(arn)
        function_arn = self._function_arn(body.get("FunctionName"))
        enabled = body.get("Enabled", True)
        if not isinstance(enabled, bool):
            raise validation(enabled, "enabled", "Member must be a boolean")
        mapping_id = str(uuid.uuid4())
        config: dict = {
            "UUID": mapping_id,
            "BatchSize": 10,
            "MaximumBatchingWindowInSeconds": 0,
            "EventSourceArn": arn,
            "FunctionArn": function_arn,
            "LastModified": time.time(),
            "State": "Creating",
            "StateTransitionReason": "USER_INITIATED",
            "FunctionResponseTypes": [],
            "EventSourceMappingArn": f"arn:aws:lambda:{self.functions.settings.region}:"
                                     f"{self.functions.settings.account_id}:event-source-mapping:{mapping_id}",
            "_Enabled": enabled,
        }
        self._apply(config, body, queue.fifo)
        for other in self.mappings.values():
            if other["EventSourceArn"] == arn and other["FunctionArn"] == function_arn:
                name = function_arn.rsplit(":function:", 1)[-1]
                raise AwsError("ResourceConflictException", f'An event source mapping with SQS arn (" {arn} ") and '
                               f'function (" {name} ") already exists. Please update or delete the existing mapping '
                               f"with UUID {other['UUID']}", 409)
        self.mappings[mapping_id] = config
        self.repo.upsert(config)
        self._changed(mapping_id, "Enabled" if enabled else "Disabled")
        return self.render(config)

    def get(self, mapping_id: str) -> dict:
        return self.render(self._mapping(mapping_id))

    def update(self, mapping_id: str, body: dict) -> dict:
        body = v.require_object(body)
        config = self._mapping(mapping_id)
        self._refuse_stream_fields(body)
        if "FunctionName" in body:
            config["FunctionArn"] = self._function_arn(body["FunctionName"])
        queue = self.queues.queue_for_arn(config["EventSourceArn"])
        merged = dict(config)
        self._apply(merged, body, queue.fifo if queue is not None else False)
        state = "Updating"
        if "Enabled" in body:
            enabled = body["Enabled"]
            if not isinstance(enabled, bool):
                raise validation(enabled, "enabled", "Member must be a boolean")
            if enabled != merged["_Enabled"]:
                state = "Enabling" if enabled else "Disabling"
            merged["_Enabled"] = enabled
        merged["State"] = state
        merged["StateTransitionReason"] = "USER_INITIATED"
        merged["LastModified"] = time.time()
        config.clear()
        config.update(merged)
        self.repo.upsert(config)
        self._changed(mapping_id, "Enabled" if config["_Enabled"] else "Disabled")
        return self.render(config)

    def delete(self, mapping_id: str) -> dict:
        config = self._mapping(mapping_id)
        config["State"] = "Deleting"
        config["StateTransitionReason"] = "USER_INITIATED"
        self.repo.upsert(config)
        out = self.render(config)
        self._changed(mapping_id, None)
        return out

    def list(self, event_source_arn: str | None, function_name: str | None, marker: str | None,
             max_items: int | None) -> dict:
        items = list(self.mappings.values())
        if event_source_arn:
            items = [m for m in items if m["EventSourceArn"] == event_source_arn]
        if function_name:
            # By name, whether the function exists or not (AWS's list does not check its filters): a mapping outlives
            # its function.
            ref = parse_function_name(function_name, shape=NAMESPACED)
            qualifier = resolve_qualifier(ref, None)
            arn = self.functions.arn(ref.name, qualifier)
            items = [m for m in items if m["FunctionArn"] == arn
                     or (qualifier is None and m["FunctionArn"].startswith(arn + ":"))]
        items.sort(key=lambda m: (m["LastModified"], m["UUID"]))
        start = 0
        if marker:
            start = next((i for i, m in enumerate(items) if m["UUID"] == marker), -1)
            if start < 0:
                raise AwsError("InvalidParameterValueException", "Invalid pagination token (Marker).")
        limit = max_items or 100
        page = items[start : start + limit]
        out: dict = {"EventSourceMappings": [self.render(m) for m in page]}
        if start + limit < len(items):
            out["NextMarker"] = items[start + limit]["UUID"]
        return out

    def render(self, config: dict) -> dict:
        return {k: val for k, val in config.items() if not k.startswith("_")}

    # ------------------------------------------------------------------ checks

    def _mapping(self, mapping_id: str) -> dict:
        config = self.mappings.get(mapping_id)
        if config is None or config["State"] == "Deleting":
            raise AwsError("ResourceNotFoundException", "The resource you requested does not exist.")
        return config

    @staticmethod
    def _refuse_stream_fields(body: dict) -> None:
        for key in STREAM_ONLY:
            if body.get(key) is not None:
                raise AwsError("InvalidParameterValueException",
                               f"Unsupported {key} parameter for given event source mapping type.")

    def _queue(self, arn: str) -> Queue:
        parts = arn.split(":", 5)
        if len(parts) < 6 or parts[0] != "arn" or parts[2] != "sqs":
            raise AwsError("InvalidParameterValueException",
                           f"Unsupported event source {arn}: Lamina's event source mappings take its own SQS queues.")
        if parts[4] != self.functions.settings.account_id:
            raise AwsError("InvalidParameterValueException",
                           f"Unsupported event source {arn}: Lamina's event source mappings take queues of the "
                           f"function's own account ({self.functions.settings.account_id}).")
        queue = self.queues.queue_for_arn(arn)
        if queue is None:
            raise AwsError("InvalidParameterValueException", "Error occurred while ReceiveMessage. SQS Error Code: "
                           "AWS.SimpleQueueService.NonExistentQueue. SQS Error Message: The specified queue does not "
                           "exist.")
        return queue

    def _function_arn(self, name: object) -> str:
        if not isinstance(name, str) or not name:
            raise validation(name, "functionName", "Member must not be null")
        try:
            fn, qualifier = self.functions.target(name)
        except AwsError as exc:
            if exc.code == "ResourceNotFoundException":
                raise AwsError("InvalidParameterValueException", "Function does not exist") from None
            raise
        return self.functions.arn(fn.name, qualifier)

    def _apply(self, config: dict, body: dict, fifo: bool) -> None:
        """The batching, response-type, scaling and filter fields of a Create or Update, checked, into config."""
        batch = v.integer(body, "BatchSize", "batchSize", 1, 10000)
        window = v.integer(body, "MaximumBatchingWindowInSeconds", "maximumBatchingWindowInSeconds", 0, 300)
        if batch is not None:
            config["BatchSize"] = batch
        if window is not None:
            config["MaximumBatchingWindowInSeconds"] = window
        if fifo and config["BatchSize"] > 10:
            raise AwsError("InvalidParameterValueException", "Batch size for FIFO queues must be between 1 and 10.")
        if config["BatchSize"] > 10 and config["MaximumBatchingWindowInSeconds"] < 1:
            raise AwsError("InvalidParameterValueException", "Maximum batch window in seconds must be greater than 0 "
                           "if maximum batch size is greater than 10")
        types = body.get("FunctionResponseTypes")
        if types is not None:
            if not isinstance(types, list) or any(t not in RESPONSE_TYPES for t in types):
                raise validation(types, "functionResponseTypes",
                                 "Member must satisfy constraint: [Member must satisfy enum value set: "
                                 "[ReportBatchItemFailures]]")
            config["FunctionResponseTypes"] = list(dict.fromkeys(types))
        scaling = body.get("ScalingConfig")
        if scaling is not None:
            if not isinstance(scaling, dict):
                raise validation(scaling, "scalingConfig", "Member must be a structure")
            maximum = v.integer(scaling, "MaximumConcurrency", "scalingConfig.maximumConcurrency", 2, 1000)
            if maximum is None:
                config.pop("ScalingConfig", None)
            else:
                config["ScalingConfig"] = {"MaximumConcurrency": maximum}
        criteria = body.get("FilterCriteria")
        if criteria is not None:
            config_criteria = _filters(criteria)
            if config_criteria is None:
                config.pop("FilterCriteria", None)
            else:
                config["FilterCriteria"] = config_criteria

    # ------------------------------------------------------------------ state changes

    def _changed(self, mapping_id: str, settled: str | None) -> None:
        for listener in self.listeners:
            listener(mapping_id)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._settle(mapping_id, settled)
            return
        loop.call_later(SETTLE_S, self._settle, mapping_id, settled)

    def _settle(self, mapping_id: str, settled: str | None) -> None:
        config = self.mappings.get(mapping_id)
        if config is None:
            return
        if settled is None:
            if config["State"] == "Deleting":
                del self.mappings[mapping_id]
                self.repo.delete(mapping_id)
                for listener in self.listeners:
                    listener(mapping_id)
            return
        if config["State"] in ("Creating", "Updating", "Enabling", "Disabling"):
            config["State"] = "Enabled" if config["_Enabled"] else "Disabled"
            self.repo.upsert(config)


def _filters(criteria: object) -> dict | None:
    """FilterCriteria: up to 5 filters, each an event pattern (as a JSON string); {} or no filters clears them."""
    if not isinstance(criteria, dict):
        raise validation(criteria, "filterCriteria", "Member must be a structure")
    filters = criteria.get("Filters")
    if not filters:
        return None
    if not isinstance(filters, list) or len(filters) > MAX_FILTERS:
        raise AwsError("InvalidParameterValueException", "Invalid filter pattern definition.")
    out = []
    for f in filters:
        pattern = f.get("Pattern") if isinstance(f, dict) else None
        if not isinstance(pattern, str):
            raise AwsError("InvalidParameterValueException", "Invalid filter pattern definition.")
        try:
            compile_pattern(pattern)
        except PatternError:
            raise AwsError("InvalidParameterValueException", "Invalid filter pattern definition.") from None
        out.append({"Pattern": pattern})
    return {"Filters": out}
