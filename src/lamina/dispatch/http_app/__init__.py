"""HTTP-app functions: a web server in the environment, many requests at a time (lambda-dispatch / LWA).

A function is an HTTP app when its environment has `AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap` (how zip
users turn on the Lambda Web Adapter layer) or any `AWS_LWA_*` variable. Its environment runs the
web server command instead of a handler runtime: the zip's `bootstrap` for `provided.*`, and for a
Python runtime the script the handler names (`run.sh`, run as `$LAMBDA_TASK_ROOT/$_HANDLER`, as the
adapter layer's wrapper does). It is configured with the adapter's own variables (spec/dispatch.md
§2.6): AWS_LWA_PORT (else PORT, else 8080), AWS_LWA_READINESS_CHECK_PORT / _PATH / _PROTOCOL /
_HEALTHY_STATUS, AWS_LWA_ASYNC_INIT, AWS_LWA_REMOVE_BASE_PATH, AWS_LWA_INVOKE_MODE,
AWS_LWA_PASS_THROUGH_PATH, AWS_LWA_AUTHORIZATION_SOURCE, AWS_LWA_ERROR_STATUS_CODES,
AWS_LWA_ENABLE_COMPRESSION (gzip, function URLs in buffered mode: gateway/http/http_apps.py); and
`AWS_LAMBDA_MAX_CONCURRENCY` (default 10) requests at once per environment.

Lifecycle: the environment polls the readiness check every 10 ms within the init budget and is
ready (the function goes Active) once the app is healthy. Requests wait in the function's queue
until any ready environment has a free slot: `FunctionPool.submit` of a `SlotRequest` resolves to a
`Lease` on one environment, which the function-URL gateway uses to proxy the request as raw HTTP/1.1
over the environment's keep-alive connections (gateway/http/http_apps.py) and releases when the response
ends. Invocations through the Invoke API are converted the adapter's way (an API Gateway / function
URL event becomes an HTTP request, the response comes back in the event's response shape; any other
event is POSTed to the pass-through path: lamina.httpevent.adapter).

Reaching the app: with the linux backend it listens on 127.0.0.1:PORT in the sandbox's own network
namespace, and the server makes its sockets there (Sandbox.connect_tcp, sandbox/netns.py). The
process backend has no namespace, so each environment gets a free port of its own through
AWS_LWA_PORT and PORT (an app must read one of them there).

config.py: the adapter's variables read into an HttpAppConfig; client.py: HTTP/1.1 to the app; environment.py: the
environment, its readiness check, its slots (Lease) and the Invoke API's conversion; pool.py: a pool that hands out
slots.
"""
