"""Node.js functions (nodejsN.x on the host's Node.js N) with AWS's semantics: async and callback handlers, CommonJS
and ES modules, the context object, AWS's error shape, console.* in AWS's log format, a dependency in node_modules,
NODE_PATH, response streaming, timeouts, crashes and memory limits, the initialised spare environment a cold start
takes, and the Node.js examples of AWS's documentation, unchanged.

Each test runs on every nodejsN.x this machine has a Node.js for, and is skipped (with the server's reason) where
there is none."""

from __future__ import annotations

import base64
import glob
import json
import re
import time
from pathlib import Path

import pytest

from helpers import (
    FunctionUrl,
    create_function,
    failure,
    health,
    invoke,
    make_zip,
    recycle,
    unique_name,
    wait_settled,
)
from lamina.sandbox.interpreters import NODE_RUNTIMES

pytestmark = pytest.mark.timeout(180)

# AWS's text format: time, request id, level, the message (its lines joined with \r: one record per call).
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\t(?P<rid>[0-9a-f-]{36})\t(?P<level>[A-Z]+)\t"
                      r"(?P<msg>[^\n]*)$")


@pytest.fixture(scope="module")
def node_runtimes(endpoint: str) -> dict:
    return health(endpoint)["runtimes"]


@pytest.fixture(params=NODE_RUNTIMES)
def runtime(request, node_runtimes: dict) -> str:
    if request.param not in node_runtimes["available"]:
        pytest.skip(f"{request.param} is not on this machine: {node_runtimes['missing'].get(request.param, '')}")
    return request.param


@pytest.fixture
def node(lambda_client, runtime: str):
    """create(files, handler='index.handler', **kwargs) -> name: a Node.js function, deleted afterwards."""
    created: list[str] = []

    def create(files: dict, handler: str = "index.handler", wait: bool = True, **kwargs) -> str:
        name = unique_name("node")
        created.append(name)
        create_function(lambda_client, name, files, handler=handler, wait=wait, Runtime=runtime, **kwargs)
        return name

    yield create
    for name in created:
        lambda_client.delete_function(FunctionName=name)


def tail(resp: dict) -> list[str]:
    return base64.b64decode(resp["LogResult"]).decode().rstrip("\n").split("\n")


def app_lines(resp: dict) -> list[re.Match]:
    """The handler's console lines in the invocation's log tail (between START and END)."""
    return [m for line in tail(resp) if (m := LOG_LINE.match(line))]


ESM = """\
import { createHash } from 'node:crypto';
const loadedAt = Date.now();
let calls = 0;

export const handler = async (event, context) => {
  calls += 1;
  console.log('hello from', process.version);
  console.warn('two\\nlines');
  console.error('an', 'error', { n: 1 });
  console.debug('debug line');
  await new Promise((resolve) => setTimeout(resolve, 5));
  return {
    event, calls, node: process.version, sha: createHash('sha256').update('x').digest('hex').slice(0, 8),
    requestId: context.awsRequestId, functionName: context.functionName, version: context.functionVersion,
    memory: context.memoryLimitInMB, arn: context.invokedFunctionArn, group: context.logGroupName,
    stream: context.logStreamName, remaining: context.getRemainingTimeInMillis(),
    waits: context.callbackWaitsForEmptyEventLoop, cwd: process.cwd(), execEnv: process.env.AWS_EXECUTION_ENV,
    nodePath: process.env.NODE_PATH, handlerVar: process.env._HANDLER, path: process.env.PATH,
    taskRoot: process.env.LAMBDA_TASK_ROOT,
  };
};
"""


