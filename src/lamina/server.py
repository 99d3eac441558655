"""`lamina serve`: one process, one uvloop event loop. Composes the parts: the function core (functions/) over the
dispatcher and its environments, and the front ends over it — the REST APIs (api/) and the invoke endpoints behind
the HTTP front door (gateway/http/), the UDP gateway, asynchronous event delivery (events/) — and runs them under
uvicorn until a signal, then drains."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import importlib.util
import io
import logging
import os
import resource
import shlex
import shutil
import signal
import socket
import sys
import threading
import weakref
import zipfile
from collections.abc import AsyncIterator, Callable, Iterator
from importlib import resources
from types import FrameType

import uvicorn
import uvloop
from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR, CollectorRegistry
from prometheus_client.registry import Collector

from lamina import __version__
from lamina.account import Account, account_settings
from lamina.api import app as api_app
from lamina.api import sqs as sqs_api
from lamina.auth.keys import KeyTable, parse_keys, parse_roles, refuse_open_bind, server_secret
from lamina.auth.sigv4 import Verifier
from lamina.config import DEFAULT_HOST, DEFAULT_PORT, Settings
from lamina.dispatch.prometheus import DispatchCollector
from lamina.dispatch.service_access import ServiceAccess, installed_sdk_dir
from lamina.events.esm_prometheus import EsmCollector
from lamina.events.prometheus import AsyncEventsCollector
from lamina.functions.layers import LayerService
from lamina.functions.names import set_home
from lamina.functions.permissions import PolicyService
from lamina.gateway.http import metrics as metrics_endpoint
from lamina.gateway.http.dashboard import routes as dashboard
from lamina.gateway.http.dashboard.login import DashboardLogin
from lamina.gateway.http.dashboard.views import Dashboard
from lamina.gateway.http.fast_http import protocol_for
from lamina.gateway.http.front_door import FrontDoor
from lamina.gateway.http.metrics import AccountsCollector
from lamina.gateway.http.request_auth import RequestAuth
from lamina.gateway.udp.prometheus import UdpCollector
from lamina.microvm.prometheus import MicrovmCollector
from lamina.net.plumbing import ENV_GATEWAY, Plumbing
from lamina.queues.prometheus import QueueCollector
from lamina.queues.service import QueueService
from lamina.sandbox import get_backend
from lamina.sandbox.base import SandboxError
from lamina.sandbox.interpreters import HostRuntimes, parse_runtime_paths
from lamina.store.db import Database
from lamina.store.messages import SqliteMessageStore

log = logging.getLogger("lamina")


class Server:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        data = settings.data_dir
        data.mkdir(parents=True, exist_ok=True)
        # What every account shares: the host's sandbox backend and interpreters, the access keys, the queues.
        self.backend = get_backend(settings.sandbox, settings.sandbox_scheduling)
        # The interpreters of python3.X and nodejsN.x on this host (the banner and health list them).
        self.runtimes = HostRuntimes.discover(parse_runtime_paths(settings.runtime_paths))
        # Access keys (SigV4) and the secret functions' short-lived credentials are issued under (auth/keys.py).
        self.keys = KeyTable(parse_keys(settings.credentials, settings.account_id), server_secret(data),
                             parse_roles(settings.roles))
        # The linux sandbox's environments join pre-wired namespaces of the functions' networks (net/).
        plumbing = Plumbing(settings.network_pool_size) if self.backend.name == "linux" else None
        if plumbing is not None:
            # Lamina's API inside each network's hub, for its environments only, at their gateway address
            # (net/plumbing.py): how code in a function reaches Lamina with AWS_ENDPOINT_URL.
            plumbing.api_port = settings.port or DEFAULT_PORT
            plumbing.serve_api = self._serve_network_api
        # What environments get to call Lamina's services: boto3, credentials for their role (verified with these
        # keys), AWS_ENDPOINT_URL (dispatch/service_access.py).
        network_endpoint = f"http://{ENV_GATEWAY}:{plumbing.api_port}" if plumbing is not None else None
        access = ServiceAccess(endpoint=settings.endpoint, credentials=self.keys, sdk_dir=installed_sdk_dir(),
                               network_endpoint=network_endpoint)
        threading.Thread(target=access.compile_sdk, args=(list(self.runtimes.found.values()),),
                         name="lamina-compile-sdk", daemon=True).start()
        # Queues (SQS API) in the server's store, with the same durability as async events; the service keeps each
        # account's queues apart itself.
        self.db = Database(data / "lamina.db")   # the server's own account's store, where the queues live too
        self.queues = QueueService(SqliteMessageStore(self.db.path, settings.async_durability), settings.region,
                                   settings.account_id)
        # Each account's resources (account.py): the server's own first, then every other account of the keys.
        others = sorted({k[0].account for k in self.keys.static.values()} - {settings.account_id})
        self.accounts = {account: Account(account_settings(settings, account), self.backend, self.runtimes,
                                          self.queues, access, plumbing, owns_plumbing=account == settings.account_id,
                                          db=self.db if account == settings.account_id else None)
                         for account in [settings.account_id, *others]}
        set_home(settings.region, settings.account_id)   # a request acting in no account acts in the server's own
        for parts in self.accounts.values():   # layers shared by their layer version policies
            parts.functions.layers.peers = self._layers_of
        home = self.home = self.accounts[settings.account_id]
        if plumbing is not None:
            self.backend.networks = home.networks   # the plumbing's pairs, whichever account's network they are
        # The server's own account's parts, by their names (the banner, health, the dashboard, metrics, tests).
        self.code, self.logs, self.log_groups = home.code, home.logs, home.log_groups
        self.dispatcher, self.networks, self.functions, self.urls = (home.dispatcher, home.networks, home.functions,
                                                                     home.urls)
        self.policies, self.concurrency, self.event_configs, self.events = (home.policies, home.concurrency,
                                                                            home.event_configs, home.events)
        self.mappings, self.esm, self.schedules, self.buses = home.mappings, home.esm, home.schedules, home.buses
        self.udp, self.microvms = home.udp, home.microvms
        self.http_server: _UvicornServer | None = None   # set when served by uvicorn (run())
        self.metrics = self._metrics_registry() if settings.metrics else None
        self.app = self._front_door()
        # The front door functions' networks reach: every request signed, even with no keys configured (then only
        # the credentials issued to functions verify: each environment acts as its function, within their policy),
        # and nothing unsigned (metrics, health).
        self.network_door = self.app.behind(RequestAuth(
            Verifier(self.keys, settings.region, settings.account_id, always=True), self._policies(),
            settings.account_id, settings.region, unsigned_paths=()))

    def _layers_of(self, account: str) -> LayerService | None:
        parts = self.accounts.get(account)
        return parts.functions.layers if parts is not None else None

    def _policies(self) -> dict[str, PolicyService]:
        return {account: parts.policies for account, parts in self.accounts.items()}

    def _metrics_registry(self) -> CollectorRegistry:
        """What /metrics exposes: each part's collector, read at scrape time (a part that adds metrics registers
        its collector here), and the server process's own CPU, memory, fds and GC. The parts each account has are
        every account's: another account's samples carry an `account` label."""
        registry = CollectorRegistry(auto_describe=True)
        per_account: list[Callable[[Account], Collector]] = [
            lambda a: DispatchCollector(a.dispatcher), lambda a: AsyncEventsCollector(a.events),
            lambda a: EsmCollector(a.esm), lambda a: MicrovmCollector(a.microvms), lambda a: UdpCollector(a.udp)]
        for make in per_account:
            registry.register(AccountsCollector(make(self.home), {account: make(parts) for account, parts
                                                                  in self.accounts.items() if parts is not self.home}))
        for collector in (QueueCollector(self.queues), PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            registry.register(collector)
        return registry

    def _front_door(self) -> FrontDoor:
        """The front ends, composed: each account's REST APIs (api/ and the UDP gateway's own) behind the HTTP front
        door, which also takes the invoke paths and answers function URLs and MicroVM endpoints itself."""
        doors = []
        for account, parts in self.accounts.items():
            # SQS first of the APIs: it claims only SQS requests (X-Amz-Target or form posts) — after EC2's.
            routes = parts.routes(sqs_api.routes(self.queues))
            if account == self.settings.account_id:   # what no signature reaches: the server's own account's
                routes.append(metrics_endpoint.route(self.metrics))
                routes += dashboard.routes(Dashboard(self.functions, self.urls, self.concurrency, self.microvms,
                                                     self.log_groups, self.udp),
                                           DashboardLogin(self.keys, server_secret(self.settings.data_dir),
                                                          account=account))
                control = api_app.control_app(routes, self.lifespan)
            else:
                control = api_app.control_app(routes, None)
            doors.append(parts.door(control))
        auth = RequestAuth(Verifier(self.keys, self.settings.region, self.settings.account_id), self._policies(),
                           self.settings.account_id, self.settings.region)
        return FrontDoor(doors, auth=auth)

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: object) -> AsyncIterator[None]:
        self.queues.load()
        self.queues.start()
        for parts in self.accounts.values():
            await parts.start()
        if self.settings.example:
            await self._deploy_example()
        self._banner()
        # Everything loaded so far lives as long as the server: keep the cyclic GC's full collections from
        # walking it again and again under load (they would scan every module, route and function object).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            # uvicorn has stopped accepting and waited for in-flight HTTP requests (sync invokes);
            # now finish async invocations, then stop every environment.
            # No new UDP packets from here on; batches already invoked finish with the drain below.
            # Async events: no new attempts; running ones finish in the drain and are recorded, the rest stay queued.
            for parts in self.accounts.values():
                await parts.stop_taking()
            log.info("draining: %d invocation(s) in flight",
                     sum(parts.dispatcher.outstanding() for parts in self.accounts.values()))
            await asyncio.gather(*(parts.drain(self.settings.drain_seconds) for parts in self.accounts.values()))
            for parts in reversed(self.accounts.values()):   # the server's own last: it owns the network plumbing
                await parts.close()
            await self.queues.close()
            self.backend.close()
            log.info("stopped")

    async def _deploy_example(self) -> None:
        if "hello" in self.functions.functions:
            return
        source = resources.files("lamina") / "examples" / "hello" / "app.py"
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("app.py", source.read_text())
        self.functions.create({"FunctionName": "hello", "Runtime": "python3.11", "Handler": "app.handler",
                               "Role": "arn:aws:iam::000000000000:role/lamina",
                               "Code": {"ZipFile": base64.b64encode(buf.getvalue()).decode()}})
        fn = self.functions.functions["hello"]
        if fn.activation is not None:
            await fn.activation

    def _banner(self) -> None:
        s = self.settings
        lines = [
            f"Lamina {__version__} listening on {s.endpoint}",
            f"  data:    {s.data_dir}",
            f"  sandbox: {self.backend.describe()}",
            f"  auth:    {self._auth_line()}",
            f"  runtimes: {self.runtimes.summary()}",
            f"  functions: {len(self.functions.functions)}",
        ]
        if self.udp.listeners:
            lines.append(f"  udp listeners: {self.udp.summary()}")
        cli = _own_command("lamina") + ("" if s.port == DEFAULT_PORT and s.host == DEFAULT_HOST
                                        else f" --endpoint {s.endpoint}")
        if "hello" in self.functions.functions and self.settings.example:
            lines += ["", "Try the example function (each line works as pasted):", *_try_lines(cli, s), "",
                      "MicroVMs and the UDP gateway (see README):",
                      f"  {cli} microvm image create DIR      # a directory with a Dockerfile",
                      f"  {cli} udp listener create --port 5353 --destination function:NAME"]
        if not self.backend.isolated:
            why = "--sandbox process was asked for" if os.geteuid() == 0 else "run as root for the linux sandbox"
            lines.append(f"  WARNING: functions are NOT isolated from this host (process backend; {why}).")
        print("\n".join(lines), flush=True)
        if not self.backend.isolated:
            log.warning("sandbox backend %r: functions are not isolated", self.backend.name)

    def _auth_line(self) -> str:
        keys = len(self.keys.static)
        if keys:
            return f"SigV4 verified against {keys} configured key(s)"
        return "open: no keys configured, any credentials accepted (loopback only)"

    async def _serve_network_api(self, sock: socket.socket) -> asyncio.Server | None:
        """Serve a listener made in a function network's hub (net/plumbing.py) with network_door."""
        if self.http_server is None:
            return None   # not served by uvicorn (an app driven in-process): no path from the functions
        return await self.http_server.serve_listener(sock, self.network_door)

    def uvicorn_config(self) -> uvicorn.Config:
        return uvicorn.Config(
            # http: uvicorn's httptools protocol with the Invoke / function-URL hot path in front (fast_http.py).
            self.app, host=self.settings.host, port=self.settings.port, loop="none", http=protocol_for(self.app),
            lifespan="on", access_log=False, log_level=self.settings.log_level,
            timeout_graceful_shutdown=int(self.settings.drain_seconds) or None,
            timeout_keep_alive=75, server_header=False, date_header=False,
        )


