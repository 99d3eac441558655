"""The events front end: the durable asynchronous-invocation queue and its delivery (spec/events.md §1)."""