def test_async_es_module_handler_context_and_console(lambda_client, node, runtime: str) -> None:
    name = node({"index.mjs": ESM})
    resp, body = invoke(lambda_client, name, {"k": "v"}, LogType="Tail")
    assert "FunctionError" not in resp, body
    major = runtime[len("nodejs"):].split(".")[0]
    assert body["node"].startswith(f"v{major}.") and body["event"] == {"k": "v"} and body["calls"] == 1
    assert body["sha"] == "2d711642"
    assert body["requestId"] == resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert (body["functionName"], body["version"], body["memory"]) == (name, "$LATEST", "128")
    assert body["arn"].endswith(f":function:{name}") and body["group"] == f"/aws/lambda/{name}"
    assert 0 < body["remaining"] <= 3000 and body["waits"] is True
    assert body["execEnv"] == f"AWS_Lambda_{runtime}" and body["handlerVar"] == "index.handler"
    assert body["cwd"] == body["taskRoot"] and body["path"].split(":")[0].endswith("bin")
    node_path = body["nodePath"].split(":")
    assert node_path[0].endswith(f"/nodejs/node{major}/node_modules") and node_path[1].endswith("/nodejs/node_modules")
    assert node_path[-1] == body["taskRoot"], node_path
    lines = app_lines(resp)
    assert [(m["level"], m["msg"]) for m in lines] == [
        ("INFO", f"hello from {body['node']}"), ("WARN", "two\rlines"), ("ERROR", "an error { n: 1 }"),
        ("DEBUG", "debug line")], tail(resp)
    assert all(m["rid"] == body["requestId"] for m in lines)
    log = tail(resp)
    assert log[0].startswith(f"START RequestId: {body['requestId']}") and log[-1].startswith("REPORT RequestId:")
    # Warm: the module's state is kept.
    assert invoke(lambda_client, name, {})[1]["calls"] == 2


def test_log_level_and_json_format(lambda_client, node) -> None:
    name = node({"index.mjs": ESM}, Environment={"Variables": {"AWS_LAMBDA_LOG_FORMAT": "JSON",
                                                               "AWS_LAMBDA_LOG_LEVEL": "WARN"}})
    resp, body = invoke(lambda_client, name, {}, LogType="Tail")
    records = [json.loads(line) for line in tail(resp) if line.startswith("{")]
    assert [(r["level"], r["message"]) for r in records] == [
        ("WARN", "two\nlines"), ("ERROR", "an error { n: 1 }")], tail(resp)
    assert all(r["requestId"] == body["requestId"] and r["timestamp"].endswith("Z") for r in records)


CALLBACKS = """\
exports.waits = (event, context, callback) => {
  setTimeout(() => console.log('timer fired'), 30);
  callback(null, { waited: true });
};
exports.nowait = function (event, context, callback) {
  context.callbackWaitsForEmptyEventLoop = false;
  setTimeout(() => console.log('late timer'), 30);
  callback(null, { waited: false });
};
exports.fails = (event, context, callback) => callback(new RangeError('out of range'));
exports.failsWithString = (event, context, callback) => callback('plain string');
exports.succeed = (event, context) => { context.succeed({ via: 'succeed' }); };
exports.never = (event, context, callback) => { setTimeout(() => {}, 10); };
exports.twice = (event, context, callback) => { callback(null, 'first'); callback(null, 'second'); };
"""


def test_callback_handlers(lambda_client, node, runtime: str) -> None:
    if runtime >= "nodejs24.x":
        pytest.skip("Node.js 24 takes async handlers only (test_callbacks_refused_from_nodejs24)")
    names = {h: node({"index.js": CALLBACKS}, handler=f"index.{h}") for h in
             ("waits", "nowait", "fails", "failsWithString", "succeed", "never", "twice")}
    # callbackWaitsForEmptyEventLoop (true): the result goes once the timer has run, its line in this log.
    resp, body = invoke(lambda_client, names["waits"], {}, LogType="Tail")
    assert body == {"waited": True}
    assert [m["msg"] for m in app_lines(resp)] == ["timer fired"], tail(resp)
    # false: the result goes at once; the timer runs later (in the next invocation, as in a frozen environment).
    resp, body = invoke(lambda_client, names["nowait"], {}, LogType="Tail")
    assert body == {"waited": False} and not [m for m in app_lines(resp) if m["msg"] == "late timer"], tail(resp)
    resp, err = invoke(lambda_client, names["fails"], {}, LogType="Tail")
    assert resp["FunctionError"] == "Unhandled"
    assert (err["errorType"], err["errorMessage"]) == ("RangeError", "out of range")
    assert err["trace"][0] == "RangeError: out of range" and any("/var/task/index.js" in f or "index.js" in f
                                                                  for f in err["trace"][1:]), err
    logged = [m["msg"] for m in app_lines(resp) if m["level"] == "ERROR"]
    assert logged and logged[0].startswith("Invoke Error \t{") and '"errorType":"RangeError"' in logged[0], tail(resp)
    resp, err = invoke(lambda_client, names["failsWithString"], {})
    assert err == {"errorType": "string", "errorMessage": "plain string", "trace": []}, err
    assert invoke(lambda_client, names["succeed"], {})[1] == {"via": "succeed"}
    # A callback handler that never calls back: null once the event loop is empty, as on AWS.
    resp, body = invoke(lambda_client, names["never"], {})
    assert "FunctionError" not in resp and body is None
    resp, body = invoke(lambda_client, names["twice"], {})
    assert body == "first"


