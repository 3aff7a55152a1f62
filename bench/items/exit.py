"""Item 2, start to exit: a container whose command is `true`.

`sdpod run --rm` does not exist yet (issue 5), so sdpod is measured on what exists:
`sdpod up` of a container with `command = ["true"]`, `restart = "no"`, until the unit's
cgroup is empty. That includes the unit's start (D-Bus, the launcher, the bundle) which
a bare runtime does not do; item 7 times `sdpod runtime run` beside crun and runc on
one bundle.
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
    "wall time from the CLI's exec until the container has exited; sdpod: `sdpod up` of "
    'command=["true"], restart="no", until the unit\'s cgroup.events says unpopulated '
    "(polled every 2 ms; item 7 has `sdpod runtime run`); podman: `podman run "
    "--rm IMAGE true`, default rootless network (slirp4netns) and --network none; crun and "
    "runc: `run` of a bundle made by `umoci unpack --rootless` from the same layout, args "
    '["true"], as the user inside the sandbox, whose /sys/fs/cgroup is cgroup v2 only '
    "(so crun 1.8.1 accepts it without the v1 mount trick)"
)


def measure(bench: Bench, layout: Path, podman_ready: str) -> Figure:
    figure = Figure("2", "start to exit (`true`)", METHOD)
    try:
        check_cgroup_glob(bench)
    except (BenchError, SandboxCommandError) as e:
        figure.reason = f"failed to find a running unit's cgroup: {e}"
        return figure
    ours = figure.add(Series("sdpod up (until exit)", "true", "s"))
    subjects = [Subject(figure.series[ours], *sdpod_subject(bench))]
    bundle_reason = make_bundle(bench, layout)
    for label, extra in (("podman run --rm", []), ("podman run --rm --network none", ["none"])):
        series = Series(label, "true", "s", reason=podman_ready)
        figure.compare(ours, figure.add(series))
        subjects.append(Subject(series, podman_true(bench, extra), nothing))
    for runtime in ("crun", "runc"):
        series = Series(f"{runtime} run", "true", "s", reason=require(runtime) or bundle_reason)
        figure.compare(ours, figure.add(series))
        subjects.append(Subject(series, runtime_true(bench, runtime), nothing))
    alternate(subjects, bench.rounds)
    return figure


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


def sdpod_subject(bench: Bench) -> tuple[Callable[[int], float], Callable[[int], None]]:
    def measure_round(number: int) -> float:
        name = f"exit-{number}"
        toml = true_toml(bench, name)
        return bench.time([sdpod_up(toml, gone=unit_cgroup_events(bench, name))])[0]

    def teardown(number: int) -> None:
        sdpod_down(bench, [bench.work / f"exit-{number}.toml"])

    return measure_round, teardown


def podman_true(bench: Bench, network: list[str]) -> Callable[[int], float]:
    options = ["--network", network[0]] if network else []

    def measure_round(number: int) -> float:
        argv = ["podman", "run", "--rm", *options, PODMAN_IMAGE, "true"]
        return bench.time([{"argv": argv}])[0]

    return measure_round


def runtime_true(bench: Bench, runtime: str) -> Callable[[int], float]:
    def measure_round(number: int) -> float:
        state = bench.work / f"{runtime}-state"
        argv = [runtime, "--root", str(state), "run", "--bundle", str(bench.work / "bundle")]
        return bench.time([{"argv": [*argv, f"bench-{runtime}-{number}"]}])[0]

    return measure_round


def make_bundle(bench: Bench, layout: Path) -> str:
    """WORK/bundle from the busybox layout, running `true`; "" or why it failed."""
    if require("umoci"):
        return "missing: umoci is not installed (it makes the runtimes' bundle)"
    bundle = bench.work / "bundle"
    done = bench.host.run_as_user(
        ["umoci", "unpack", "--rootless", "--image", f"{layout}:latest", str(bundle)],
        check=False,
    )
    if done.returncode != 0:
        return f"failed to make the bundle with umoci: {done.stderr.strip()}"
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["args"] = ["true"]
    config["process"]["terminal"] = False
    (bundle / "config.json").write_text(json.dumps(config, indent=1))
    return ""
