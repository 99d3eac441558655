"""Tags on every taggable Lambda resource (TagService): ListTags, TagResource and UntagResource for functions, code
signing configurations and event source mappings, dispatched on the resource ARN, with AWS's validation (the
resource pattern, 50 tags a resource, key and value lengths, no `aws:` prefix) and errors. Their HTTP routes are
api/tags.py. Lamina has no capacity providers, so a capacity-provider ARN is one that does not exist (AWS's 404).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from lamina.functions.code_signing import CodeSigningService
from lamina.functions.errors import AwsError, not_found, validation
from lamina.functions.event_source_mappings import EventSourceMappingService
from lamina.functions.registry import FunctionService
from lamina.functions.validation import check_tags

_REGION = r"(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}"
RESOURCE_RE = re.compile(
    rf"arn:(aws[a-zA-Z-]*):lambda:{_REGION}:\d{{12}}:(function:[a-zA-Z0-9-_]+(:(\$LATEST|[a-zA-Z0-9-_]+))?|"
    r"layer:([a-zA-Z0-9-_]+)|code-signing-config:csc-[a-z0-9]{17}|event-source-mapping:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-"
    r"[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|capacity-provider:[a-zA-Z0-9-_]+)")


@dataclass(frozen=True)
class Taggable:
    """One kind of resource: its tags by ARN (raising AWS's 404 when there is none) and how to keep changed ones."""

    tags: Callable[[str], dict[str, str]]
    save: Callable[[str, dict[str, str]], None]


class TagService:
    def __init__(self, functions: FunctionService) -> None:
        self.functions = functions
        self.kinds: dict[str, Taggable] = {"function": Taggable(self._function_tags, self._save_function_tags)}

    def register(self, kind: str, taggable: Taggable) -> None:
        """Another service's resources (by the ARN's resource type: 'code-signing-config', 'event-source-mapping')."""
        self.kinds[kind] = taggable

    def _resource(self, arn: str) -> tuple[str, Taggable]:
        if not isinstance(arn, str) or len(arn) > 256 or not RESOURCE_RE.fullmatch(arn):
            raise validation(arn, "resource", f"Member must satisfy regular expression pattern: {RESOURCE_RE.pattern}")
        kind = arn.split(":")[5]
        if kind == "function" and len(arn.split(":")) > 7:
            raise AwsError("InvalidParameterValueException", "Tags on function aliases and versions are not "
                           "supported. Please specify a function ARN.")
        taggable = self.kinds.get(kind)
        if taggable is None:
            raise _missing(kind, arn)
        return arn, taggable

    def list_tags(self, arn: str) -> dict:
        arn, taggable = self._resource(arn)
        return {"Tags": dict(taggable.tags(arn))}

    def tag(self, arn: str, body: dict) -> None:
        arn, taggable = self._resource(arn)
        tags = body.get("Tags")
        if tags is None:
            raise validation("null", "tags", "Member must not be null")
        if tags == {}:
            raise AwsError("InvalidParameterValueException", "An error occurred and the request cannot be processed.")
        merged = dict(taggable.tags(arn))
        merged.update(check_tags(tags))
        check_tags(merged)   # the limit counts the tags the resource already has
        taggable.save(arn, merged)

    def untag(self, arn: str, keys: list[str]) -> None:
        arn, taggable = self._resource(arn)
        if not keys:
            raise AwsError("ValidationException", "1 validation error detected: Value null at 'tagKeys' failed to "
                           "satisfy constraint: Member must not be null")
        current = dict(taggable.tags(arn))
        remaining = {k: tag for k, tag in current.items() if k not in keys}
        if remaining != current:
            taggable.save(arn, remaining)

    # ------------------------------------------------------------------ functions

    def _function_tags(self, arn: str) -> dict[str, str]:
        return self.functions.function_for_arn(arn).tags

    def _save_function_tags(self, arn: str, tags: dict[str, str]) -> None:
        fn = self.functions.function_for_arn(arn)
        fn.tags.clear()
        fn.tags.update(tags)
        self.functions.set_tags(fn)


def _missing(kind: str, arn: str) -> AwsError:
    if kind == "function":
        return not_found(arn)
    if kind == "capacity-provider":
        return AwsError("ResourceNotFoundException", f"Capacity provider not found: {arn}")
    if kind == "event-source-mapping":
        return AwsError("ResourceNotFoundException", f"Event source mapping not found: {arn}")
    return AwsError("ResourceNotFoundException", "The resource you requested does not exist.")


def code_signing_taggable(service: CodeSigningService) -> Taggable:
    def tags(arn: str) -> dict[str, str]:
        return service.get_config(arn).tags

    def save(arn: str, new: dict[str, str]) -> None:
        csc = service.get_config(arn)
        service.set_tags(csc, new, [k for k in csc.tags if k not in new])

    return Taggable(tags, save)


def event_source_mapping_taggable(service: EventSourceMappingService) -> Taggable:
    """A mapping's tags ride in its stored document as the private `_Tags` (the service does not render `_` keys)."""
    def mapping(arn: str) -> dict:
        config = service.mappings.get(arn.rsplit(":", 1)[-1])
        if config is None or config.get("State") == "Deleting":
            raise _missing("event-source-mapping", arn)
        return config

    def tags(arn: str) -> dict[str, str]:
        return dict(mapping(arn).get("_Tags") or {})

    def save(arn: str, new: dict[str, str]) -> None:
        config = mapping(arn)
        config["_Tags"] = dict(new)
        service.repo.upsert(config)

    return Taggable(tags, save)
