"""Lambda events and HTTP, mapped both ways: the one place the front door (gateway/http) and dispatch share.

- event.py: an HTTP request as an API Gateway payload 2.0 event (what a function URL sends a function);
- response.py: a function's result (or response stream) as an HTTP response (payload 2.0's response rules);
- adapter.py: the other way round, as the Lambda Web Adapter does it for an HTTP-app function invoked through the
  Invoke API: an event as an HTTP request to the app, and the app's response as the event source's result;
- headers.py: what neither direction passes through (hop-by-hop headers, the ones Lamina sets), and the check of a
  header block the Python runtime mapped itself.

Pure functions, no I/O. Imports nothing of Lamina.
"""
