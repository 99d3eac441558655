"""Lamina's own events on the EventBridge default bus, so operators can react to them with rules, in AWS's event
shape with Lamina's sources:

- `source: lamina.lambda`, `detail-type: Lambda Function State Change` — a function's State or LastUpdateStatus
  settled (created or updated: Active / Failed, Successful / Failed); detail: functionName, functionArn, state,
  stateReason, stateReasonCode, lastUpdateStatus, lastUpdateStatusReason.
- `source: lamina.microvm`, `detail-type: MicroVM Instance State Change` — an instance changed state (PENDING,
  RUNNING, SUSPENDING, SUSPENDED, TERMINATED, ...); detail: microvmId, state, stateReason, imageArn, imageVersion.
  (As EC2's "EC2 Instance State-change Notification" does for instances.)
"""

from __future__ import annotations

import datetime as dt
import uuid

from lamina.eventbridge.bus import DEFAULT_BUS, EventBusService
from lamina.functions.registry import Function, FunctionService
from lamina.microvm.manager import Microvm, MicrovmManager


def _event(buses: EventBusService, source: str, detail_type: str, resource: str, detail: dict) -> dict:
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": detail_type, "source": source,
            "account": buses.account, "time": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": buses.region, "resources": [resource], "detail": detail}


def attach(buses: EventBusService, functions: FunctionService, microvms: MicrovmManager) -> None:
    def function_changed(fn: Function) -> None:
        c = fn.config
        detail = {"functionName": fn.name, "functionArn": c.get("FunctionArn"), "state": c.get("State"),
                  "stateReason": c.get("StateReason"), "stateReasonCode": c.get("StateReasonCode"),
                  "lastUpdateStatus": c.get("LastUpdateStatus"),
                  "lastUpdateStatusReason": c.get("LastUpdateStatusReason")}
        buses.publish(DEFAULT_BUS, _event(buses, "lamina.lambda", "Lambda Function State Change",
                                          str(c.get("FunctionArn")), {k: v for k, v in detail.items()
                                                                      if v is not None}))

    def microvm_changed(mvm: Microvm) -> None:
        d = mvm.doc
        detail = {"microvmId": mvm.microvm_id, "state": d.get("state"), "stateReason": d.get("stateReason"),
                  "imageArn": d.get("imageArn"), "imageVersion": d.get("imageVersion")}
        buses.publish(DEFAULT_BUS, _event(buses, "lamina.microvm", "MicroVM Instance State Change",
                                          str(d.get("microvmArn") or mvm.microvm_id),
                                          {k: v for k, v in detail.items() if v is not None}))

    functions.state_listeners.append(function_changed)
    microvms.on_state.append(microvm_changed)
