"""One account's resources, composed: its functions and everything hung on them (URLs, policies, concurrency,
async invocation, event source mappings, code signing, tags), its EventBridge buses and schedules, log groups,
networks, MicroVMs and UDP listeners, each part over the account's own store and dispatcher.

`lamina serve` holds one Account per account it serves (server.py): its own (Settings.account_id, whose resources
live in the data directory itself) and each other account of the configured credentials (data_dir/accounts/ID). An
account's names are its own: two accounts may each have a function "hello", and neither sees the other's. What the
accounts share is the host: the sandbox backend and its network plumbing, the interpreters, the access keys, the
queues (whose service keeps each account's apart itself) and the HTTP front door, which hands each request to the
caller's account.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

from starlette.routing import BaseRoute
from starlette.types import ASGIApp

from lamina.api import app as api_app
from lamina.api import async_invoke, ec2_api, event_invoke_config, events_api, invoke_stream, logs_api, scheduler_api
from lamina.api import code_signing as code_signing_api
from lamina.api import event_source_mappings as esm_api
from lamina.api import function_settings as function_settings_api
from lamina.api import not_offered as not_offered_api
from lamina.api import tags as tags_api
from lamina.api.invoke import InvokeEndpoint
from lamina.api.invoke_stream import StreamInvokeHandler
from lamina.config import Settings
from lamina.dispatch.dispatcher import Dispatcher
from lamina.dispatch.service_access import ServiceAccess
from lamina.eventbridge.bus import EventBusService
from lamina.eventbridge.scheduler import ScheduleService
from lamina.eventbridge.targets import Deliverer
from lamina.eventbridge.timers import Clock, TimerHeap
from lamina.events import lamina_events, queue_targets
from lamina.events.delivery import AsyncInvoker
from lamina.events.esm import EsmRunner
from lamina.events.eventbridge_targets import LaminaTargets, attach_buses
from lamina.functions import invoke as invoke_path
from lamina.functions.code_signing import CodeSigningService
from lamina.functions.concurrency import ConcurrencyService
from lamina.functions.event_invoke_config import EventInvokeConfigService
from lamina.functions.event_source_mappings import EventSourceMappingService
from lamina.functions.function_settings import FunctionSettingsService
from lamina.functions.invoke import InvokeHandler
from lamina.functions.log_groups import LogGroupService
from lamina.functions.names import acting_account
from lamina.functions.not_offered import NotOffered
from lamina.functions.permissions import PolicyService
from lamina.functions.registry import FunctionService
from lamina.functions.tagging import TagService, code_signing_taggable, event_source_mapping_taggable
from lamina.functions.urls import FunctionUrlService
from lamina.gateway.http.front_door import AccountDoor, InvokeRoute
from lamina.gateway.udp import api as udp_api
from lamina.gateway.udp.service import UdpGateway
from lamina.microvm.manager import MicrovmManager, load_engine
from lamina.net.plumbing import Plumbing
from lamina.net.service import NetworkService
from lamina.queues.service import QueueService
from lamina.sandbox.base import SandboxBackend
from lamina.sandbox.interpreters import HostRuntimes
from lamina.store.async_events import SqliteEventQueue
from lamina.store.blobs import CodeStore
from lamina.store.db import Database
from lamina.store.eventbridge import EventBridgeRepo
from lamina.store.logs import LogStore


def account_settings(settings: Settings, account: str) -> Settings:
    """The settings an account's parts see: the server's, with the account's id and data directory (the server's
    own account keeps the data directory itself, as before accounts existed)."""
    if account == settings.account_id:
        return settings
    return dataclasses.replace(settings, account_id=account, data_dir=settings.data_dir / "accounts" / account,
                               example=False)


class Account:
    def __init__(self, settings: Settings, backend: SandboxBackend, runtimes: HostRuntimes, queues: QueueService,
                 access: ServiceAccess, plumbing: Plumbing | None, owns_plumbing: bool,
                 db: Database | None = None) -> None:
        self.settings = settings
        self.id = settings.account_id
        data = settings.data_dir
        data.mkdir(parents=True, exist_ok=True)
        self.db = db or Database(data / "lamina.db")
        self.code = CodeStore(data)
        self.logs = LogStore(data / "logs")
        self.log_groups = LogGroupService(self.logs, settings.region, settings.account_id)   # the CloudWatch Logs view
        self.backend = backend
        self.dispatcher = Dispatcher(backend, self.logs, settings.account_concurrency, settings.keep_warm_seconds,
                                     scaler=settings.scaler, dispatch_mode=settings.dispatch_mode,
                                     queue_timeout_s=settings.queue_timeout_seconds, runtimes=runtimes,
                                     node_spares=settings.node_spare_environments,
                                     metrics=settings.metrics)
        self.dispatcher.access = access
        # VPCs, subnets and security groups are the server's own account's (the plumbing applies one EC2 model's
        # rules); another account's functions join the shared default network.
        self.networks = NetworkService(self.db, settings.region, settings.account_id, settings.function_network,
                                       plumbing, owns_plumbing=owns_plumbing)
        self.functions = FunctionService(settings, self.db, self.code, self.logs, self.dispatcher, self.networks)
        self.urls = FunctionUrlService(settings, self.functions, self.db)
        self.policies = PolicyService(self.functions, self.db)
        self.concurrency = ConcurrencyService(self.functions, self.db)
        # Asynchronous invocation: the events/ front end's durable queue is where the core hands Event invokes.
        self.event_configs = EventInvokeConfigService(self.functions, self.db)
        self.events = AsyncInvoker(self.functions, self.event_configs,
                                   SqliteEventQueue(self.db.path, settings.async_durability), settings)
        self.functions.event_sink = self.events
        self.queues = queues
        # Event source mappings: queues feed functions (events/esm.py); queues as destinations and DLQs.
        self.mappings = EventSourceMappingService(self.functions, self.db, self.queues)
        self.esm = EsmRunner(self.functions, self.mappings, self.queues, settings)
        # Code signing configurations, recursion and runtime-management settings, tags on every taggable resource.
        self.code_signing = CodeSigningService(settings, self.functions, self.db)
        self.function_settings = FunctionSettingsService(self.functions, self.db)
        self.tags = TagService(self.functions)
        self.tags.register("code-signing-config", code_signing_taggable(self.code_signing))
        self.tags.register("event-source-mapping", event_source_mapping_taggable(self.mappings))
        queue_targets.attach(self.queues, self.events, self.event_configs, self.functions, settings.account_id)
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
        self.microvms = MicrovmManager(settings, self.db, load_engine(backend, settings))
        self.udp.microvms = self.microvms   # UDP microvm destinations run their instances through it
        lamina_events.attach(self.buses, self.functions, self.microvms)   # state changes on the default bus

    @contextlib.contextmanager
    def acting(self) -> Iterator[None]:
        """Work done here (and the tasks it starts) is this account's: a function ARN names its functions."""
        with acting_account(self.id):
            yield

    # ------------------------------------------------------------------ the front door's view

    def routes(self, sqs: list[BaseRoute]) -> list[BaseRoute]:
        """This account's REST APIs (api/ and the UDP gateway's own), with the SQS API's routes (shared: the queue
        service keeps accounts apart itself) in their place among them."""
        routes = sqs + api_app.routes(self.functions, self.urls, self.policies, self.concurrency, self.microvms)
        routes += event_invoke_config.routes(self.event_configs) + async_invoke.routes(self.functions)
        routes += esm_api.routes(self.mappings, self.esm.stats)
        routes += code_signing_api.routes(self.code_signing) + function_settings_api.routes(self.function_settings)
        routes += tags_api.routes(self.tags) + not_offered_api.routes(NotOffered(self.functions))
        routes += udp_api.routes(self.udp)
        routes[:0] = logs_api.routes(self.log_groups)   # claims only X-Amz-Target: Logs_20140328.*
        routes[:0] = events_api.routes(self.buses)   # claims only X-Amz-Target: AWSEvents.*
        routes += scheduler_api.routes(self.schedules)
        routes[:0] = ec2_api.routes(self.networks.model)  # POST / signed for ec2 only
        return routes

    def door(self, control: ASGIApp) -> AccountDoor:
        invoke = InvokeHandler(self.functions)
        invoke_routes: list[InvokeRoute] = [(invoke_path.match, InvokeEndpoint(invoke)),
                                            (invoke_stream.match, StreamInvokeHandler(self.functions))]
        return AccountDoor(self.id, control, self.functions, invoke, invoke_routes, self.urls, self.microvms,
                           targets=[(events_api.TARGET_PREFIX, events_api.EventsApi(self.buses))])

    # ------------------------------------------------------------------ lifecycle (server.py's lifespan)

    async def start(self) -> None:
        with self.acting():
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
            self.mappings.load()
            self.events.start()   # after the functions: queued events run as soon as their versions are there
            self.esm.start()
            self.schedules.load()   # after the async queue: occurrences missed while stopped fire now
            self.buses.load()
            self.timers.start()
            self.log_groups.start()   # retention

    async def stop_taking(self) -> None:
        """No more occurrences, async attempts, batches or UDP packets (the first step of a drain)."""
        with self.acting():
            self.timers.stop()   # no more occurrences; those fired are sent (into the async queue) before it stops
            self.schedules.stop()   # occurrences prepared ahead of their time get it back: they fire after a start
            self.buses.stop()
            await self.bridge_delivery.close()
            self.events.stop()
            self.esm.stop()   # no new batches; those being invoked finish in the drain
            await self.udp.close()

    async def drain(self, seconds: float) -> None:
        with self.acting():
            await self.functions.close()
            await self.dispatcher.shutdown(seconds)

    async def close(self) -> None:
        with self.acting():
            await self.networks.close()
            await self.events.close()
            await self.esm.close()
            await self.microvms.close()
            self.log_groups.stop()
            self.logs.close()
            self.db.close()
