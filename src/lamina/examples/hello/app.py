"""The example function `make run` deploys: greets whoever the event names (a function URL's `?name=` too)."""

import os

# Module-level code is init: it runs once per environment, not per invocation.
GREETING = os.environ.get("GREETING", "Hello")


def handler(event, context):
    event = event if isinstance(event, dict) else {}
    # A direct invoke's {"name": ...}, or a function URL's query string (API Gateway payload 2.0).
    name = event.get("name") or (event.get("queryStringParameters") or {}).get("name") or "world"
    print(f"greeting {name}")
    return {
        "message": f"{GREETING}, {name}!",
        "requestId": context.aws_request_id,
        "remainingMs": context.get_remaining_time_in_millis(),
    }
