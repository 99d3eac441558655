"""Pages of a listing in AWS's style: at most MaxItems (or a default) items after an opaque Marker, and a NextMarker
while more follow."""

from __future__ import annotations

import base64
from collections.abc import Callable

from lamina.functions.errors import AwsError


def encode_marker(value: str) -> str:
    """The opaque Marker a page hands out for the listing position `value`."""
    return base64.urlsafe_b64encode(value.encode()).decode()


def decode_marker(marker: str) -> str:
    """The listing position a Marker names; a Marker Lamina did not hand out is AWS's invalid-token error."""
    try:
        return base64.urlsafe_b64decode(marker.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        raise AwsError("InvalidParameterValueException", "Invalid pagination token (Marker).") from None


def page(items: list[dict], key: Callable[[dict], str], marker: str | None, max_items: int | None,
         default: int = 50) -> tuple[list[dict], str | None]:
    """One page of `items` (already in listing order): those after the item whose key the marker names, and the
    marker of the next page (None on the last)."""
    start = 0
    if marker:
        after = decode_marker(marker)
        start = next((i + 1 for i, item in enumerate(items) if key(item) == after), len(items))
    limit = max_items or default
    chunk = items[start:start + limit]
    more = start + limit < len(items)
    return chunk, encode_marker(key(chunk[-1])) if more and chunk else None
