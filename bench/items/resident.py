"""Item 3, resident cost: N web containers started in a row, then the PSS they keep.

Per container: the PSS (MiB) of every process that exists only because of the manager,
divided by N, and the wall time to start all N (each until its port answers) over N.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bench.figures import Figure, Series
from bench.host import Bench, free_port
from bench.pss import Process, is_other, is_sdpod, manager_pss
from bench.rounds import Subject, alternate
from bench.work import podman_remove, podman_web, sdpod_down, sdpod_up, web_toml

METHOD = (
    "N web containers (busybox httpd, one published port each) started one after another, "
    "each until its port answers; wall = total / N; PSS = sum of Pss from "
    "/proc/PID/smaps_rollup of the user's processes that exist only because of the manager, "
    "over N, payload (httpd) excluded; sdpod: everything in the sdpod-*.service cgroups "
    "(tini, slirp4netns and its shell, the cat log relay); podman: everything else of the "
    "user's but its systemd, (sd-pam) and dbus-daemon (conmon, slirp4netns, rootlessport, "
    "the pause process)"
)

Kinds = dict[str, list[str]]


def measure(bench: Bench, www: Path, podman_ready: str) -> tuple[Figure, Kinds]:
    figure = Figure("3", "resident cost and wall time per container", METHOD)
    kinds: Kinds = {}
    for n in bench.sizes:
        ours_pss = figure.add(Series("sdpod up", f"N={n} PSS/container", "MiB"))
        peer_pss = figure.add(Series("podman run -d", f"N={n} PSS/container", "MiB"))
        ours_wall = figure.add(Series("sdpod up", f"N={n} wall/container", "s"))
        peer_wall = figure.add(Series("podman run -d", f"N={n} wall/container", "s"))
        figure.series[peer_pss].reason = figure.series[peer_wall].reason = podman_ready
        figure.compare(ours_pss, peer_pss)
        figure.compare(ours_wall, peer_wall)
        pss = {"sdpod": figure.series[ours_pss], "podman": figure.series[peer_pss]}
        walls = {"sdpod": figure.series[ours_wall], "podman": figure.series[peer_wall]}
        subjects = [
            Subject(walls["sdpod"], *sdpod_many(bench, n, pss["sdpod"], kinds)),
            Subject(walls["podman"], *podman_many(bench, n, www, pss["podman"], kinds)),
        ]
        alternate(subjects, min(bench.rounds, 3) if n < 50 else 1)
        for name in ("sdpod", "podman"):
            pss[name].reason = pss[name].reason or walls[name].reason
    for subject, names in sorted(kinds.items()):
        figure.notes.append(f"processes counted for {subject}: {', '.join(names)}")
    return figure, kinds


def owned_by(bench: Bench) -> Callable[[int], bool]:
    """The user's own uid or one of its subordinate ids (a container's root, say)."""
    ranges = []
    for line in Path("/etc/subuid").read_text().splitlines():
        fields = line.split(":")
        if len(fields) == 3 and fields[0] == bench.user:
            ranges.append(range(int(fields[1]), int(fields[1]) + int(fields[2])))
    return lambda uid: uid == bench.uid or any(uid in r for r in ranges)


def record(
    bench: Bench, series: Series, keep: Callable[[Process], bool], n: int, kinds: Kinds
) -> None:
    total, names = manager_pss(bench.host.cgroup, owned_by(bench), keep)
    series.samples.append(total / n)
    kinds[series.subject] = names


def sdpod_many(
    bench: Bench, n: int, pss: Series, kinds: Kinds
) -> tuple[Callable[[int], float], Callable[[int], None]]:
    names = [f"many-{i}" for i in range(n)]

    def measure_round(number: int) -> float:
        steps = []
        for name in names:
            port = free_port()
            steps.append(sdpod_up(web_toml(bench, name, port), port))
        total = sum(bench.time(steps, timeout=60 + 5 * n))
        record(bench, pss, is_sdpod, n, kinds)
        return total / n

    def teardown(number: int) -> None:
        sdpod_down(bench, [bench.work / f"{name}.toml" for name in names])

    return measure_round, teardown


def podman_many(
    bench: Bench, n: int, www: Path, pss: Series, kinds: Kinds
) -> tuple[Callable[[int], float], Callable[[int], None]]:
    names = [f"many-{i}" for i in range(n)]

    def measure_round(number: int) -> float:
        steps = [podman_web(name, free_port(), www) for name in names]
        total = sum(bench.time(steps, timeout=60 + 5 * n))
        record(bench, pss, is_other, n, kinds)
        return total / n

    return measure_round, lambda number: podman_remove(bench, names)
