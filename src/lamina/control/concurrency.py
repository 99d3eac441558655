"""Reserved concurrency: Put/Get/DeleteFunctionConcurrency, persisted and applied by the dispatcher.

A reservation is both a cap (the function never has more invocations in flight; 0 throttles every
invoke) and a guarantee (it is taken out of the account's unreserved pool), as on AWS.
"""

from __future__ import annotations

from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lamina.control import validation as v
from lamina.control.errors import AwsError
from lamina.control.functions import FunctionService
from lamina.control.lambda_api import json_response, read_json
from lamina.store.db import Database

MIN_UNRESERVED = 100  # AWS keeps at least this many for functions without a reservation


class ConcurrencyService:
    def __init__(self, functions: FunctionService, db: Database) -> None:
        self.functions = functions
        self.dispatcher = functions.dispatcher
        self.db = db
        functions.delete_hooks.append(self._function_deleted)

    def load(self) -> None:
        for row in self.db.conn.execute("SELECT function_name, reserved FROM function_concurrency"):
            self.dispatcher.set_reserved(row["function_name"], row["reserved"])

    def reserved(self, name: str) -> int | None:
        return self.dispatcher.reserved.get(name)

    def put(self, raw_name: str, body: dict) -> dict:
        fn = self.functions.lookup(raw_name)
        v.required(body, "ReservedConcurrentExecutions", "reservedConcurrentExecutions")
        value = v.integer(body, "ReservedConcurrentExecutions", "reservedConcurrentExecutions", 0,
                          self.dispatcher.max_environments)
        others = sum(n for name, n in self.dispatcher.reserved.items() if name != fn.name)
        floor = min(MIN_UNRESERVED, self.dispatcher.max_environments)
        if self.dispatcher.max_environments - others - value < floor:
            raise AwsError("InvalidParameterValueException",
                           "Specified ReservedConcurrentExecutions for function decreases account's "
                           f"UnreservedConcurrentExecution below its minimum value of [{floor}].")
        with self.db.conn:
            self.db.conn.execute(
                "INSERT INTO function_concurrency (function_name, reserved) VALUES (?, ?) "
                "ON CONFLICT(function_name) DO UPDATE SET reserved = excluded.reserved", (fn.name, value))
        self.dispatcher.set_reserved(fn.name, value)
        return {"ReservedConcurrentExecutions": value}

    def get(self, raw_name: str) -> dict:
        fn = self.functions.lookup(raw_name)
        value = self.reserved(fn.name)
        return {} if value is None else {"ReservedConcurrentExecutions": value}

    def delete(self, raw_name: str) -> None:
        fn = self.functions.lookup(raw_name)
        with self.db.conn:
            self.db.conn.execute("DELETE FROM function_concurrency WHERE function_name = ?", (fn.name,))
        self.dispatcher.set_reserved(fn.name, None)

    def _function_deleted(self, name: str) -> None:
        self.dispatcher.set_reserved(name, None)  # the row went with the function (ON DELETE CASCADE)


def routes(service: ConcurrencyService) -> list[Route]:
    def name_of(request: Request) -> str:
        return unquote(request.path_params["name"])

    async def put(request: Request) -> Response:
        return json_response(service.put(name_of(request), await read_json(request)))

    async def get(request: Request) -> Response:
        return json_response(service.get(name_of(request)))

    async def delete(request: Request) -> Response:
        service.delete(name_of(request))
        return Response(status_code=204)

    return [
        Route("/2017-10-31/functions/{name}/concurrency", put, methods=["PUT"]),
        Route("/2019-09-30/functions/{name}/concurrency", get, methods=["GET"]),
        Route("/2017-10-31/functions/{name}/concurrency", delete, methods=["DELETE"]),
    ]
