"""The errors EventBridge and EventBridge Scheduler answer with; api/ renders them in each protocol's shape."""

from __future__ import annotations


class BridgeError(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def validation(message: str) -> BridgeError:
    return BridgeError("ValidationException", message, 400)
