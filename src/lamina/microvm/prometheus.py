"""The MicroVM manager's Prometheus metrics, counted from its instances when scraped."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from lamina.microvm.manager import MicrovmManager

STATES = ("PENDING", "RUNNING", "SUSPENDING", "SUSPENDED", "TERMINATING", "TERMINATED")


class MicrovmCollector(Collector):
    def __init__(self, manager: MicrovmManager) -> None:
        self.manager = manager

    def collect(self) -> Iterator[Metric]:
        instances = GaugeMetricFamily("lamina_microvm_instances", "MicroVM instances per image by state "
                                      "(TERMINATED ones are kept for a while, as AWS lists them).",
                                      labels=["image", "state"])
        counts: dict[tuple[str, str], int] = {}
        for mvm in list(self.manager.instances.values()):
            key = (mvm.image_name, mvm.state)
            counts[key] = counts.get(key, 0) + 1
        for image in {image for image, _ in counts}:
            for state in STATES:
                instances.add_metric([image, state], counts.get((image, state), 0))
        yield instances
        yield GaugeMetricFamily("lamina_microvm_images", "MicroVM images.", value=len(self.manager.images.images))
