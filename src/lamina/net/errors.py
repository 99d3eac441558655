"""EC2's error shape: a code such as InvalidVpcID.NotFound and a message (the EC2 API renders them as XML; the
Lambda API wraps them in its own wording)."""

from __future__ import annotations


class NetError(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def not_found(kind: str, resource_id: str) -> NetError:
    """EC2's NotFound errors, worded as EC2 words them."""
    if kind == "vpc":
        return NetError("InvalidVpcID.NotFound", f"The vpc ID '{resource_id}' does not exist")
    if kind == "subnet":
        return NetError("InvalidSubnetID.NotFound", f"The subnet ID '{resource_id}' does not exist")
    if kind == "sg":
        return NetError("InvalidGroup.NotFound", f"The security group '{resource_id}' does not exist")
    return NetError("InvalidNetworkInterfaceID.NotFound",
                    f"The networkInterface ID '{resource_id}' does not exist")
