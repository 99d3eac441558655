import base64
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from lamina.cli.client import Client, LaminaError, ServerUnreachable


class Stub(BaseHTTPRequestHandler):
    """Answers by path; records what it was sent so tests can check the request too."""

    requests: list[dict] = []
    release = threading.Event()
    gave_up = threading.Event()  # set if no test released the held log stream

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path
        Stub.requests.append({"method": self.command, "path": path, "headers": self.headers, "body": body})
        if path.startswith("/2015-03-31/functions/missing"):
            self._reply(
                404,
                json.dumps({"Type": "User", "Message": "Function not found: missing"}).encode(),
                {"x-amzn-ErrorType": "ResourceNotFoundException:http://internal.amazon.com/coral/x/"},
            )
        elif path.startswith("/2015-03-31/functions/busy"):
            self._reply(
                409,
                json.dumps({"Type": "User", "message": "An update is in progress"}).encode(),
                {"X-Amzn-ErrorType": "ResourceConflictException"},
            )
        elif path.startswith("/2015-03-31/functions/coded"):
            body = json.dumps({"Code": "InvalidParameterValueException", "message": "bad"}).encode()
            self._reply(400, body)
        elif (self.headers.get("X-Amz-Target") or "").startswith("AmazonSQS."):
            # SQS's JSON protocol: the shape in __type, the query code in x-amzn-query-error (not always sent).
            headers = {"Content-Type": "application/x-amz-json-1.0"}
            if json.loads(body).get("QueueUrl") != "no-header":
                headers["x-amzn-query-error"] = "AWS.SimpleQueueService.NonExistentQueue;Sender"
            self._reply(400, json.dumps({"__type": "com.amazonaws.sqs#QueueDoesNotExist",
                                         "message": "The specified queue does not exist."}).encode(), headers)
        elif path.startswith("/2015-03-31/functions/broken"):
            self._reply(502, b"<html>Bad Gateway</html>", {"Content-Type": "text/html"})
        elif path == "/lamina/v1/functions" and self.command == "GET":
            self._reply(200, json.dumps({"Functions": [{"FunctionName": "a", "State": "Active"},
                                                       {"FunctionName": "b", "State": "Pending"}]}).encode())
        elif urlsplit(path).path.endswith("/invocations"):
            self._reply(
                200,
                b'{"errorType":"ValueError","errorMessage":"boom"}',
                {"X-Amz-Function-Error": "Unhandled", "X-Amz-Log-Result": base64.b64encode(b"log").decode()},
            )
        elif "/logs?" in path:
            # Chunked, with a pause, as a follow stream would be.
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            lines = (b'{"timestamp": 1000, "message": "one\\n"}\n', b"not json\n", b'{"timestamp": 2000, ')
            for i, line in enumerate(lines):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
                # Hold the stream open until the client has shown the first line.
                if i == 0 and not Stub.release.wait(10):
                    Stub.gave_up.set()
            rest = b'"message": "two"}\n'
            self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(rest), rest))
        else:
            self._reply(200, json.dumps({"FunctionName": path}).encode())

    do_GET = do_POST = do_PUT = do_DELETE = _handle


@pytest.fixture
def server() -> Iterator[str]:
    Stub.requests = []
    Stub.release = threading.Event()
    Stub.gave_up = threading.Event()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_error_code_comes_from_header_trimmed_and_message_from_Message(server: str) -> None:
    with pytest.raises(LaminaError) as info:
        Client(server).get_function_configuration("missing")
    assert (info.value.code, info.value.message, info.value.status) == (
        "ResourceNotFoundException",
        "Function not found: missing",
        404,
    )


def test_lowercase_message_field(server: str) -> None:
    with pytest.raises(LaminaError) as info:
        Client(server).update_function_code("busy", b"PK")
    assert (info.value.code, info.value.message, info.value.status) == (
        "ResourceConflictException",
        "An update is in progress",
        409,
    )


def test_code_from_body_when_no_header(server: str) -> None:
    with pytest.raises(LaminaError) as info:
        Client(server).get_function_configuration("coded")
    assert (info.value.code, info.value.message) == ("InvalidParameterValueException", "bad")


@pytest.mark.parametrize(("queue_url", "code"), [("q", "AWS.SimpleQueueService.NonExistentQueue"),
                                                  ("no-header", "QueueDoesNotExist")])