def test_callbacks_refused_from_nodejs24(lambda_client, node, runtime: str) -> None:
    if runtime < "nodejs24.x":
        pytest.skip("callback handlers still run before Node.js 24")
    name = node({"index.js": CALLBACKS}, handler="index.waits", wait=False)
    cfg = wait_settled(lambda_client, name)
    assert cfg["State"] == "Active", cfg   # as on AWS: the init error is each invocation's answer
    resp, err = invoke(lambda_client, name, {})
    assert resp["FunctionError"] == "Unhandled" and err["errorType"] == "Runtime.CallbackHandlerDeprecated", err


def test_module_kinds_nested_handlers_and_node_modules(lambda_client, node) -> None:
    files = {
        # "type": "module": a .js file is an ES module.
        "esm/package.json": json.dumps({"type": "module"}),
        "esm/app.js": "export const handlers = { main: async () => ({ kind: 'esm-js', meta: typeof import.meta }) };",
        "cjs/app.cjs": "module.exports.handler = async () => ({ kind: 'cjs', dir: __dirname });",
        # A dependency as npm installs it, with its own package.json and main, required by the handler.
        "node_modules/left-pad-lite/package.json": json.dumps({"name": "left-pad-lite", "version": "1.0.0",
                                                               "main": "lib/main.js"}),
        "node_modules/left-pad-lite/lib/main.js": "module.exports = (s, n) => String(s).padStart(n, '0');",
        "index.js": "const pad = require('left-pad-lite');\n"
                    "exports.handler = async (event) => ({ padded: pad(event.n, 5), kind: 'cjs-js' });",
    }
    esm = node(files, handler="esm/app.handlers.main")
    assert invoke(lambda_client, esm, {})[1] == {"kind": "esm-js", "meta": "object"}
    cjs = node(files, handler="cjs/app.handler")
    body = invoke(lambda_client, cjs, {})[1]
    assert body["kind"] == "cjs" and body["dir"].endswith("/cjs"), body
    dep = node(files)
    assert invoke(lambda_client, dep, {"n": 42})[1] == {"padded": "00042", "kind": "cjs-js"}


def test_a_layer_module_through_node_path(lambda_client, node, runtime: str) -> None:
    """A layer's nodejs/node_modules is on NODE_PATH (/opt/nodejs/node_modules), as on AWS: require() finds it."""
    layer = lambda_client.publish_layer_version(
        LayerName=unique_name("greet"), CompatibleRuntimes=[runtime],
        Content={"ZipFile": make_zip({"nodejs/node_modules/greeter/index.js":
                                      "module.exports = (who) => `hello ${who} from a layer`;"})})
    try:
        name = node({"index.js": "const greet = require('greeter');\n"
                                 "exports.handler = async (event) => greet(event.who);"},
                    Layers=[layer["LayerVersionArn"]])
        assert invoke(lambda_client, name, {"who": "node"})[1] == "hello node from a layer"
    finally:
        lambda_client.delete_layer_version(LayerName=layer["LayerArn"].rsplit(":", 1)[-1],
                                           VersionNumber=layer["Version"])


