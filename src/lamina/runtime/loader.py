"""Loading the handler: import `module.function` the way AWS's Python runtime does, with its error types."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from .errors import error_body


class InitError(Exception):
    """The handler cannot be loaded; body is the AWS-shaped error (an INIT_ERROR frame's body)."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body["errorMessage"])
        self.body = body


def load_handler(spec: str) -> Callable[[Any, Any], Any]:
    """Import `module.function` the way AWS's runtime does, with its error types."""
    import importlib

    try:
        modname, funcname = spec.rsplit(".", 1)
    except ValueError as exc:
        raise InitError({"errorMessage": f"Bad handler '{spec}': {exc}",
                         "errorType": "Runtime.MalformedHandlerName", "requestId": "", "stackTrace": []}) from None
    modname = modname.replace("/", ".")
    try:
        if modname.split(".")[0] in sys.builtin_module_names:
            raise ImportError(f"Cannot use built-in module {modname} as a handler module")
        module = importlib.import_module(modname)
    except ImportError as exc:
        raise InitError({"errorMessage": f"Unable to import module '{modname}': {exc}",
                         "errorType": "Runtime.ImportModuleError", "requestId": "", "stackTrace": []}) from None
    except SyntaxError as exc:
        raise InitError({"errorMessage": f"Syntax error in module '{modname}': {exc}",
                         "errorType": "Runtime.UserCodeSyntaxError", "requestId": "", "stackTrace": []}) from None
    except Exception as exc:
        raise InitError(error_body(exc)) from None
    func = getattr(module, funcname, None)
    if func is None or not callable(func):
        raise InitError({"errorMessage": f"Handler '{funcname}' missing on module '{modname}'",
                         "errorType": "Runtime.HandlerNotFound", "requestId": "", "stackTrace": []})
    return func
