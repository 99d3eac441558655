"""Lamina's SQS-compatible queues: the message model (SQS semantics over the durable store).

Below the front ends: the SQS API (api/sqs*) and the event source mappings' pollers (events/esm.py) both use
it, as do async-invocation destinations and dead-letter queues (events/destinations.py).
"""
