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
from collections.abc import AsyncIterator, Iterator
from importlib import resources
from types import FrameType

import uvicorn
import uvloop
from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR, CollectorRegistry

from lamina import __version__
from lamina.api import app as api_app
from lamina.api import async_invoke, ec2_api, event_invoke_config, events_api, invoke_stream, logs_api, scheduler_api
from lamina.api import code_signing as code_signing_api
from lamina.api import event_source_mappings as esm_api
from lamina.api import function_settings as function_settings_api
from lamina.api import not_offered as not_offered_api
from lamina.api import sqs as sqs_api
from lamina.api import tags as tags_api
from lamina.api.invoke import InvokeEndpoint
from lamina.api.invoke_stream import StreamInvokeHandler
from lamina.auth.keys import KeyTable, parse_keys, refuse_open_bind, server_secret
from lamina.auth.sigv4 import Verifier
from lamina.config import DEFAULT_HOST, DEFAULT_PORT, Settings
from lamina.dispatch.dispatcher import Dispatcher
from lamina.dispatch.prometheus import DispatchCollector
from lamina.dispatch.service_access import ServiceAccess, installed_sdk_dir
from lamina.eventbridge.bus import EventBusService
from lamina.eventbridge.scheduler import ScheduleService
from lamina.eventbridge.targets import Deliverer
from lamina.eventbridge.timers import Clock, TimerHeap
from lamina.events import lamina_events, queue_targets
from lamina.events.delivery import AsyncInvoker
from lamina.events.esm import EsmRunner
from lamina.events.esm_prometheus import EsmCollector
from lamina.events.eventbridge_targets import LaminaTargets, attach_buses
from lamina.events.prometheus import AsyncEventsCollector
from lamina.functions import invoke as invoke_path
from lamina.functions.code_signing import CodeSigningService
from lamina.functions.concurrency import ConcurrencyService
from lamina.functions.event_invoke_config import EventInvokeConfigService
from lamina.functions.event_source_mappings import EventSourceMappingService
from lamina.functions.function_settings import FunctionSettingsService
from lamina.functions.invoke import InvokeHandler
from lamina.functions.log_groups import LogGroupService
from lamina.functions.not_offered import NotOffered
from lamina.functions.permissions import PolicyService
from lamina.functions.registry import FunctionService
from lamina.functions.tagging import TagService, code_signing_taggable, event_source_mapping_taggable
from lamina.functions.urls import FunctionUrlService
from lamina.gateway.http import metrics as metrics_endpoint
from lamina.gateway.http.dashboard import routes as dashboard
from lamina.gateway.http.dashboard.login import DashboardLogin
from lamina.gateway.http.dashboard.views import Dashboard
from lamina.gateway.http.fast_http import protocol_for
from lamina.gateway.http.front_door import FrontDoor, InvokeRoute
from lamina.gateway.http.request_auth import RequestAuth
from lamina.gateway.udp import api as udp_api
from lamina.gateway.udp.prometheus import UdpCollector
from lamina.gateway.udp.service import UdpGateway
from lamina.microvm.manager import MicrovmManager, load_engine
from lamina.microvm.prometheus import MicrovmCollector
from lamina.net.plumbing import ENV_GATEWAY, Plumbing
from lamina.net.service import NetworkService
from lamina.queues.prometheus import QueueCollector
from lamina.queues.service import QueueService
from lamina.sandbox import get_backend
from lamina.sandbox.base import SandboxError
from lamina.sandbox.interpreters import HostRuntimes, parse_runtime_paths
from lamina.store.async_events import SqliteEventQueue
from lamina.store.blobs import CodeStore
from lamina.store.db import Database
from lamina.store.eventbridge import EventBridgeRepo
from lamina.store.logs import LogStore
from lamina.store.messages import SqliteMessageStore

log = logging.getLogger("lamina")


