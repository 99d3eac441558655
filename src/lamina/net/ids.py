"""Resource ids in AWS's formats: a prefix and 17 lowercase hex digits (vpc-0a1b..., subnet-..., sg-..., eni-...)."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(9)[:17]}"
