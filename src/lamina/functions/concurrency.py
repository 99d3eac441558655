"""Reserved concurrency (ConcurrencyService: Put/Get/DeleteFunctionConcurrency) and provisioned concurrency
(ProvisionedConcurrencyService: Put/Get/Delete/ListProvisionedConcurrencyConfig): the operations, their
validation and limits, the settings persisted and handed to the dispatcher, which applies them. Their HTTP
routes are api/concurrency.py.

A reservation is both a cap (the function never has more invocations in flight; 0 throttles every
invoke) and a guarantee (it is taken out of the account's unreserved pool), as on AWS.

Provisioned concurrency is set on a published version or an alias: the version's pool keeps the requested
number of environments started, never reaped, replaced when they die. An alias with weighted routing
(RoutingConfig.AdditionalVersionWeights, e.g. during a canary deployment) spreads its environments over both
versions by weight, as AWS does, and re-spreads them when the weights change; a new configuration cannot be
put on an alias while its routing is in place (AWS refuses that too). Provisioned concurrency comes out of the
function's reservation if it has one, else out of the account's unreserved pool (GetAccountSettings shows it
taken out), and admits only the invocations of the version it is on (Dispatcher._admit). Functions with tenant
isolation (PER_TENANT) cannot have any: their environments belong to tenants.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from lamina.dispatch.spec import pool_key
from lamina.functions import validation as v
from lamina.functions.errors import AwsError, not_found
from lamina.functions.names import check_qualifier, parse_function_name, resolve_qualifier
from lamina.functions.paging import decode_marker, encode_marker
from lamina.functions.registry import LATEST, FunctionService, is_per_tenant
from lamina.store.db import Database

MIN_UNRESERVED = 100  # AWS keeps at least this many for functions without a reservation
INT_MAX = 2**31 - 1   # the model's Integer: the account's limits, not the request's validation, bound these


class ConcurrencyService:
    def __init__(self, functions: FunctionService, db: Database) -> None:
        self.functions = functions
        self.dispatcher = functions.dispatcher
        self.db = db
        self.provisioned = ProvisionedConcurrencyService(self)
        functions.delete_hooks.append(self._function_deleted)
        functions.unreserved_claims.append(self.provisioned.unreserved_total)

    def load(self) -> None:
        for row in self.db.conn.execute("SELECT function_name, reserved FROM function_concurrency"):
            self.dispatcher.set_reserved(row["function_name"], row["reserved"])
        self.provisioned.load()

    def reserved(self, name: str) -> int | None:
        return self.dispatcher.reserved.get(name)

    def put(self, raw_name: str, body: dict) -> dict:
        ref = parse_function_name(raw_name)
        if ref.name not in self.functions.functions:
            raise not_found(self.functions.arn(ref.name, LATEST))   # AWS names $LATEST here
        if ref.qualifier is not None:   # even $LATEST: reserved concurrency is the function's own
            raise AwsError("InvalidParameterValueException", "This operation is permitted on Lambda functions only. "
                           "Aliases and versions do not support this operation. Please specify either a function "
                           "name or an unqualified function ARN.")
        fn = self.functions.unqualified(raw_name)
        value = v.required_integer(body, "ReservedConcurrentExecutions", "reservedConcurrentExecutions", 0, INT_MAX)
        provisioned = self.provisioned.total(fn.name)
        if value < provisioned:
            raise AwsError("InvalidParameterValueException",
                           f"Specified ReservedConcurrentExecutions for function is less than the function's "
                           f"allocated provisioned concurrency [{provisioned}].")
        others = sum(n for name, n in self.dispatcher.reserved.items() if name != fn.name)
        others += self.provisioned.unreserved_total(exclude=fn.name)
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


@dataclass
class ProvisionedConfig:
    function_name: str
    qualifier: str
    requested: int
    last_modified: str


def _timestamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime())


INIT_FAILURE = "FUNCTION_ERROR_INIT_FAILURE"  # AWS's StatusReason when pre-started environments fail to initialise


def split_by_weight(requested: int, primary: str, weights: dict[str, float]) -> dict[str, int]:
    """How a weighted alias's provisioned environments spread over its versions: each additional version gets
    its weight's share (rounded half up), the primary version the rest. Versions with no share are left out."""
    shares: dict[str, int] = {}
    left = requested
    for version, weight in sorted(weights.items()):
        share = min(left, int(requested * weight + 0.5))
        if share > 0 and version != primary:
            shares[version] = share
            left -= share
    if left > 0:
        shares[primary] = left
    return shares


