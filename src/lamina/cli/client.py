"""A small synchronous client for a Lamina server's Lambda REST API.

Standard library only: boto3 takes ~0.5 s to import, which every CLI command would pay.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

API = "/2015-03-31/functions"
LOGS_API = "/lamina/v1/functions"
CONNECT_TIMEOUT = 10.0
DEFAULT_TIMEOUT = 60.0
# The longest a function may run (AWS's 900 s limit), plus slack for the response to arrive.
INVOKE_TIMEOUT = 15 * 60 + 30.0
# CreateFunction needs a role; Lamina ignores it, so a fixed placeholder in the local account.
PLACEHOLDER_ROLE = "arn:aws:iam::000000000000:role/lamina"
# A query string: a mapping, or pairs where a name repeats (UntagResource's tagKeys).
Query = dict[str, str] | list[tuple[str, str]]


class LaminaError(Exception):
    """An error response from the server, in AWS's terms (e.g. ResourceNotFoundException, 404)."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


class ServerUnreachable(LaminaError):
    """No server answered at the endpoint (refused, unresolvable host, connect timeout)."""

    def __init__(self, message: str) -> None:
        super().__init__("ServerUnreachable", message, 0)


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage  # case-insensitive lookups
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def error_from_response(status: int, headers: http.client.HTTPMessage, body: bytes, reason: str = "") -> LaminaError:
    """Build a LaminaError the way botocore does: x-amzn-ErrorType header first, then the body."""
    data: Any = None
    with suppress(ValueError):
        data = json.loads(body) if body else None
    if not isinstance(data, dict):
        data = {}
    # Real AWS appends a URL ("ResourceNotFoundException:http://internal.amazon.com/...").
    code = (headers.get("x-amzn-ErrorType") or "").split(":", 1)[0].strip()
    # JSON 1.0 APIs (SQS) name the error in the body's __type ("com.amazonaws.sqs#QueueDoesNotExist").
    code = code or str(data.get("code") or data.get("Code") or data.get("__type") or "").rsplit("#", 1)[-1]
    # An awsQueryCompatible API (SQS) sends its query-protocol code too; botocore reports that one.
    query_code = (headers.get("x-amzn-query-error") or "").split(";", 1)[0].strip()
    code = query_code or code or f"HTTP{status}"
    # The field's capitalisation differs per exception shape in the Lambda model.
    message = data.get("message") or data.get("Message")
    if not message:
        text = body.decode("utf-8", "replace").strip()
        message = text[:500] if text and not data else (reason or "no details given")
    return LaminaError(code, str(message), status)


def _signed(method: str, url: str, body: bytes | None, headers: dict[str, str]) -> dict[str, str]:
    """The headers, SigV4-signed when AWS credentials are in the environment (a server with keys configured verifies
    every request); botocore is imported only then."""
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not key or not secret:
        return headers
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    request = AWSRequest(method=method, url=url, data=body or b"", headers=headers)
    SigV4Auth(Credentials(key, secret, os.environ.get("AWS_SESSION_TOKEN")), "lambda", region).add_auth(request)
    return dict(request.headers.items())