class Server:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        data = settings.data_dir
        data.mkdir(parents=True, exist_ok=True)
        self.db = Database(data / "lamina.db")
        self.code = CodeStore(data)
        self.logs = LogStore(data / "logs")
        self.log_groups = LogGroupService(self.logs, settings.region, settings.account_id)   # the CloudWatch Logs view
        self.backend = get_backend(settings.sandbox, settings.sandbox_scheduling)
        # The interpreters of python3.X and nodejsN.x on this host (the banner and health list them).
        self.runtimes = HostRuntimes.discover(parse_runtime_paths(settings.runtime_paths))
        self.dispatcher = Dispatcher(self.backend, self.logs, settings.account_concurrency, settings.keep_warm_seconds,
                                     scaler=settings.scaler, dispatch_mode=settings.dispatch_mode,
                                     queue_timeout_s=settings.queue_timeout_seconds, runtimes=self.runtimes,
                                     node_spares=settings.node_spare_environments,
                                     metrics=settings.metrics)
        # VPCs, subnets, security groups and the functions' networks (net/).
        # The linux sandbox's environments join pre-wired namespaces of these networks.
        plumbing = Plumbing(settings.network_pool_size) if self.backend.name == "linux" else None
        self.networks = NetworkService(self.db, settings.region, settings.account_id, settings.function_network,
                                       plumbing)
        if plumbing is not None:
            self.backend.networks = self.networks
            # Lamina's API inside each network's hub, for its environments only, at their gateway address
            # (net/plumbing.py): how code in a function reaches Lamina with AWS_ENDPOINT_URL.
            plumbing.api_port = settings.port or DEFAULT_PORT
            plumbing.serve_api = self._serve_network_api
        self.http_server: _UvicornServer | None = None   # set when served by uvicorn (run())
        self.functions = FunctionService(settings, self.db, self.code, self.logs, self.dispatcher, self.networks)
        self.urls = FunctionUrlService(settings, self.functions, self.db)
        self.policies = PolicyService(self.functions, self.db)
        self.concurrency = ConcurrencyService(self.functions, self.db)
        # Asynchronous invocation: the events/ front end's durable queue is where the core hands Event invokes.
        self.event_configs = EventInvokeConfigService(self.functions, self.db)
        self.events = AsyncInvoker(self.functions, self.event_configs,
                                   SqliteEventQueue(self.db.path, settings.async_durability), settings)
        self.functions.event_sink = self.events
        # Queues (SQS API) in the same store, with the same durability as async events.
        self.queues = QueueService(SqliteMessageStore(self.db.path, settings.async_durability), settings.region,
                                   settings.account_id)
        # Event source mappings: queues feed functions (events/esm.py); queues as destinations and DLQs.
        self.mappings = EventSourceMappingService(self.functions, self.db, self.queues)
        self.esm = EsmRunner(self.functions, self.mappings, self.queues, settings)
        # Code signing configurations, recursion and runtime-management settings, tags on every taggable resource.
        self.code_signing = CodeSigningService(settings, self.functions, self.db)
        self.function_settings = FunctionSettingsService(self.functions, self.db)
        self.tags = TagService(self.functions)
        self.tags.register("code-signing-config", code_signing_taggable(self.code_signing))
        self.tags.register("event-source-mapping", event_source_mapping_taggable(self.mappings))
        queue_targets.attach(self.queues, self.events, self.event_configs, self.functions)
        # EventBridge: Scheduler schedules, buses and rules on one timer heap; their targets reached through events/.
        self.timers = TimerHeap(Clock(settings.schedule_time_scale), lead=1.0)
        bridge_targets = LaminaTargets(self.functions, self.queues)
        self.bridge_delivery = Deliverer(bridge_targets, self.timers.clock)
        bridge_repo = EventBridgeRepo(self.db)
        self.schedules = ScheduleService(bridge_repo, self.timers, self.bridge_delivery, settings.region,
                                         settings.account_id)
        self.buses = EventBusService(bridge_repo, self.timers, self.bridge_delivery, settings.region,
                                     settings.account_id)
        attach_buses(bridge_targets, self.buses)
        self.udp = UdpGateway(settings, self.db, self.functions)
        self.microvms = MicrovmManager(settings, self.db, load_engine(self.backend, settings))
        self.udp.microvms = self.microvms   # UDP microvm destinations run their instances through it
        lamina_events.attach(self.buses, self.functions, self.microvms)   # state changes on the default bus
        self.metrics = self._metrics_registry() if settings.metrics else None
        # Access keys (SigV4) and the secret functions' short-lived credentials are issued under (auth/keys.py).
        self.keys = KeyTable(parse_keys(settings.credentials, settings.account_id), server_secret(data))
        # What environments get to call Lamina's services: boto3, credentials for their role (verified with these
        # keys), AWS_ENDPOINT_URL (dispatch/service_access.py).
        network_endpoint = f"http://{ENV_GATEWAY}:{plumbing.api_port}" if plumbing is not None else None
        self.dispatcher.access = ServiceAccess(endpoint=settings.endpoint, credentials=self.keys,
                                               sdk_dir=installed_sdk_dir(), network_endpoint=network_endpoint)
        threading.Thread(target=self.dispatcher.access.compile_sdk, args=(list(self.runtimes.found.values()),),
                         name="lamina-compile-sdk", daemon=True).start()
        self.app = self._front_door()
        # The front door functions' networks reach: every request signed, even with no keys configured (then only
        # the credentials issued to functions verify: each environment acts as its function, within their policy),
        # and nothing unsigned (metrics, health).
        self.network_door = self.app.behind(RequestAuth(
            Verifier(self.keys, settings.region, settings.account_id, always=True), self.policies,
            settings.account_id, settings.region, unsigned_paths=()))

    def _metrics_registry(self) -> CollectorRegistry:
        """What /metrics exposes: each part's collector, read at scrape time (a part that adds metrics registers
        its collector here), and the server process's own CPU, memory, fds and GC."""
        registry = CollectorRegistry(auto_describe=True)
        for collector in (DispatchCollector(self.dispatcher), AsyncEventsCollector(self.events),
                          QueueCollector(self.queues), EsmCollector(self.esm),
                          MicrovmCollector(self.microvms), UdpCollector(self.udp),
                          PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            registry.register(collector)
        return registry

    def _front_door(self) -> FrontDoor:
        """The front ends, composed: the REST APIs (api/ and the UDP gateway's own) behind the HTTP front door,
        which also takes the invoke paths and answers function URLs and MicroVM endpoints itself."""
        routes = sqs_api.routes(self.queues)   # first: it claims only SQS requests (X-Amz-Target or form posts)
        routes += api_app.routes(self.functions, self.urls, self.policies, self.concurrency, self.microvms)
        routes += event_invoke_config.routes(self.event_configs) + async_invoke.routes(self.functions)
        routes += esm_api.routes(self.mappings, self.esm.stats)
        routes += code_signing_api.routes(self.code_signing) + function_settings_api.routes(self.function_settings)
        routes += tags_api.routes(self.tags) + not_offered_api.routes(NotOffered(self.functions))
        routes += udp_api.routes(self.udp)
        routes[:0] = logs_api.routes(self.log_groups)   # claims only X-Amz-Target: Logs_20140328.*
        routes[:0] = events_api.routes(self.buses)   # claims only X-Amz-Target: AWSEvents.*
        routes += scheduler_api.routes(self.schedules)
        routes[:0] = ec2_api.routes(self.networks.model)  # POST / signed for ec2 only
        routes.append(metrics_endpoint.route(self.metrics))
        routes += dashboard.routes(Dashboard(self.functions, self.urls, self.concurrency, self.microvms,
                                             self.log_groups, self.udp),
                                   DashboardLogin(self.keys, server_secret(self.settings.data_dir)))
        control = api_app.control_app(routes, self.lifespan)
        invoke = InvokeHandler(self.functions)
        invoke_routes: list[InvokeRoute] = [(invoke_path.match, InvokeEndpoint(invoke)),
                                            (invoke_stream.match, StreamInvokeHandler(self.functions))]
        auth = RequestAuth(Verifier(self.keys, self.settings.region, self.settings.account_id), self.policies,
                           self.settings.account_id, self.settings.region)
        return FrontDoor(control, self.functions, invoke, invoke_routes, urls=self.urls, microvms=self.microvms,
                         auth=auth)

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: object) -> AsyncIterator[None]:
        self.dispatcher.start()
        self.networks.load()
        await self.networks.start()
        self.functions.load()
        self.urls.load()
        self.policies.load()
        self.code_signing.load()
        self.function_settings.load()
        self.concurrency.load()
        self.event_configs.load()
        self.microvms.load()   # before the UDP listeners: their microvm destinations need its images
        await self.udp.load()
        self.microvms.start()
        self.queues.load()
        self.queues.start()
        self.mappings.load()
        self.events.start()   # after the functions: queued events run as soon as their versions are there
        self.esm.start()
        self.schedules.load()   # after the async queue: occurrences missed while stopped fire now
        self.buses.load()
        self.timers.start()
        self.log_groups.start()   # retention
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
            self.timers.stop()   # no more occurrences; those fired are sent (into the async queue) before it stops
            self.schedules.stop()   # occurrences prepared ahead of their time get it back: they fire after a start
            self.buses.stop()
            await self.bridge_delivery.close()
            self.events.stop()
            self.esm.stop()   # no new batches; those being invoked finish in the drain
            await self.udp.close()
            log.info("draining: %d invocation(s) in flight", self.dispatcher.outstanding())
            await self.functions.close()
            await self.dispatcher.shutdown(self.settings.drain_seconds)
            await self.networks.close()
            await self.events.close()
            await self.esm.close()
            await self.queues.close()
            await self.microvms.close()
            self.backend.close()
            self.log_groups.stop()
            self.logs.close()
            self.db.close()
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
        self.lamina.logs.end_followers()
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