class ProvisionedConcurrencyService:
    def __init__(self, concurrency: ConcurrencyService) -> None:
        self.concurrency = concurrency
        self.functions = concurrency.functions
        self.dispatcher = concurrency.dispatcher
        self.db = concurrency.db
        self.configs: dict[tuple[str, str], ProvisionedConfig] = {}
        self._applied: dict[str, dict[str, int]] = {}  # function -> pool key -> environments asked of it
        self.functions.delete_hooks.append(self._function_deleted)
        self.functions.qualifier_hooks.append(self._qualifier_deleted)
        self.functions.alias_hooks.append(self.apply)

    def load(self) -> None:
        rows = self.db.conn.execute("SELECT function_name, qualifier, requested, last_modified "
                                    "FROM provisioned_concurrency").fetchall()
        for row in rows:
            fn = self.functions.functions.get(row["function_name"])
            if fn is None or not (row["qualifier"] in fn.versions or row["qualifier"] in fn.aliases):
                continue
            cfg = ProvisionedConfig(row["function_name"], row["qualifier"], row["requested"], row["last_modified"])
            self.configs[(cfg.function_name, cfg.qualifier)] = cfg
        for name in {name for name, _ in self.configs}:
            self.apply(name)

    # ------------------------------------------------------------------ accounting

    def total(self, name: str, exclude: str | None = None) -> int:
        """Provisioned concurrency of a function, all versions and aliases (but `exclude`) together."""
        return sum(c.requested for (fn, q), c in self.configs.items() if fn == name and q != exclude)

    def unreserved_total(self, exclude: str | None = None) -> int:
        """Provisioned concurrency taken out of the account's unreserved pool (functions without a reservation,
        but `exclude`)."""
        return sum(c.requested for (fn, _), c in self.configs.items()
                   if fn not in self.dispatcher.reserved and fn != exclude)

    def _check_limits(self, name: str, qualifier: str, value: int) -> None:
        reserved = self.dispatcher.reserved.get(name)
        mine = self.total(name, exclude=qualifier) + value
        if reserved is not None:
            if mine > reserved:
                raise AwsError("InvalidParameterValueException",
                               "Requested Provisioned Concurrency should not be greater than the "
                               "reservedConcurrentExecution for function")
            return
        # AWS's two messages: more than the unreserved pool holds at all, or so much that less than its minimum
        # would be left for functions without a reservation.
        floor = min(MIN_UNRESERVED, self.dispatcher.max_environments)
        unreserved = (self.dispatcher.max_environments - sum(self.dispatcher.reserved.values())
                      - self.unreserved_total(exclude=name))
        if mine > unreserved:
            raise AwsError("InvalidParameterValueException",
                           f"Specified ConcurrentExecutions for function is greater than account's unreserved "
                           f"concurrency [{max(unreserved - self.total(name, exclude=qualifier), 0)}].")
        if unreserved - mine < floor:
            raise AwsError("InvalidParameterValueException",
                           "Specified ConcurrentExecutions for function decreases account's "
                           f"UnreservedConcurrentExecution below its minimum value of [{floor}].")

    # ------------------------------------------------------------------ the dispatcher

    def _version_of(self, name: str, qualifier: str) -> str | None:
        fn = self.functions.functions.get(name)
        if fn is None:
            return None
        if (alias := fn.aliases.get(qualifier)) is not None:
            return alias.function_version
        return qualifier if qualifier in fn.versions else None

    def _shares(self, cfg: ProvisionedConfig) -> dict[str, int]:
        """Environments per published version for one configuration: all on its version, or for an alias with
        weighted routing spread over both of its versions."""
        fn = self.functions.functions.get(cfg.function_name)
        if fn is None:
            return {}
        alias = fn.aliases.get(cfg.qualifier)
        if alias is not None and alias.weights:
            shares = split_by_weight(cfg.requested, alias.function_version, alias.weights)
        else:
            version = self._version_of(cfg.function_name, cfg.qualifier)
            shares = {version: cfg.requested} if version is not None else {}
        return {v: n for v, n in shares.items() if v != LATEST and (v in fn.versions)}

    def apply(self, name: str) -> None:
        """Tell the dispatcher how many environments each of the function's versions keeps started."""
        want: dict[str, int] = {}
        for (fn_name, _), cfg in self.configs.items():
            if fn_name != name:
                continue
            for version, count in self._shares(cfg).items():
                key = pool_key(name, version)
                want[key] = want.get(key, 0) + count
        for key in self._applied.get(name, {}):
            if key not in want:
                self.dispatcher.set_provisioned(key, 0)
        for key, count in want.items():
            self.dispatcher.set_provisioned(key, count)
        if want:
            self._applied[name] = want
        else:
            self._applied.pop(name, None)

    def _status(self, cfg: ProvisionedConfig) -> dict:
        ready = 0
        failure = None
        for version, share in self._shares(cfg).items():
            pool = self.dispatcher.pools.get(pool_key(cfg.function_name, version))
            mine = min(pool.provisioned_ready, share) if pool is not None else 0
            ready += mine
            if mine < share and pool is not None and failure is None:
                failure = pool.provision_failure
        out = {"RequestedProvisionedConcurrentExecutions": cfg.requested,
               "AvailableProvisionedConcurrentExecutions": ready,
               "AllocatedProvisionedConcurrentExecutions": ready,
               "Status": "READY" if ready >= cfg.requested else "IN_PROGRESS",
               "LastModified": cfg.last_modified}
        if failure is not None:
            # AWS's reason code first (tools match on it), then what the init said, so the cause is visible.
            out["Status"] = "FAILED"
            out["StatusReason"] = (f"{INIT_FAILURE}: {failure.body.get('errorType', 'Runtime.Unknown')}: "
                                   f"{failure.body.get('errorMessage', 'init failed')}")
        return out

    # ------------------------------------------------------------------ the API

    def _target(self, raw_name: str, qualifier: str | None, put: bool = False) -> tuple[str, str]:
        """(function name, qualifier) for a published version or an alias, with AWS's errors: $LATEST or no
        qualifier is refused, an unknown alias is 'Cannot find alias arn', an unknown version or function
        'Function not found'."""
        ref = parse_function_name(raw_name)
        q = resolve_qualifier(ref, qualifier)
        if q is None:
            raise AwsError("ValidationException", "1 validation error detected: Value null at 'qualifier' "
                           "failed to satisfy constraint: Member must not be null")
        check_qualifier(q)
        if q == LATEST:
            raise AwsError("InvalidParameterValueException",
                           "Provisioned Concurrency Configs cannot be applied to unpublished function versions."
                           if put else "The function resource provided must be an alias or a published version.")
        fn = self.functions.functions.get(ref.name)
        if q.isdigit():
            if fn is None or q not in fn.versions:
                raise not_found(self.functions.arn(ref.name, q))
        elif fn is None or q not in fn.aliases:
            raise AwsError("ResourceNotFoundException", f"Cannot find alias arn: {self.functions.arn(ref.name, q)}")
        return fn.name, q

    def put(self, raw_name: str, qualifier: str | None, body: dict) -> dict:
        name, q = self._target(raw_name, qualifier, put=True)
        value = v.required_integer(body, "ProvisionedConcurrentExecutions", "provisionedConcurrentExecutions",
                                   1, INT_MAX)
        fn = self.functions.functions[name]
        if is_per_tenant(fn.config):
            raise AwsError("InvalidParameterValueException",
                           "Provisioned Concurrency is not supported for functions with tenant isolation mode "
                           "(TenancyConfig PER_TENANT): their execution environments serve one tenant each. "
                           "Use a function without tenant isolation for pre-initialized environments.")
        version = self._version_of(name, q)
        alias = fn.aliases.get(q)
        if alias is not None and version == LATEST:
            raise AwsError("InvalidParameterValueException",
                           "Provisioned Concurrency Configs cannot be applied to unpublished function versions.")
        if alias is not None and alias.weights:
            # AWS: provisioned concurrency on an alias cannot be managed while its routing configuration is in
            # place (a configuration put before the routing was added is spread over both versions).
            raise AwsError("InvalidParameterValueException", "Invalid alias configuration for Provisioned "
                           "Concurrency: remove the alias's RoutingConfig (AdditionalVersionWeights) first.")
        for (other_fn, other_q) in self.configs:
            if other_fn == name and other_q != q and self._version_of(name, other_q) == version:
                # One configuration per version, directly or through an alias (AWS's messages).
                raise AwsError("ResourceConflictException",
                               "Alias can't be used for Provisioned Concurrency configuration on an already "
                               "Provisioned version" if alias is not None else
                               "Version is pointed by a Provisioned Concurrency alias")
        self._check_limits(name, q, value)
        cfg = ProvisionedConfig(name, q, value, _timestamp())
        with self.db.conn:
            self.db.conn.execute(
                "INSERT INTO provisioned_concurrency (function_name, qualifier, requested, last_modified) "
                "VALUES (?, ?, ?, ?) ON CONFLICT(function_name, qualifier) DO UPDATE SET "
                "requested = excluded.requested, last_modified = excluded.last_modified",
                (name, q, value, cfg.last_modified))
        self.configs[(name, q)] = cfg
        self.apply(name)
        return self._status(cfg)

    def get(self, raw_name: str, qualifier: str | None) -> dict:
        name, q = self._target(raw_name, qualifier)
        cfg = self.configs.get((name, q))
        if cfg is None:
            raise AwsError("ProvisionedConcurrencyConfigNotFoundException",
                           "No Provisioned Concurrency Config found for this function")
        return self._status(cfg)

    def delete(self, raw_name: str, qualifier: str | None) -> None:
        name, q = self._target(raw_name, qualifier)
        self._forget(name, q)

    def list(self, raw_name: str, marker: str | None, max_items: int | None) -> dict:
        fn = self.functions.lookup(raw_name)
        items = sorted((c for (name, _), c in self.configs.items() if name == fn.name), key=lambda c: c.qualifier)
        if marker:
            after = decode_marker(marker)
            items = [c for c in items if c.qualifier > after]
        limit = max_items or 50
        page = items[:limit]
        out: dict = {"ProvisionedConcurrencyConfigs": [
            {"FunctionArn": self.functions.arn(c.function_name, c.qualifier), **self._status(c)} for c in page]}
        if len(items) > limit:
            out["NextMarker"] = encode_marker(page[-1].qualifier)
        return out

    # ------------------------------------------------------------------ deletions

    def _forget(self, name: str, qualifier: str) -> None:
        with self.db.conn:
            self.db.conn.execute("DELETE FROM provisioned_concurrency WHERE function_name = ? AND qualifier = ?",
                                 (name, qualifier))
        if self.configs.pop((name, qualifier), None) is not None:
            self.apply(name)

    def _qualifier_deleted(self, name: str, qualifier: str) -> None:
        self._forget(name, qualifier)

    def _function_deleted(self, name: str) -> None:
        # The rows went with the function (ON DELETE CASCADE); the dispatcher dropped its pools.
        for config_key in [k for k in self.configs if k[0] == name]:
            del self.configs[config_key]
        for pool in self._applied.pop(name, {}):
            self.dispatcher.set_provisioned(pool, 0)
