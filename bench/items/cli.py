"""Item 4, CLI latency: `--help`, and `ps` with containers running."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bench.figures import Figure, Series
from bench.host import Bench, BenchError, free_port
from bench.rounds import Subject, alternate, nothing
from bench.work import podman_remove, podman_web, sdpod_down, sdpod_up, web_toml

METHOD = (
    "wall time of one cold CLI process, exec to exit, as the user inside the sandbox; "
    "`ps` with K web containers of its own manager running (K = 10, or the largest size "
    "asked for if smaller), started before and removed after, untimed"
)


def measure(bench: Bench, www: Path, podman_ready: str) -> Figure:
    k = min(10, max(bench.sizes))
    figure = Figure("4", "CLI latency", METHOD)
    cases = [
        (["sdpod", "--help"], ["podman", "--help"], "--help"),
        (["sdpod", "ps"], ["podman", "ps"], f"ps, {k} running"),
    ]
    subjects = []
    for ours_argv, peer_argv, work in cases:
        ours = Series(" ".join(ours_argv), work, "s")
        peer = Series(" ".join(peer_argv), work, "s", reason=podman_ready)
        figure.compare(figure.add(ours), figure.add(peer))
        subjects += [Subject(ours, timer(bench, ours_argv), nothing)]
        subjects += [Subject(peer, timer(bench, peer_argv), nothing)]

    tomls, names = [], [f"cli-{i}" for i in range(k)]
    try:
        for name in names:
            port = free_port()
            tomls.append(web_toml(bench, name, port))
            bench.time([sdpod_up(tomls[-1], port)])
            if not podman_ready:
                bench.time([podman_web(name, free_port(), www)])
        alternate(subjects, bench.rounds)
    except BenchError as e:
        figure.reason = f"failed to start the containers ps lists: {e}"
    finally:
        sdpod_down(bench, tomls)
        if not podman_ready:
            podman_remove(bench, names)
    return figure


def timer(bench: Bench, argv: list[str]) -> Callable[[int], float]:
    return lambda number: bench.time([{"argv": argv}])[0]