@pytest.mark.parametrize(("files", "handler", "error_type", "message"), [
    ({"index.mjs": "export const x = 1;"}, "index.handler", "Runtime.HandlerNotFound",
     "index.handler is undefined or not exported"),
    ({"index.mjs": "export const handler = 1;"}, "index.handler", "Runtime.HandlerNotFound",
     "index.handler is not a function"),
    ({"other.js": "exports.handler = async () => 1;"}, "index.handler", "Runtime.ImportModuleError",
     "Cannot find module 'index'"),
    ({"index.js": "exports.handler = async () => {"}, "index.handler", "Runtime.UserCodeSyntaxError",
     "SyntaxError"),
    ({"index.js": "throw new Error('init failed here');"}, "index.handler", "Error", "init failed here"),
    ({"index.js": "exports.handler = 1;"}, "index", "Runtime.MalformedHandlerName", "Bad handler"),
])
def test_init_errors(lambda_client, node, files, handler, error_type, message) -> None:
    name = node(files, handler=handler, wait=False)
    cfg = wait_settled(lambda_client, name)
    assert cfg["State"] == "Active", cfg   # as on AWS: the init error is each invocation's answer
    resp, err = invoke(lambda_client, name, {})
    assert resp["FunctionError"] == "Unhandled" and err["errorType"] == error_type and message in err["errorMessage"]


CRASHES = """\
export const thrown = async () => { throw Object.assign(new Error('boom'), { code: 'E_BOOM' }); };
export const uncaught = async () => {
  setTimeout(() => { throw new TypeError('from a timer'); }, 1);
  await new Promise((resolve) => setTimeout(resolve, 1000));
  return 'not reached';
};
export const rejection = async () => {
  Promise.reject(new Error('nobody listens'));
  await new Promise((resolve) => setTimeout(resolve, 1000));
};
export const hang = async () => new Promise(() => setTimeout(() => {}, 1e9));
export const unsettled = async () => new Promise(() => {});
export const circular = async () => { const a = {}; a.a = a; return a; };
export const ok = async () => ({ ok: true, pid: process.pid, started: globalThis.started ??= Date.now() });
"""


def test_errors_crashes_and_timeouts(lambda_client, node) -> None:
    fn = {h: node({"index.mjs": CRASHES}, handler=f"index.{h}", Timeout=2) for h in
          ("thrown", "uncaught", "rejection", "hang", "unsettled", "circular")}
    resp, err = invoke(lambda_client, fn["thrown"], {}, LogType="Tail")
    assert resp["FunctionError"] == "Unhandled"
    assert (err["errorType"], err["errorMessage"], err["trace"][0]) == ("Error", "boom", "Error: boom"), err
    logged = next(m["msg"] for m in app_lines(resp) if m["level"] == "ERROR")
    assert json.loads(logged.split("\t", 1)[1])["code"] == "E_BOOM", logged
    # An exception thrown outside the handler's promise fails the invocation and ends the process (AWS: exit 129).
    resp, err = invoke(lambda_client, fn["uncaught"], {}, LogType="Tail")
    assert (err["errorType"], err["errorMessage"]) == ("TypeError", "from a timer"), err
    assert any("Uncaught Exception" in m["msg"] for m in app_lines(resp)), tail(resp)
    assert invoke(lambda_client, fn["uncaught"], {})[1]["errorType"] == "TypeError"  # a new environment
    resp, err = invoke(lambda_client, fn["rejection"], {})
    assert err["errorType"] == "Runtime.UnhandledPromiseRejection" and "nobody listens" in err["errorMessage"], err
    resp, err = invoke(lambda_client, fn["hang"], {})
    assert resp["FunctionError"] == "Unhandled" and err["errorType"] == "Sandbox.Timedout", err
    assert "Task timed out after 2.00 seconds" in err["errorMessage"]
    # A promise that can never settle, with nothing left to run: AWS's runtime reports it at once.
    resp, err = invoke(lambda_client, fn["unsettled"], {})
    assert err["errorType"] == "Runtime.NodeJsExit", err
    resp, err = invoke(lambda_client, fn["circular"], {})
    assert resp["FunctionError"] == "Unhandled" and "circular" in err["errorMessage"].lower(), err


