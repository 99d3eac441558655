"""The UDP gateway's listeners: create, list, look up, remove; restored from the store at start-up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

from lamina.config import Settings
from lamina.functions.errors import AwsError
from lamina.functions.registry import FunctionService
from lamina.gateway.udp.config import ConfigError, ListenerConfig, parse_listener
from lamina.gateway.udp.listener import BindError, UdpListener
from lamina.store.db import Database
from lamina.store.udp import ListenerRow, UdpListenerRepo

log = logging.getLogger("lamina.udp")
RETRY_FAILED_S = 5.0  # how often a listener restored as Failed (its port was taken) tries to bind again


def _now_iso() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


class UdpGateway:
    def __init__(self, settings: Settings, db: Database, functions: FunctionService) -> None:
        self.settings = settings
        self.repo = UdpListenerRepo(db)
        self.functions = functions
        self.listeners: dict[str, UdpListener] = {}
        # The MicroVM manager (set by the server once it exists): microvm destinations start instances through it.
        self.microvms: Any = None
        self._retry: asyncio.Task | None = None

    async def load(self) -> None:
        """Bind every stored listener again (on the port it had); one that cannot bind is kept as Failed,
        with the reason, for `lamina udp listener ls` to show."""
        for row in self.repo.all():
            try:
                cfg = parse_listener(row.config, listener_id=row.id, default_host=self.settings.host,
                                     created_at=row.config.get("CreatedAt", ""))
            except ConfigError as exc:
                log.error("UDP listener %s not restored: stored configuration is invalid: %s", row.id, exc)
                continue
            listener = UdpListener(cfg, self.functions, self.microvms)
            self.listeners[cfg.id] = listener
            try:
                await listener.start()
            except BindError as exc:
                listener.reason += f" (retrying every {RETRY_FAILED_S:.0f} s; or remove the listener)"
                log.error("UDP listener %s not restored: %s", cfg.name, exc)
        if any(x.state == "Failed" for x in self.listeners.values()):
            self._retry = asyncio.get_running_loop().create_task(self._retry_failed())

    async def _retry_failed(self) -> None:
        """Restored listeners whose port was taken bind again once it is free: nobody has to re-create them."""
        while any(x.state == "Failed" for x in self.listeners.values()):
            await asyncio.sleep(RETRY_FAILED_S)
            for listener in [x for x in self.listeners.values() if x.state == "Failed"]:
                if self.listeners.get(listener.id) is not listener:
                    continue  # removed meanwhile: binding now would leak its socket
                with contextlib.suppress(BindError):
                    await listener.start()
                if self.listeners.get(listener.id) is not listener:
                    await listener.stop()  # removed while it was binding
                elif listener.state == "Failed":
                    listener.reason += f" (retrying every {RETRY_FAILED_S:.0f} s; or remove the listener)"

    async def close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry
        for listener in list(self.listeners.values()):
            for d in listener.destinations:
                d.server_stopping()
            await listener.stop()

    async def create(self, body: dict) -> dict:
        listener_id = "udp-" + uuid.uuid4().hex[:12]
        try:
            cfg = parse_listener(body, listener_id=listener_id, default_host=self.settings.host,
                                 created_at=_now_iso())
        except ConfigError as exc:
            raise AwsError("ValidationException", f"Invalid UDP listener: {exc}") from None
        self._check_microvm_destinations(cfg)
        for other in self.listeners.values():
            if other.name == cfg.name:
                raise AwsError("ResourceConflictException", f"A UDP listener named {cfg.name!r} exists already "
                               f"({other.id}); pick another Name or remove that one first.")
        listener = UdpListener(cfg, self.functions, self.microvms)
        try:
            await listener.start()
        except BindError as exc:
            raise AwsError("ResourceConflictException" if exc.in_use else "ValidationException", str(exc)) from None
        try:
            self.repo.insert(ListenerRow(cfg.id, cfg.name, cfg.with_port(listener.port).doc(), time.time()))
        except Exception:
            await listener.stop()
            raise
        self.listeners[cfg.id] = listener
        return listener.doc()

    def _check_microvm_destinations(self, cfg: ListenerConfig) -> None:
        """What the document alone cannot tell: this server runs MicroVMs, the image exists, MaxIdle is not under
        the server's minimum idle time."""
        for i, d in enumerate(cfg.destinations):
            if d.type != "microvm":
                continue
            where = f"Invalid UDP listener: Destinations[{i}]"
            if self.microvms is None or getattr(self.microvms, "engine", None) is None:
                raise AwsError("ValidationException", f"{where}: this Lamina server cannot run MicroVMs (it has no "
                               "MicroVM engine); use a function destination")
            try:
                self.microvms.images.image(d.image)
            except Exception as exc:
                raise AwsError("ValidationException", f"{where}.Image: {getattr(exc, 'message', exc)} (create it "
                               "with CreateMicrovmImage or `lamina microvm`, then the listener)") from None
            least = self.settings.microvm_min_idle_seconds
            if d.max_idle is not None and d.max_idle < least:
                raise AwsError("ValidationException", f"{where}.Arguments.MaxIdle: {d.max_idle} s is under this "
                               f"server's minimum idle time of {least} s (microvm_min_idle_seconds)")

    def find(self, ref: str) -> UdpListener:
        """A listener by id, else by name."""
        listener = self.listeners.get(ref)
        if listener is None:
            listener = next((x for x in self.listeners.values() if x.name == ref), None)
        if listener is None:
            raise AwsError("ResourceNotFoundException", f"UDP listener not found: {ref} (`lamina udp listener ls` "
                           "lists them)")
        return listener

    def summary(self) -> str:
        """For the start-up banner: `dns 127.0.0.1:5353, ...` (Failed ones say so)."""
        return ", ".join(f"{x.name} {x.doc()['Endpoint']}" + ("" if x.state == "Listening" else f" ({x.state})")
                         for x in self.listeners.values())

    def list(self) -> list[dict]:
        return [x.doc() for x in self.listeners.values()]

    async def delete(self, ref: str) -> None:
        listener = self.find(ref)
        await listener.stop()
        self.repo.delete(listener.id)
        del self.listeners[listener.id]
