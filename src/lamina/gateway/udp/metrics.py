"""Counters of a listener and of each of its destinations (plain attributes: the packet path bumps them)."""

from __future__ import annotations


class ListenerMetrics:
    """Packets and bytes through a listener's socket, and packets turned away before any destination."""

    __slots__ = ("packets_in", "bytes_in", "packets_out", "bytes_out", "dropped_restricted", "dropped_send")

    def __init__(self) -> None:
        self.packets_in = 0            # every datagram received, allowed or not
        self.bytes_in = 0
        self.packets_out = 0           # replies sent
        self.bytes_out = 0
        self.dropped_restricted = 0    # the sender is outside ClientRestrictions.Networks
        self.dropped_send = 0          # a reply the kernel refused or the send buffer had no room for

    def doc(self) -> dict[str, int]:
        return {"PacketsIn": self.packets_in, "BytesIn": self.bytes_in, "PacketsOut": self.packets_out,
                "BytesOut": self.bytes_out, "DroppedRestricted": self.dropped_restricted,
                "DroppedSend": self.dropped_send}


class DestinationMetrics:
    __slots__ = ("packets", "bytes", "batches", "invocations_ok", "errors", "throttles", "replies", "reply_bytes",
                 "unknown_tags", "bad_replies", "dropped_overload", "dropped_tenant", "dropped_format", "suppressed",
                 "in_flight")

    def __init__(self) -> None:
        self.packets = 0               # packets handed to this destination
        self.bytes = 0
        self.batches = 0               # batches sent to be invoked (including those refused at once: throttled, ...)
        self.invocations_ok = 0        # invocations that returned without a function error
        self.errors = 0                # function errors, timeouts, missing/unready functions, bad responses
        self.throttles = 0             # 429s: over a concurrency limit, or waited too long for an environment
        self.replies = 0               # replies matched to a packet and sent
        self.reply_bytes = 0
        self.unknown_tags = 0          # replies whose Tag matched no packet of the batch
        self.bad_replies = 0           # replies without a usable Data (not decodable with the formatter)
        self.dropped_overload = 0      # packets dropped because MaxInFlightBatches batches were running and queued
        self.dropped_tenant = 0        # packets whose TenantIdExpression failed or gave an invalid tenant id
        self.dropped_format = 0        # packets the Formatter cannot express (ascii/utf8 given binary bytes)
        self.suppressed = 0            # log sink: packets over its line rate, not logged
        self.in_flight = 0             # batches being invoked now (a gauge)

    def doc(self) -> dict[str, int]:
        return {"Packets": self.packets, "Bytes": self.bytes, "Batches": self.batches,
                "Invocations": self.invocations_ok, "Errors": self.errors, "Throttles": self.throttles,
                "Replies": self.replies, "ReplyBytes": self.reply_bytes, "UnknownTags": self.unknown_tags,
                "BadReplies": self.bad_replies, "DroppedOverload": self.dropped_overload,
                "DroppedTenant": self.dropped_tenant, "DroppedFormat": self.dropped_format,
                "Suppressed": self.suppressed, "InFlight": self.in_flight}
