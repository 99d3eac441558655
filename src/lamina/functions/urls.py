"""Function URL configurations (FunctionUrlService): Create/Get/Update/Delete/ListFunctionUrlConfigs, their
validation and storage. Their HTTP routes are api/function_urls.py; the requests to the URLs themselves are
served by the HTTP front door (gateway/http/function_urls.py), which reads the configurations here.

Each function, and each of its aliases, can have one URL (an alias's URL invokes through the
alias). Its id is 32 random lowercase alphanumerics, as on AWS, and its address is

    http://<url-id>.lambda-url.<region>.localhost:<port>/

`*.localhost` names resolve to the loopback address in browsers and curl without any DNS setup
(RFC 6761), and the gateway recognises the `<url-id>.lambda-url.` host whatever follows it. Where
a client cannot resolve such a name (Python's resolver, say), the same URL is served at
`http://<host>:<port>/lamina/v1/url/<url-id>/`.

Configurations live in memory (the gateway reads them per request) and in SQLite.
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass
from datetime import UTC, datetime

from lamina.config import Settings
from lamina.functions import validation as v
from lamina.functions.errors import AwsError, validation
from lamina.functions.names import parse_function_name, resolve_qualifier
from lamina.functions.paging import decode_marker, encode_marker
from lamina.functions.registry import Function, FunctionService
from lamina.store.db import Database
from lamina.store.function_urls import FunctionUrlRepo, UrlRow

AUTH_TYPES = ("NONE", "AWS_IAM")
INVOKE_MODES = ("BUFFERED", "RESPONSE_STREAM")
URL_ID_ALPHABET = string.ascii_lowercase + string.digits
URL_ID_LENGTH = 32
_QUALIFIER = re.compile(r"(?!\d+$)[0-9a-zA-Z_-]+")
NOT_FOUND = "The resource you requested does not exist."
FUNCTION_MISSING = "Function does not exist"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(eq=False)
class FunctionUrl:
    url_id: str
    function_name: str
    qualifier: str               # '' for the unqualified function
    auth_type: str
    invoke_mode: str
    cors: dict | None
    creation_time: str
    last_modified_time: str

    def stored(self) -> dict:
        return {"AuthType": self.auth_type, "InvokeMode": self.invoke_mode, "Cors": self.cors,
                "CreationTime": self.creation_time, "LastModifiedTime": self.last_modified_time}

    def row(self) -> UrlRow:
        return UrlRow(self.url_id, self.function_name, self.qualifier, self.stored())


class FunctionUrlService:
    def __init__(self, settings: Settings, functions: FunctionService, db: Database) -> None:
        self.settings = settings
        self.functions = functions
        self.repo = FunctionUrlRepo(db)
        self.by_id: dict[str, FunctionUrl] = {}
        self.by_function: dict[tuple[str, str], FunctionUrl] = {}
        functions.delete_hooks.append(self._function_deleted)
        functions.qualifier_hooks.append(self._qualifier_deleted)

    def load(self) -> None:
        for row in self.repo.all():
            c = row.config
            self._index(FunctionUrl(row.url_id, row.function_name, row.qualifier, c["AuthType"], c["InvokeMode"],
                                    c.get("Cors"), c["CreationTime"], c["LastModifiedTime"]))

    # ------------------------------------------------------------------ addresses

    def domain(self, url_id: str) -> str:
        return f"{url_id}.lambda-url.{self.settings.region}.localhost"

    def address(self, url: FunctionUrl) -> str:
        return f"http://{self.domain(url.url_id)}:{self.settings.port}/"

    def function_arn(self, url: FunctionUrl) -> str:
        return self.functions.arn(url.function_name, url.qualifier or None)

    def describe(self, url: FunctionUrl, created: bool = False, invoke_mode: bool = True) -> dict:
        """The configuration as AWS answers with it; Create and Update name InvokeMode only when the request did."""
        out: dict = {"FunctionUrl": self.address(url), "FunctionArn": self.function_arn(url),
                     "AuthType": url.auth_type}
        if url.cors is not None:
            out["Cors"] = url.cors
        out["CreationTime"] = url.creation_time
        if not created:
            out["LastModifiedTime"] = url.last_modified_time
        if invoke_mode:
            out["InvokeMode"] = url.invoke_mode
        return out

    # ------------------------------------------------------------------ lookups

    def _target(self, raw_name: str, query_qualifier: str | None,
                missing: str = NOT_FOUND) -> tuple[Function, str]:
        """The function and qualifier ('' for none); `missing`: AWS's words when either is not there (Create and
        Update say "Function does not exist", Get and Delete the generic 404)."""
        ref = parse_function_name(raw_name)
        qualifier = resolve_qualifier(ref, query_qualifier)
        if qualifier is not None and (len(qualifier) > 128 or not _QUALIFIER.fullmatch(qualifier)):
            raise validation(qualifier, "qualifier", "Member must satisfy regular expression pattern: "
                             r"((?!^\d+$)^[0-9a-zA-Z-_]+$)")
        fn = self.functions.functions.get(ref.name)
        if fn is None or (qualifier is not None and qualifier not in fn.aliases):
            raise AwsError("ResourceNotFoundException", missing)
        return fn, qualifier or ""

    def _existing(self, raw_name: str, query_qualifier: str | None, missing: str = NOT_FOUND) -> FunctionUrl:
        fn, qualifier = self._target(raw_name, query_qualifier, missing)
        url = self.by_function.get((fn.name, qualifier))
        if url is None:
            raise AwsError("ResourceNotFoundException", NOT_FOUND)
        return url

    def _index(self, url: FunctionUrl) -> None:
        self.by_id[url.url_id] = url
        self.by_function[(url.function_name, url.qualifier)] = url

    def _unindex(self, url: FunctionUrl) -> None:
        self.by_id.pop(url.url_id, None)
        self.by_function.pop((url.function_name, url.qualifier), None)

    def _function_deleted(self, name: str) -> None:
        # The rows went with the function (ON DELETE CASCADE); forget them here too.
        for url in [u for u in self.by_id.values() if u.function_name == name]:
            self._unindex(url)

    def _qualifier_deleted(self, name: str, qualifier: str) -> None:
        # An alias's URL goes with the alias.
        if (url := self.by_function.get((name, qualifier))) is not None:
            self.repo.delete(url.url_id)
            self._unindex(url)

    def _new_id(self) -> str:
        while True:
            url_id = "".join(secrets.choice(URL_ID_ALPHABET) for _ in range(URL_ID_LENGTH))
            if url_id not in self.by_id:
                return url_id

    # ------------------------------------------------------------------ operations

    def create(self, raw_name: str, query_qualifier: str | None, body: dict) -> dict:
        body = v.require_object(body)
        v.required(body, "AuthType", "authType")
        auth_type = _enum(body, "AuthType", "authType", AUTH_TYPES)
        invoke_mode = _enum(body, "InvokeMode", "invokeMode", INVOKE_MODES) or "BUFFERED"
        cors = _cors(body)
        fn, qualifier = self._target(raw_name, query_qualifier, FUNCTION_MISSING)
        if (fn.name, qualifier) in self.by_function:
            raise AwsError("ResourceConflictException",
                           f"Failed to create function url config for [functionArn = "
                           f"{self.functions.arn(fn.name, qualifier or None)}]. Error message:  FunctionUrlConfig "
                           "exists for this Lambda function")
        now = _now()
        url = FunctionUrl(self._new_id(), fn.name, qualifier, auth_type or "NONE", invoke_mode, cors, now, now)
        self.repo.insert(url.row())
        self._index(url)
        return self.describe(url, created=True, invoke_mode="InvokeMode" in body)

    def get(self, raw_name: str, query_qualifier: str | None) -> dict:
        return self.describe(self._existing(raw_name, query_qualifier))

    def update(self, raw_name: str, query_qualifier: str | None, body: dict) -> dict:
        body = v.require_object(body)
        auth_type = _enum(body, "AuthType", "authType", AUTH_TYPES)
        invoke_mode = _enum(body, "InvokeMode", "invokeMode", INVOKE_MODES)
        cors = _cors(body)
        url = self._existing(raw_name, query_qualifier, FUNCTION_MISSING)
        if auth_type is not None:
            url.auth_type = auth_type
        if invoke_mode is not None:
            url.invoke_mode = invoke_mode
        if "Cors" in body:
            url.cors = cors
        url.last_modified_time = _now()
        self.repo.update(url.row())
        return self.describe(url, invoke_mode="InvokeMode" in body)

    def delete(self, raw_name: str, query_qualifier: str | None) -> None:
        url = self._existing(raw_name, query_qualifier)
        self.repo.delete(url.url_id)
        self._unindex(url)

    def list(self, raw_name: str, marker: str | None, max_items: int | None) -> dict:
        ref = parse_function_name(raw_name)
        fn = self.functions.functions.get(ref.name)
        if fn is None:
            raise AwsError("ResourceNotFoundException", FUNCTION_MISSING)
        urls = sorted((u for u in self.by_id.values() if u.function_name == fn.name), key=lambda u: u.qualifier)
        start = 0
        if marker:
            after = decode_marker(marker)
            # "q:" + the qualifier of the page's last URL (the function's own is '', which alone would make an
            # empty marker, read as none).
            after = after.removeprefix("q:")
            start = next((i for i, u in enumerate(urls) if u.qualifier > after), len(urls))
        limit = max_items or 50
        page = urls[start : start + limit]
        out: dict = {"FunctionUrlConfigs": [self.describe(u) for u in page]}
        if start + limit < len(urls):
            out["NextMarker"] = encode_marker(f"q:{page[-1].qualifier}")
        return out


def _enum(body: dict, key: str, member: str, allowed: tuple[str, ...]) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if value not in allowed:
        raise validation(value, member, f"Member must satisfy enum value set: [{', '.join(sorted(allowed))}]")
    return value


def _string_list(cors: dict, key: str, member: str, max_items: int, max_len: int) -> list[str] | None:
    value = cors.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise validation(value, member, "Member must be a list of strings")
    if len(value) > max_items:
        raise validation(value, member, f"Member must have length less than or equal to {max_items}")
    for item in value:
        if not item or len(item) > max_len:
            raise validation(value, member, f"Member must satisfy constraint: [Member must have length less than "
                             f"or equal to {max_len}, Member must have length greater than or equal to 1]")
    return value


def _cors(body: dict) -> dict | None:
    value = body.get("Cors")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise validation(value, "cors", "Member must be an object")
    cors: dict = {}
    if (credentials := v.boolean(value, "AllowCredentials", "cors.allowCredentials")) is not None:
        cors["AllowCredentials"] = credentials
    for key, member, max_items, max_len in (("AllowHeaders", "cors.allowHeaders", 100, 1024),
                                            ("AllowMethods", "cors.allowMethods", 6, 6),
                                            ("AllowOrigins", "cors.allowOrigins", 100, 253),
                                            ("ExposeHeaders", "cors.exposeHeaders", 100, 1024)):
        if (items := _string_list(value, key, member, max_items, max_len)) is not None:
            cors[key] = items
    if (max_age := v.integer(value, "MaxAge", "cors.maxAge", 0, 86400)) is not None:
        cors["MaxAge"] = max_age
    return cors
