"""Item 7, the bare runtimes: one bundle running `true`, created, started and waited for by
`sdpod runtime run`, `crun run` and `runc run`.

The bundle is `sdpod runtime spec --rootless`'s configuration over the busybox image's
root file system (unpacked by umoci, outside the clock), the same directory for all
three. Unlike item 2, no unit, network or image step is involved: this is sdpod's OCI
runtime beside the peers it is compared with (issue 5).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from sandbox import SandboxCommandError

from bench.figures import Figure, Series
from bench.host import Bench, BenchError
from bench.rounds import Subject, alternate, nothing
from bench.work import require

METHOD = (
    "wall time of `RUNTIME --root STATE run --bundle BUNDLE ID` from exec to exit, the "
    "container running `true`, as the user inside the sandbox (rootless, a single-id "
    "mapping, no network namespace); the bundle is `sdpod runtime spec --rootless` with "
    'args ["true"] and terminal false over a root made by `umoci unpack --rootless`, the '
    "same for all three; sdpod is `sdpod runtime run` through the sdpod CLI"
)
RUNTIMES = {
    "sdpod runtime run": ["sdpod", "runtime"],
    "crun run": ["crun"],
    "runc run": ["runc"],
}


def measure(bench: Bench, layout: Path) -> Figure:
    figure = Figure("7", "runtime create-start-exit (`true`, one bundle)", METHOD)
    try:
        bundle = make_bundle(bench, layout)
    except (BenchError, SandboxCommandError) as e:
        figure.reason = f"failed to make the bundle: {e}"
        return figure
    subjects = []
    ours = -1
    for label, prefix in RUNTIMES.items():
        series = Series(label, "true", "s", reason=require(prefix[0]))
        index = figure.add(series)
        if ours < 0:
            ours = index
        else:
            figure.compare(ours, index)
        subjects.append(Subject(series, timer(bench, prefix, bundle), nothing))
    alternate(subjects, bench.rounds)
    return figure


def timer(bench: Bench, prefix: list[str], bundle: Path) -> Callable[[int], float]:
    state = bench.work / f"runtime-state-{prefix[0]}"

    def measure_round(number: int) -> float:
        argv = [*prefix, "--root", str(state), "run", "--bundle", str(bundle)]
        return bench.time([{"argv": [*argv, f"bench7-{number}"]}])[0]

    return measure_round


def make_bundle(bench: Bench, layout: Path) -> Path:
    """WORK/runtime-bundle: sdpod's rootless default configuration running `true`."""
    if require("umoci"):
        raise BenchError("umoci is not installed (it unpacks the bundle's root)")
    bundle = bench.work / "runtime-bundle"
    unpacked = bench.work / "runtime-unpacked"
    bench.run(["umoci", "unpack", "--rootless", "--image", f"{layout}:latest", str(unpacked)])
    bench.run(["mkdir", "-p", str(bundle)])
    bench.run(["sdpod", "runtime", "spec", "--rootless", "--bundle", str(bundle)])
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["args"] = ["true"]
    config["process"]["terminal"] = False
    config["root"]["path"] = str(unpacked / "rootfs")
    (bundle / "config.json").write_text(json.dumps(config, indent=1))
    return bundle
