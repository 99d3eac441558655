"""A stateful MicroVM app (README, "MicroVMs"): an HTTP server on 8080 that counts its requests, and a hooks
server on 9000 that learns the MicroVM's id and run payload from the /run hook.

Hooks are opt-in: build the image with `--hook run` (and suspend, resume, terminate, ready, validate as
wanted). Lamina then POSTs JSON to http://127.0.0.1:9000/aws/lambda-microvms/runtime/v1/<hook> inside the
MicroVM (`--hooks-port` changes 9000); a hook answers 200 or the MicroVM is terminated with the reason.
Standard library only.
"""

import http.server
import json
import threading

HOOK_PREFIX = "/aws/lambda-microvms/runtime/v1/"
# What the app knows about itself: the /run hook's payload, the hooks called so far, requests served.
run_hook: dict = {}
hooks_called: list = []
requests = 0


class Hooks(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not self.path.startswith(HOOK_PREFIX):
            self.send_response(404)
            self.end_headers()
            return
        hook = self.path[len(HOOK_PREFIX):]
        hooks_called.append(hook)
        if hook == "run":  # {"microvmId": ..., "runHookPayload": ...}
            run_hook.update(json.loads(body or b"{}"))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class App(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global requests
        requests += 1
        body = json.dumps({"requests": requests, "hooks": hooks_called, **run_hook}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


threading.Thread(target=http.server.ThreadingHTTPServer(("0.0.0.0", 9000), Hooks).serve_forever, daemon=True).start()
print("listening on 8080, hooks on 9000", flush=True)
http.server.ThreadingHTTPServer(("0.0.0.0", 8080), App).serve_forever()