def _own_command(name: str) -> str:
    """A command of the environment this server runs in (its venv's bin), by a path that works from anywhere."""
    beside = os.path.join(os.path.dirname(sys.executable), name)
    return shlex.quote(beside) if os.access(beside, os.X_OK) else name


def _try_lines(cli: str, s: Settings) -> list[str]:
    """Invokes of the example function with the CLI, the AWS CLI and boto3, that run as pasted on a fresh machine:
    region and dummy credentials inline (a client without them stops at NoRegionError / NoCredentialsError)."""
    creds = f"AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION={s.region}"
    # `make awscli` (and `make test`) put the AWS CLI in its own venv beside Lamina's: `make run` starts here.
    local = os.path.abspath(".venv-awscli/bin/aws")
    aws = local if os.access(local, os.X_OK) else shutil.which("aws")
    lines = [f"  {cli} invoke hello --payload '{{\"name\": \"Lamina\"}}' --log"]
    if aws:
        lines.append(f"  {creds} {shlex.quote(aws)} lambda invoke --endpoint-url {s.endpoint} --function-name hello "
                     f"out.json && cat out.json")
    else:
        lines.append("  (the AWS CLI: `make awscli` puts it in .venv-awscli/bin)")
    boto3 = (f"import boto3; print(boto3.client('lambda', endpoint_url='{s.endpoint}', region_name='{s.region}', "
             f"aws_access_key_id='test', aws_secret_access_key='test').invoke(FunctionName='hello')['Payload'].read())")
    if importlib.util.find_spec("boto3") is not None:
        lines.append(f"  {shlex.quote(sys.executable)} -c \"{boto3}\"")
    return lines


