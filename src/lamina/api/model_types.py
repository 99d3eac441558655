"""A JSON-protocol request's members checked against the types of botocore's model of the API, before a handler reads
them: a number where a name goes, an object where a list goes... is AWS's SerializationException (400), not a
handler's TypeError (500). Found by the botocore-model fuzzer (tests/fuzz/botocore_fuzz.py)."""

from __future__ import annotations

from functools import cache

import botocore.session
from botocore.model import OperationNotFoundError, ServiceModel, Shape

_JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str, "blob": str, "list": list, "structure": dict, "map": dict, "boolean": bool,
    "integer": int, "long": int, "float": (int, float), "double": (int, float), "timestamp": (int, float, str),
}
_MAX_DEPTH = 20


@cache
def _model(service: str) -> ServiceModel:
    return botocore.session.get_session().get_service_model(service)


def type_problem(service: str, operation: str, body: dict) -> str | None:
    """What is of the wrong type in the request body (AWS's SerializationException message), or None."""
    try:
        shape = _model(service).operation_model(operation).input_shape
    except OperationNotFoundError:
        return None
    return _check(shape, body, 0) if shape is not None else None


def _check(shape: Shape, value: object, depth: int) -> str | None:
    if value is None or depth > _MAX_DEPTH:
        return None
    kind = shape.type_name
    wanted = _JSON_TYPES.get(kind)
    if wanted is None:
        return None
    if not isinstance(value, wanted) or (isinstance(value, bool) and kind not in ("boolean",)):
        return f"{type(value).__name__} value can not be converted to a {kind} ({shape.name})"
    if kind == "structure":
        assert isinstance(value, dict)
        for name, member in shape.members.items():
            problem = _check(member, value.get(name), depth + 1)
            if problem is not None:
                return problem
    elif kind == "list":
        assert isinstance(value, list)
        for item in value:
            problem = _check(shape.member, item, depth + 1)
            if problem is not None:
                return problem
    elif kind == "map":
        assert isinstance(value, dict)
        for item in value.values():
            problem = _check(shape.value, item, depth + 1)
            if problem is not None:
                return problem
    return None
