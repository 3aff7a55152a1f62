"""Item 1, start to serving: a one-container web TOML until its published port answers."""

from __future__ import annotations

from pathlib import Path

from bench.figures import Figure, Series
from bench.host import Bench, free_port
from bench.rounds import Subject, alternate
from bench.work import podman_remove, podman_web, sdpod_down, sdpod_up, web_toml

METHOD = (
    "wall time from the CLI's exec (cold process, imports included) until an HTTP GET of "
    "127.0.0.1:PORT gets a response, polled every 2 ms; busybox httpd, one published port; "
    "sdpod: `sdpod up web.toml` (slirp4netns); podman: `podman run -d -p 127.0.0.1:PORT:80 "
    "-v www:/www:ro` of the same image (loaded from the same OCI layout); teardown untimed"
)


def measure(bench: Bench, www: Path, podman_ready: str) -> Figure:
    figure = Figure("1", "start to serving", METHOD)
    ours = Series("sdpod up", "web, 1 port", "s")
    peer = Series("podman run -d", "web, 1 port", "s", reason=podman_ready)
    figure.compare(figure.add(ours), figure.add(peer))

    def sdpod_round(number: int) -> float:
        port = free_port()
        toml = web_toml(bench, f"serve-{number}", port)
        return bench.time([sdpod_up(toml, port)])[0]

    def sdpod_teardown(number: int) -> None:
        sdpod_down(bench, [bench.work / f"serve-{number}.toml"])

    def podman_round(number: int) -> float:
        return bench.time([podman_web(f"serve-{number}", free_port(), www)])[0]

    subjects = [
        Subject(ours, sdpod_round, sdpod_teardown),
        Subject(peer, podman_round, lambda n: podman_remove(bench, [f"serve-{n}"])),
    ]
    alternate(subjects, bench.rounds)
    return figure
