"""The UDP gateway: listeners, BREX, formatters, batching destinations and sinks."""