def test_memory_limit(lambda_client, node, endpoint) -> None:
    if health(endpoint)["sandbox"] != "linux":
        pytest.skip("needs root: the linux sandbox's memory cgroup")
    code = ("const kept = [];\nexport const handler = async (event) => {\n"
            "  for (let i = 0; i < event.mb; i++) kept.push(Buffer.alloc(1 << 20, 1));\n"
            "  return { held: kept.length };\n};\n")
    name = node({"index.mjs": code}, MemorySize=128)
    resp, err = invoke(lambda_client, name, {"mb": 400})
    assert resp["FunctionError"] == "Unhandled" and err["errorType"] == "Runtime.OutOfMemory", err
    assert invoke(lambda_client, name, {"mb": 8})[1] == {"held": 8}  # a new environment


def test_the_cpu_share_after_init(lamina_server, node, endpoint) -> None:
    """Init runs with the host's CPUs; once READY an environment has its memory's share (Lambda's 1,769 MB a vCPU)."""
    if health(endpoint)["sandbox"] != "linux":
        pytest.skip("needs root: the linux sandbox's cgroups")
    name = node({"index.mjs": "export const handler = async () => 1;"}, MemorySize=256)  # Active: its spare is ready
    base = f"lamina/{lamina_server.pid}/{name}-*"
    quotas = [Path(f).read_text().split()[0] for f in glob.glob(f"/sys/fs/cgroup/cpu*/{base}/cpu.cfs_quota_us")
              + glob.glob(f"/sys/fs/cgroup/{base}/cpu.max")]
    assert quotas and set(quotas) == {str(round(256 / 1769 * 100_000))}, quotas


STREAMING = """\
export const handler = awslambda.streamifyResponse(async (event, responseStream, context) => {
  if (event.http || event.queryStringParameters) {
    responseStream = awslambda.HttpResponseStream.from(responseStream, {
      statusCode: 201, headers: { 'content-type': 'text/plain', 'x-streamed': 'yes' }, cookies: ['a=1'] });
  }
  for (let i = 1; i <= 3; i++) {
    responseStream.write(`Piece ${i}\\n`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  if (event.fail) throw new Error('failed part way');
  responseStream.end(`End of ${context.awsRequestId}\\n`);
});
"""


def test_streamed_response(lambda_client, node) -> None:
    name = node({"index.mjs": STREAMING})
    resp = lambda_client.invoke_with_response_stream(FunctionName=name, Payload=b"{}")
    events = list(resp["EventStream"])
    chunks = [e["PayloadChunk"]["Payload"] for e in events if "PayloadChunk" in e]
    rid = resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert b"".join(chunks) == f"Piece 1\nPiece 2\nPiece 3\nEnd of {rid}\n".encode()
    assert len(chunks) >= 2, chunks  # passed on piece by piece
    assert "ErrorCode" not in events[-1]["InvokeComplete"]
    resp = lambda_client.invoke_with_response_stream(FunctionName=name, Payload=json.dumps({"fail": True}))
    complete = list(resp["EventStream"])[-1]["InvokeComplete"]
    assert complete["ErrorCode"] == "Error" and "failed part way" in complete["ErrorDetails"], complete
    # A plain Invoke gets the whole response.
    resp = lambda_client.invoke(FunctionName=name, Payload=b"{}")
    assert "FunctionError" not in resp
    assert resp["Payload"].read().startswith(b"Piece 1\nPiece 2\nPiece 3\nEnd of ")


def test_streamed_function_url(lambda_client, node, endpoint) -> None:
    name = node({"index.mjs": STREAMING})
    url = lambda_client.create_function_url_config(FunctionName=name, AuthType="NONE",
                                                   InvokeMode="RESPONSE_STREAM")["FunctionUrl"]
    status, headers, body = FunctionUrl(endpoint, url).get("/path?x=1")
    assert status == 201, (status, headers, body)
    assert ("x-streamed", "yes") in headers and ("set-cookie", "a=1") in headers
    assert body.startswith(b"Piece 1\nPiece 2\nPiece 3\nEnd of "), body


def test_a_cold_start_takes_the_initialised_spare(lambda_client, node, endpoint) -> None:
    code = ("let calls = 0;\nconst initAt = Date.now();\n"
            "export const handler = async () => ({ calls: ++calls, initAt });\n")
    name = node({"index.mjs": code})
    first = invoke(lambda_client, name, {})[1]
    assert first["calls"] == 1
    # The spare that replaces the one just taken is started in the background; recycling stops the used one.
    deadline = time.monotonic() + 30
    while recycle(endpoint, name) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    resp, body = invoke(lambda_client, name, {}, LogType="Tail")
    assert body["calls"] == 1 and body["initAt"] != first["initAt"], body  # a new environment, initialised before
    report = tail(resp)[-1]
    assert "Init Duration:" in report, report