def test_sqs_json_errors_show_their_code(server: str, queue_url: str, code: str) -> None:
    with pytest.raises(LaminaError) as info:
        Client(server).request("POST", "/", body=json.dumps({"QueueUrl": queue_url}).encode(),
                               headers={"Content-Type": "application/x-amz-json-1.0",
                                        "X-Amz-Target": "AmazonSQS.SendMessage"})
    assert (info.value.code, info.value.message, info.value.status) == (
        code, "The specified queue does not exist.", 400)


def test_non_json_error_body_is_still_reported(server: str) -> None:
    with pytest.raises(LaminaError) as info:
        Client(server).get_function_configuration("broken")
    assert info.value.code == "HTTP502"
    assert "Bad Gateway" in info.value.message
    assert not isinstance(info.value, ServerUnreachable)


def test_get_function_returns_none_on_404(server: str) -> None:
    assert Client(server).get_function("missing") is None
    assert Client(server).get_function("there") == {"FunctionName": "/2015-03-31/functions/there"}


def test_function_names_are_percent_encoded(server: str) -> None:
    Client(server).get_function_configuration("arn:aws:lambda:us-east-1:000000000000:function:f/x")
    assert Stub.requests[-1]["path"] == (
        "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Af%2Fx/configuration"
    )


def test_create_sends_base64_zip_and_role(server: str) -> None:
    Client(server).create_function({"FunctionName": "f", "Handler": "app.handler"}, b"PK\x03\x04")
    sent = Stub.requests[-1]
    assert sent["method"] == "POST" and sent["path"] == "/2015-03-31/functions"
    body = json.loads(sent["body"])
    assert body["Code"] == {"ZipFile": base64.b64encode(b"PK\x03\x04").decode()}
    assert body["Role"].startswith("arn:aws:iam::")
    assert sent["headers"]["Content-Type"] == "application/json"


def test_list_reads_lamina_listing_with_states(server: str) -> None:
    """ListFunctions leaves the State fields out, as AWS's does: `lamina ls` reads Lamina's own listing."""
    assert [(f["FunctionName"], f["State"]) for f in Client(server).list_functions()] == [("a", "Active"),
                                                                                          ("b", "Pending")]


def test_invoke_sends_raw_payload_and_headers_and_keeps_function_error(server: str) -> None:
    resp = Client(server).invoke("f", b'{"a": 1}', tail_log=True, qualifier="live")
    sent = Stub.requests[-1]
    assert sent["path"] == "/2015-03-31/functions/f/invocations?Qualifier=live"
    assert sent["body"] == b'{"a": 1}'
    assert sent["headers"]["X-Amz-Invocation-Type"] == "RequestResponse"
    assert sent["headers"]["X-Amz-Log-Type"] == "Tail"
    # A function error is a 200 with a header, not a LaminaError: the caller shows the payload.
    assert resp.status == 200
    assert resp.headers["x-amz-function-error"] == "Unhandled"
    assert resp.json() == {"errorType": "ValueError", "errorMessage": "boom"}

    Client(server).invoke("f", b"{}", asynchronous=True)
    assert Stub.requests[-1]["headers"]["X-Amz-Invocation-Type"] == "Event"
    assert "X-Amz-Log-Type" not in Stub.requests[-1]["headers"]


def test_logs_stream_is_read_line_by_line(server: str) -> None:
    stream = Client(server).iter_logs("f", 1234, follow=True)
    first = next(stream)
    # The first line must arrive while the server still holds the body open (follow mode), not after it
    # stopped waiting for the client.
    assert not Stub.gave_up.is_set()
    Stub.release.set()
    events = [first, *stream]
    assert Stub.requests[-1]["path"] == "/lamina/v1/functions/f/logs?start_time=1234&follow=true"
    assert events == [
        {"timestamp": 1000, "message": "one\n"},
        {"message": "not json"},
        {"timestamp": 2000, "message": "two"},
    ]


def test_no_server_message_on_closed_port() -> None:
    # Bind then close to get a port nothing listens on.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.raises(ServerUnreachable) as info:
        Client(endpoint).get_function("f")
    assert str(info.value.message) == (
        f"No Lamina server at {endpoint} — start one with `lamina serve`, or set LAMINA_ENDPOINT."
    )


def test_bad_endpoint_is_rejected() -> None:
    with pytest.raises(ValueError, match="bad endpoint"):
        Client("ftp://example")
