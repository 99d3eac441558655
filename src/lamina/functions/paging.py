"""Pages of a listing in AWS's style: at most MaxItems (or a default) items after an opaque Marker, and a NextMarker
while more follow."""

from __future__ import annotations

import base64
from collections.abc import Callable

from lamina.functions.errors import AwsError


def page(items: list[dict], key: Callable[[dict], str], marker: str | None, max_items: int | None,
         default: int = 50) -> tuple[list[dict], str | None]:
    """One page of `items` (already in listing order): those after the item whose key the marker names, and the
    marker of the next page (None on the last)."""
    start = 0
    if marker:
        try:
            after = base64.urlsafe_b64decode(marker.encode()).decode()
        except (ValueError, UnicodeDecodeError):
            raise AwsError("InvalidParameterValueException", "Invalid pagination token (Marker).") from None
        start = next((i + 1 for i, item in enumerate(items) if key(item) == after), len(items))
    limit = max_items or default
    chunk = items[start:start + limit]
    more = start + limit < len(items)
    return chunk, base64.urlsafe_b64encode(key(chunk[-1]).encode()).decode() if more and chunk else None
