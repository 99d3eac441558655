"""The UDP gateway's Prometheus metrics: each listener's and destination's counters (metrics.py), read when
scraped."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from lamina.gateway.udp.service import UdpGateway


class UdpCollector(Collector):
    def __init__(self, gateway: UdpGateway) -> None:
        self.gateway = gateway

    def collect(self) -> Iterator[Metric]:
        lab = ["listener", "port"]
        c = {name: CounterMetricFamily(f"lamina_udp_{name}", help_, labels=lab) for name, help_ in (
            ("packets_received", "Datagrams received by the listener, allowed or not."),
            ("bytes_received", "Bytes received by the listener."),
            ("packets_sent", "Replies sent from the listener's address."),
            ("bytes_sent", "Bytes of replies sent."),
            ("packets_dropped_restricted", "Datagrams from senders outside the listener's client restrictions."),
            ("packets_dropped_send", "Replies the kernel refused or had no buffer for."),
        )}
        dlab = [*lab, "destination", "type"]
        dest = {name: CounterMetricFamily(f"lamina_udp_destination_{name}", help_, labels=dlab) for name, help_ in (
            ("packets", "Packets handed to the destination."),
            ("batches", "Batches sent to be invoked."),
            ("errors", "Function errors, timeouts and bad responses of the destination's batches."),
            ("throttles", "Batches refused with 429."),
            ("replies", "Replies matched to a packet and sent."),
            ("packets_dropped", "Packets dropped by the destination (overload, tenant id, format)."),
        )}
        state = GaugeMetricFamily("lamina_udp_listener_up", "1 while the listener is bound.", labels=lab)
        in_flight = GaugeMetricFamily("lamina_udp_destination_batches_in_flight", "Batches being invoked now.",
                                      labels=dlab)
        for listener in list(self.gateway.listeners.values()):
            labels = [listener.name or listener.id, str(listener.port)]
            m = listener.metrics
            for name, value in (("packets_received", m.packets_in), ("bytes_received", m.bytes_in),
                                ("packets_sent", m.packets_out), ("bytes_sent", m.bytes_out),
                                ("packets_dropped_restricted", m.dropped_restricted),
                                ("packets_dropped_send", m.dropped_send)):
                c[name].add_metric(labels, value)
            state.add_metric(labels, 1 if listener.state == "Listening" else 0)
            for i, d in enumerate(listener.destinations):
                dm = d.metrics
                dl = [*labels, d.config.name or str(i), d.config.type]
                for name, value in (("packets", dm.packets), ("batches", dm.batches), ("errors", dm.errors),
                                    ("throttles", dm.throttles), ("replies", dm.replies),
                                    ("packets_dropped", dm.dropped_overload + dm.dropped_tenant + dm.dropped_format)):
                    dest[name].add_metric(dl, value)
                in_flight.add_metric(dl, dm.in_flight)
        yield from c.values()
        yield from dest.values()
        yield state
        yield in_flight
