"""Item 2, start to exit: a container whose command is `true`.

sdpod is measured two ways: `sdpod run --rm IMAGE true` (the manager: image, bundle,
transient scope, launcher, removal) beside `podman run --rm`, and `sdpod runtime run` of
one bundle (the OCI runtime alone) beside `crun run` and `runc run` of the same bundle.
The bundle is `sdpod runtime spec --rootless`'s configuration over the busybox image's
root file system (unpacked by umoci, outside the clock). `sdpod up` of a `true`
container, until its unit's cgroup empties, is an extra row beside podman.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from sandbox import SandboxCommandError

from bench.figures import Figure, Series
from bench.host import SYSTEM_PYTHON, Bench, BenchError
from bench.rounds import Subject, alternate, nothing
from bench.work import (
    PODMAN_IMAGE,
    require,
    sdpod_down,
    sdpod_up,
    true_toml,
    unit_cgroup_events,
    write_toml,
)

SLEEPER = (
    '[container]\nname = "exit-check"\nimage = "oci:image:latest"\n'
    'command = ["sleep", "60"]\nrestart = "no"\n'
)
GLOB_CHECK = (
    "import glob, sys\nfor p in glob.glob(sys.argv[1], recursive=True): print(open(p).read())\n"
)

METHOD = (
    "wall time from the CLI's exec until the container has exited, as the user inside the "
    "sandbox; `sdpod run --rm oci:LAYOUT:latest true` and `podman run --rm IMAGE true` "
    "(its default rootless network, slirp4netns, and --network none) until the CLI exits; "
    "`RUNTIME --root STATE run --bundle BUNDLE ID` for sdpod runtime, crun and runc on one "
    'bundle: `sdpod runtime spec --rootless` with args ["true"], terminal false, over a '
    "root made by `umoci unpack --rootless` (single-id mapping, no network namespace); "
    'extra: `sdpod up` of command=["true"], restart="no", until the unit\'s cgroup.events '
    "says unpopulated (polled every 2 ms)"
)
RUNTIMES = {"crun run": ["crun"], "runc run": ["runc"]}


def measure(bench: Bench, layout: Path, podman_ready: str) -> Figure:
    figure = Figure("2", "start to exit (`true`)", METHOD)
    subjects = []

    run = figure.add(Series("sdpod run --rm", "true", "s"))
    subjects.append(Subject(figure.series[run], sdpod_run(bench, layout), nothing))
    for label, extra in (("podman run --rm", []), ("podman run --rm --network none", ["none"])):
        series = Series(label, "true", "s", reason=podman_ready)
        figure.compare(run, figure.add(series))
        subjects.append(Subject(series, podman_true(bench, extra), nothing))

    bundle_reason = ""
    try:
        bundle = make_bundle(bench, layout)
    except (BenchError, SandboxCommandError) as e:
        bundle, bundle_reason = bench.work / "runtime-bundle", f"failed to make the bundle: {e}"
    ours = figure.add(Series("sdpod runtime run", "true", "s", reason=bundle_reason))
    subjects.append(
        Subject(figure.series[ours], timer(bench, ["sdpod", "runtime"], bundle), nothing)
    )
    for label, prefix in RUNTIMES.items():
        series = Series(label, "true", "s", reason=require(prefix[0]) or bundle_reason)
        figure.compare(ours, figure.add(series))
        subjects.append(Subject(series, timer(bench, prefix, bundle), nothing))

    up = figure.add(Series("sdpod up (until the unit empties)", "true", "s"))
    figure.compare(up, 1)
    try:
        check_cgroup_glob(bench)
        subjects.append(Subject(figure.series[up], *sdpod_up_subject(bench)))
    except (BenchError, SandboxCommandError) as e:
        figure.series[up].reason = f"failed to find a running unit's cgroup: {e}"
    alternate(subjects, bench.rounds)
    return figure


def sdpod_run(bench: Bench, layout: Path) -> Callable[[int], float]:
    def measure_round(number: int) -> float:
        argv = ["sdpod", "run", "--rm", "--name", f"exit-run-{number}"]
        return bench.time([{"argv": [*argv, f"oci:{layout}:latest", "true"]}])[0]

    return measure_round


def podman_true(bench: Bench, network: list[str]) -> Callable[[int], float]:
    options = ["--network", network[0]] if network else []

    def measure_round(number: int) -> float:
        argv = ["podman", "run", "--rm", *options, PODMAN_IMAGE, "true"]
        return bench.time([{"argv": argv}])[0]

    return measure_round


def timer(bench: Bench, prefix: list[str], bundle: Path) -> Callable[[int], float]:
    state = bench.work / f"runtime-state-{prefix[0]}"

    def measure_round(number: int) -> float:
        argv = [*prefix, "--root", str(state), "run", "--bundle", str(bundle)]
        return bench.time([{"argv": [*argv, f"bench2-{number}"]}])[0]

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


def check_cgroup_glob(bench: Bench) -> None:
    """Prove that the glob the probe polls finds a running unit's cgroup.

    Without this, a glob that matched nothing would read as "exited" at once, and the
    figure would be `sdpod up` alone.
    """
    toml = write_toml(bench, "exit-check", SLEEPER)
    try:
        bench.run(["sdpod", "up", str(toml)])
        pattern = unit_cgroup_events(bench, "exit-check")
        found = bench.run([SYSTEM_PYTHON, "-c", GLOB_CHECK, pattern], check=False)
        if "populated 1" not in found:
            raise BenchError(f"{pattern} matches no populated cgroup of a running unit")
    finally:
        sdpod_down(bench, [toml])


def sdpod_up_subject(bench: Bench) -> tuple[Callable[[int], float], Callable[[int], None]]:
    def measure_round(number: int) -> float:
        name = f"exit-{number}"
        toml = true_toml(bench, name)
        return bench.time([sdpod_up(toml, gone=unit_cgroup_events(bench, name))])[0]

    def teardown(number: int) -> None:
        sdpod_down(bench, [bench.work / f"exit-{number}.toml"])

    return measure_round, teardown
