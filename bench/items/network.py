"""Item 6, network throughput: not built yet (issue 7).

iperf3 through a published port needs iperf3 inside the container, and the busybox test
image has none; the item is reported with that reason until issue 7 builds the network
benchmarks and an image that carries iperf3.
"""

from __future__ import annotations

from bench.figures import Figure

METHOD = "iperf3 host->container and container->host through a published port"


def measure() -> Figure:
    reason = (
        "not built (issue 7): the network backends are issue 7's, and the busybox image "
        "has no iperf3 to serve inside the container"
    )
    return Figure("6", "network throughput", METHOD, reason=reason)
