"""SQS-compatible queues' Prometheus metrics, read from the queues when scraped (nothing is counted per message for
them): each queue's visible, in-flight and delayed messages and the age of its oldest message (AWS's
ApproximateNumberOfMessages*, ApproximateAgeOfOldestMessage), and the service's message counters."""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from lamina.queues.service import QueueService

LABELS = ["queue", "account"]


class QueueCollector(Collector):
    def __init__(self, service: QueueService) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        visible = GaugeMetricFamily("lamina_sqs_messages_visible", "Messages available to receive "
                                    "(ApproximateNumberOfMessages).", labels=LABELS)
        inflight = GaugeMetricFamily("lamina_sqs_messages_in_flight", "Messages received and not yet deleted or "
                                     "visible again (ApproximateNumberOfMessagesNotVisible).", labels=LABELS)
        delayed = GaugeMetricFamily("lamina_sqs_messages_delayed", "Messages sent with a delay not yet over "
                                    "(ApproximateNumberOfMessagesDelayed).", labels=LABELS)
        age = GaugeMetricFamily("lamina_sqs_oldest_message_age_seconds", "Age of the queue's oldest message, 0 when "
                                "empty (ApproximateAgeOfOldestMessage).", labels=LABELS)
        now = time.time()
        # (The scrape runs on the server's event loop, where the queues live: reading them here is safe.)
        for (account, name), q in list(self.service.queues.items()):
            q.promote(now)   # what became visible since the last timer tick counts as visible
            labels = [name, account]
            visible.add_metric(labels, q.depth)
            inflight.add_metric(labels, q.n_inflight)
            delayed.add_metric(labels, q.n_delayed)
            oldest = q.oldest_sent()
            age.add_metric(labels, max(0.0, now - oldest) if oldest is not None else 0.0)
        yield from (visible, inflight, delayed, age)
        s = self.service
        yield CounterMetricFamily("lamina_sqs_messages_sent", "Messages sent to any queue.", value=s.sent)
        yield CounterMetricFamily("lamina_sqs_messages_received", "Messages handed out by ReceiveMessage and event "
                                  "source mappings (a message received again counts again).", value=s.received)
        yield CounterMetricFamily("lamina_sqs_messages_deleted", "Messages deleted after processing.",
                                  value=s.deleted_messages)
        yield CounterMetricFamily("lamina_sqs_messages_moved_to_dead_letter", "Messages moved to a dead-letter "
                                  "queue after maxReceiveCount receives.", value=s.moved_to_dlq)