AWS_GETTING_STARTED = """\
export const handler = async (event, context) => {

  const length = event.length;
  const width = event.width;
  let area = calculateArea(length, width);
  console.log(`The area is ${area}`);

  console.log('CloudWatch log group: ', context.logGroupName);

  let data = {
    "area": area,
  };
    return JSON.stringify(data);

  function calculateArea(length, width) {
    return length * width;
  }
};
"""

AWS_STREAMING_EXAMPLE = """\
export const handler = awslambda.streamifyResponse(
  async (event, responseStream, context) => {
    const httpResponseMetadata = {
      statusCode: 200,
      headers: {
        "Content-Type": "text/html",
        "X-Custom-Header": "Example-Custom-Header"
      }
    };

    responseStream = awslambda.HttpResponseStream.from(responseStream, httpResponseMetadata);

    responseStream.write("<html>");
    responseStream.write("<p>First write!</p>");

    responseStream.write("<h1>Streaming h1</h1>");
    await new Promise(r => setTimeout(r, 10));
    responseStream.write("<h2>Streaming h2</h2>");
    await new Promise(r => setTimeout(r, 10));
    responseStream.write("<h3>Streaming h3</h3>");
    await new Promise(r => setTimeout(r, 10));

    responseStream.write("<p>DONE!</p>");
    responseStream.write("</html>");
    responseStream.end();
  }
);
"""

AWS_CALLBACK_EXAMPLE = """\
exports.handler = function(event, context, callback) {
  console.log("value1 = " + event.key1);
  console.log("value2 = " + event.key2);
  callback(null, "some success message");
};
"""


def test_the_examples_of_aws_documentation(lambda_client, node, endpoint, runtime: str) -> None:
    name = node({"index.mjs": AWS_GETTING_STARTED})
    resp, body = invoke(lambda_client, name, {"length": 6, "width": 7}, LogType="Tail")
    assert body == json.dumps({"area": 42}, separators=(",", ":")), body
    assert [m["msg"] for m in app_lines(resp)] == ["The area is 42", f"CloudWatch log group:  /aws/lambda/{name}"]
    name = node({"index.mjs": AWS_STREAMING_EXAMPLE})
    url = lambda_client.create_function_url_config(FunctionName=name, AuthType="NONE",
                                                   InvokeMode="RESPONSE_STREAM")["FunctionUrl"]
    status, headers, page = FunctionUrl(endpoint, url).get("/")
    assert status == 200 and ("content-type", "text/html") in headers, (status, headers)
    assert ("x-custom-header", "Example-Custom-Header") in headers
    assert page == (b"<html><p>First write!</p><h1>Streaming h1</h1><h2>Streaming h2</h2><h3>Streaming h3</h3>"
                    b"<p>DONE!</p></html>")
    if runtime < "nodejs24.x":
        name = node({"index.js": AWS_CALLBACK_EXAMPLE})
        resp, body = invoke(lambda_client, name, {"key1": "a", "key2": "b"}, LogType="Tail")
        assert body == "some success message"
        assert [m["msg"] for m in app_lines(resp) if m["level"] == "INFO"] == ["value1 = a", "value2 = b"]


def test_an_absent_node_version_is_refused_at_create(lambda_client, node_runtimes: dict) -> None:
    absent = [rt for rt in NODE_RUNTIMES if rt not in node_runtimes["available"]]
    if not absent:
        pytest.skip("every nodejsN.x Lamina knows has a Node.js on this machine")
    status, code, message = failure(lambda_client.create_function, FunctionName=unique_name("abs"),
                                    Runtime=absent[0], Role="arn:aws:iam::000000000000:role/lamina",
                                    Handler="index.handler", Code={"ZipFile": make_zip({"index.mjs": ESM})})
    assert (status, code) == (400, "InvalidParameterValueException") and "nvm install" in message, message