class Client:
    """One HTTP connection per request: the CLI makes few calls, so keep-alive buys nothing."""

    def __init__(self, endpoint: str) -> None:
        parts = urlsplit(endpoint if "://" in endpoint else "http://" + endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"bad endpoint {endpoint!r}: expected e.g. http://127.0.0.1:8800")
        self.endpoint = endpoint.rstrip("/")
        self._parts = parts
        self._host: str = parts.hostname  # checked above
        self._prefix = parts.path.rstrip("/")  # a server mounted under a path behind a proxy

    # -- transport -------------------------------------------------------------------------------

    def _connect(self, read_timeout: float | None) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._parts.scheme == "https" else http.client.HTTPConnection
        conn = cls(self._host, self._parts.port, timeout=CONNECT_TIMEOUT)
        try:
            conn.connect()
        except ConnectionRefusedError:
            raise ServerUnreachable(
                f"No Lamina server at {self.endpoint} — start one with `lamina serve`, or set LAMINA_ENDPOINT."
            ) from None
        except OSError as exc:  # DNS failure, no route, connect timeout
            raise ServerUnreachable(
                f"Cannot reach a Lamina server at {self.endpoint} ({exc}) — check --endpoint / LAMINA_ENDPOINT."
            ) from None
        # Connecting should be quick, but reading may legitimately take as long as a function runs.
        conn.sock.settimeout(read_timeout)
        return conn

    def _send(
        self,
        conn: http.client.HTTPConnection,
        method: str,
        path: str,
        query: Query | None,
        body: bytes | None,
        headers: dict[str, str] | None,
    ) -> http.client.HTTPResponse:
        url = self._prefix + path + ("?" + urlencode(query) if query else "")
        hdrs = {"Accept": "application/json", "User-Agent": "lamina-cli"}
        hdrs.update(headers or {})
        hdrs = _signed(method, f"{self._parts.scheme}://{self._parts.netloc}{url}", body, hdrs)
        try:
            conn.request(method, url, body=body, headers=hdrs)
            return conn.getresponse()
        except TimeoutError:
            raise LaminaError("ClientTimeout", f"no response from {self.endpoint} in time", 0) from None
        except (ConnectionError, http.client.HTTPException) as exc:
            msg = f"the server at {self.endpoint} dropped the request ({exc})"
            raise LaminaError("ConnectionError", msg, 0) from None

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Query | None = None,
        json_body: Any = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> Response:
        """Send one request and read the whole response; non-2xx statuses raise LaminaError."""
        headers = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers.setdefault("Content-Type", "application/json")
        conn = self._connect(timeout)
        try:
            resp = self._send(conn, method, path, query, body, headers)
            try:
                data = resp.read()
            except TimeoutError:
                raise LaminaError("ClientTimeout", f"no response from {self.endpoint} in time", 0) from None
            if resp.status >= 300:
                raise error_from_response(resp.status, resp.headers, data, resp.reason)
            return Response(resp.status, resp.headers, data)
        finally:
            conn.close()

    @contextmanager
    def stream(
        self, method: str, path: str, *, query: dict[str, str] | None = None, timeout: float | None = None
    ) -> Iterator[http.client.HTTPResponse]:
        """Yield the open response so a long-lived body (log follow) can be read as it arrives."""
        conn = self._connect(timeout)
        try:
            resp = self._send(conn, method, path, query, None, None)
            if resp.status >= 300:
                raise error_from_response(resp.status, resp.headers, resp.read(), resp.reason)
            yield resp
        finally:
            conn.close()

    @contextmanager
    def passthrough(
        self, method: str, path: str, *, body: bytes | None = None, headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Iterator[http.client.HTTPResponse]:
        """Send exactly the given headers and yield the open response whatever its status: an app's own
        answer through the server (a MicroVM's endpoint), not an AWS API call."""
        conn = self._connect(timeout)
        try:
            conn.request(method, self._prefix + path, body=body, headers=headers or {})
            yield conn.getresponse()
        finally:
            conn.close()

    # -- Lambda operations -----------------------------------------------------------------------

    @staticmethod
    def _fn(name: str, suffix: str = "") -> str:
        return f"{API}/{quote(name, safe='')}{suffix}"

    def get_function(self, name: str) -> dict[str, Any] | None:
        """GetFunction, or None when the function does not exist."""
        try:
            return self.request("GET", self._fn(name)).json()
        except LaminaError as exc:
            if exc.status == 404:
                return None
            raise

    def get_function_configuration(self, name: str) -> dict[str, Any]:
        return self.request("GET", self._fn(name, "/configuration")).json()

    def create_function(self, config: dict[str, Any], zip_bytes: bytes) -> dict[str, Any]:
        body = {"Role": PLACEHOLDER_ROLE, **config, "Code": {"ZipFile": base64.b64encode(zip_bytes).decode()}}
        return self.request("POST", API, json_body=body).json()

    def update_function_code(self, name: str, zip_bytes: bytes) -> dict[str, Any]:
        body = {"ZipFile": base64.b64encode(zip_bytes).decode()}
        return self.request("PUT", self._fn(name, "/code"), json_body=body).json()

    def update_function_configuration(self, name: str, config: dict[str, Any]) -> dict[str, Any]:
        return self.request("PUT", self._fn(name, "/configuration"), json_body=config).json()

    def list_functions(self) -> Iterator[dict[str, Any]]:
        """Every function with its State fields: Lamina's own listing (ListFunctions leaves them out, as AWS's does)."""
        yield from (self.request("GET", "/lamina/v1/functions").json() or {}).get("Functions") or []

    def delete_function(self, name: str) -> None:
        self.request("DELETE", self._fn(name))

    def invoke(
        self,
        name: str,
        payload: bytes,
        *,
        asynchronous: bool = False,
        tail_log: bool = False,
        qualifier: str | None = None,
    ) -> Response:
        headers = {
            "Content-Type": "application/json",
            "X-Amz-Invocation-Type": "Event" if asynchronous else "RequestResponse",
        }
        if tail_log:
            headers["X-Amz-Log-Type"] = "Tail"
        return self.request(
            "POST",
            self._fn(name, "/invocations"),
            query={"Qualifier": qualifier} if qualifier else None,
            body=payload,
            headers=headers,
            # An async invoke only queues the event, so it needs no long wait.
            timeout=DEFAULT_TIMEOUT if asynchronous else INVOKE_TIMEOUT,
        )

    def _lines(self, resp: http.client.HTTPResponse) -> Iterator[bytes]:
        """The body's lines as they arrive; a server that goes away mid-stream is a LaminaError."""
        try:
            yield from resp
        except (ConnectionError, TimeoutError, http.client.HTTPException) as exc:
            msg = f"the stream from {self.endpoint} broke off ({type(exc).__name__})"
            raise LaminaError("ConnectionError", msg, 0) from None

    def iter_logs(self, name: str, start_time_ms: int, follow: bool = False) -> Iterator[dict[str, Any]]:
        """Log events as they arrive from the NDJSON stream; endless while following."""
        path = f"{LOGS_API}/{quote(name, safe='')}/logs"
        query = {"start_time": str(start_time_ms), "follow": "true" if follow else "false"}
        # No read timeout while following: a quiet function sends nothing for a long time.
        with self.stream("GET", path, query=query, timeout=None if follow else DEFAULT_TIMEOUT) as resp:
            for raw in self._lines(resp):
                line = raw.strip()
                if not line:
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    event = None
                if not isinstance(event, dict):  # still show what the server sent rather than drop it
                    event = {"message": line.decode("utf-8", "replace")}
                yield event