class _UvicornServer(uvicorn.Server):
    """uvicorn re-raises SIGTERM after its shutdown; after a clean drain we exit 0 instead.

    On the first signal it also ends long-lived streams (log followers), which uvicorn would
    otherwise wait for until its graceful-shutdown timeout.
    """

    def __init__(self, config: uvicorn.Config, lamina: Server) -> None:
        super().__init__(config)
        self.lamina = lamina
        lamina.http_server = self
        # serve_listener's (held by the hubs they serve), closed with uvicorn's own.
        self.listeners: weakref.WeakSet[asyncio.Server] = weakref.WeakSet()

    async def serve_listener(self, sock: socket.socket, door: FrontDoor) -> asyncio.Server:
        """Serve another listening socket (made in another network namespace) as uvicorn serves its own, except that
        its requests go to `door`: uvicorn's app (proxy headers trusted from loopback) is not used."""
        config = self.config
        protocol = protocol_for(door)
        loop = asyncio.get_running_loop()

        def create_protocol() -> asyncio.Protocol:
            proto = protocol(config=config, server_state=self.server_state, app_state=self.lifespan.state,
                             _loop=loop)
            proto.app = door
            return proto

        server = await loop.create_server(create_protocol, sock=sock, backlog=config.backlog)
        self.listeners.add(server)
        return server

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.listeners:
            server.close()   # with uvicorn's own listener: no new connections while it drains
        await super().shutdown(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        for parts in self.lamina.accounts.values():
            parts.logs.end_followers()
        self.lamina.queues.stop_waiting()   # long polls answer now instead of holding the drain

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def _raise_fd_limit() -> None:
    """Each environment holds a channel socket and a log pipe: 1,000 of them need more than 1,024 fds."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def run(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM; then drain and stop."""
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    _raise_fd_limit()
    try:
        keys = parse_keys(settings.credentials, settings.account_id)
    except ValueError as exc:
        sys.exit(f"lamina: bad credentials setting: {exc}")
    try:
        parse_roles(settings.roles)
    except ValueError as exc:
        sys.exit(f"lamina: bad roles setting: {exc}")
    refused = refuse_open_bind(settings.host, KeyTable(keys, b""))
    if refused is not None:
        sys.exit(f"lamina: {refused}")
    try:
        server = Server(settings)
    except SandboxError as exc:   # root without a working linux sandbox: never run unisolated silently
        sys.exit(f"lamina: {exc}")
    userver = _UvicornServer(server.uvicorn_config(), server)
    uvloop.run(userver.serve())
    if not userver.started:
        sys.exit(1)

