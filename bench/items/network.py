"""Item 6, network: throughput through a published port each way, and the memory the
network helper keeps per container, for each of sdpod's backends beside loopback and
podman.

One container per subject serves two ports with busybox `nc -ll -e dd`: one discards
what it reads (host to container), one writes a fixed number of zeros and closes
(container to host). bench/transfer.py, run in the sandbox as the user, times one
connection each way per round. "loopback" is the same two servers on the host's
127.0.0.1, no container between. Nothing leaves the loopback.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.figures import Figure, Series
from bench.host import PROBE, SYSTEM_PYTHON, Bench, BenchError, free_port
from bench.pss import Process, processes, pss_kib
from bench.rounds import Subject, alternate
from bench.work import PODMAN_IMAGE, podman_remove, sdpod_down, write_toml

METHOD = (
    "one TCP connection per direction and round through 127.0.0.1:PORT, timed from "
    "connect until the far side closed: host->container sends N MiB to `nc -e dd "
    "of=/dev/null` in the container, container->host reads N MiB that `nc -e dd "
    "if=/dev/zero` writes; Gbit/s = bytes / time; loopback: the same servers on the host; "
    'sdpod: `network = "slirp4netns"` and `"pasta"` (pasta splices loopback '
    "connections); podman run -p (its default: slirp4netns, rootlessport); memory: PSS "
    "and RSS of the helper processes of the one container (sdpod: the unit's supervisor "
    "leaf but the log relay `cat`, i.e. the helper and its shell; podman: slirp4netns and "
    "rootlessport), read after the transfers"
)
TRANSFER = Path(PROBE).with_name("transfer.py")
SINK_PORT, SOURCE_PORT = 5001, 5002
# A transfer that takes longer stops there and counts what moved: a stall is a figure.
LIMIT_SECONDS = 20.0
WARM_UP_TRIES = 50


@dataclass
class Measured:
    """The series of one subject: throughput each way, and its helper's memory."""

    upload: Series
    download: Series
    pss: Series | None = None
    rss: Series | None = None
    stalls: set[str] = field(default_factory=set)


def servers(size: int, busybox: str = "busybox") -> str:
    """A shell script that serves the sink and the source, and waits."""
    count = size // 65536
    sink = f"{busybox} nc -ll -p {{sink}} -e {busybox} dd of=/dev/null bs=65536"
    source = f"{busybox} nc -ll -p {{source}} -e {busybox} dd if=/dev/zero bs=65536 count={count}"
    return f"{sink} 2>/dev/null & {source} 2>/dev/null & wait"


def measure(bench: Bench, podman_ready: str) -> Figure:
    figure = Figure("6", "network throughput and helper memory", METHOD)
    size = (64 if bench.quick else 256) << 20
    subjects = {
        "loopback": _measured(figure, "loopback", memory=False),
        "slirp4netns": _measured(figure, "sdpod slirp4netns"),
        "pasta": _measured(figure, "sdpod pasta"),
        "podman": _measured(figure, "podman run -p", reason=podman_ready),
    }
    for direction in ("upload", "download"):
        base = getattr(subjects["loopback"], direction)
        for name in ("slirp4netns", "pasta"):
            ours = getattr(subjects[name], direction)
            figure.compare(figure.series.index(ours), figure.series.index(base))
            peer = getattr(subjects["podman"], direction)
            figure.compare(figure.series.index(ours), figure.series.index(peer))
    for name in ("slirp4netns", "pasta"):
        ours_pss, peer_pss = subjects[name].pss, subjects["podman"].pss
        assert ours_pss is not None and peer_pss is not None
        figure.compare(figure.series.index(ours_pss), figure.series.index(peer_pss))

    runs = [
        Subject(subjects["loopback"].upload, *_loopback(bench, size, subjects["loopback"])),
        Subject(subjects["slirp4netns"].upload, *_sdpod(bench, size, "slirp4netns", subjects)),
        Subject(subjects["pasta"].upload, *_sdpod(bench, size, "pasta", subjects)),
        Subject(subjects["podman"].upload, *_podman(bench, size, subjects["podman"])),
    ]
    alternate(runs, bench.rounds)
    for measured in subjects.values():
        for series in (measured.download, measured.pss, measured.rss):
            if series is not None and not series.samples:
                series.reason = series.reason or measured.upload.reason
    figure.notes.append(f"N = {size >> 20} MiB per transfer, at most {LIMIT_SECONDS:.0f} s")
    for measured in subjects.values():
        figure.notes += [
            f"{stalled}: cut off at {LIMIT_SECONDS:.0f} s" for stalled in sorted(measured.stalls)
        ]
    return figure


def _measured(figure: Figure, subject: str, memory: bool = True, reason: str = "") -> Measured:
    def series(work: str, unit: str) -> Series:
        made = Series(subject, work, unit, reason=reason)
        figure.add(made)
        return made

    measured = Measured(series("host->container", "Gbit/s"), series("container->host", "Gbit/s"))
    if memory:
        measured.pss = series("helper PSS", "MiB")
        measured.rss = series("helper RSS", "MiB")
    return measured


def _transfer(bench: Bench, direction: str, port: int, size: int) -> tuple[float, bool]:
    """Gbit/s of one transfer, and whether it completed (a stalled one counts what moved)."""
    argv = [SYSTEM_PYTHON, str(TRANSFER), direction, str(port), str(size), str(LIMIT_SECONDS)]
    output = bench.run(argv, check=False, timeout=LIMIT_SECONDS + 30)
    try:
        result = json.loads(output)
    except json.JSONDecodeError as e:
        raise BenchError(f"failed to {direction} through port {port}: {output!r}") from e
    if "error" in result:
        raise BenchError(f"failed to {direction}: {result['error']}")
    if not result["bytes"]:
        raise BenchError(f"failed to {direction} through port {port}: nothing moved")
    gbits = float(result["bytes"]) * 8 / float(result["seconds"]) / 1e9
    return gbits, bool(result["complete"])


def _both_ways(bench: Bench, ports: tuple[int, int], size: int, measured: Measured) -> float:
    """Once a small upload gets through whole, time one transfer each way; record the
    download, return the upload. A transfer cut off at the limit is noted."""
    for _ in range(WARM_UP_TRIES):
        if _transfer(bench, "upload", ports[0], 1 << 20)[1]:
            break
    else:
        raise BenchError(f"failed to upload 1 MiB through port {ports[0]} whole")
    upload, whole_up = _transfer(bench, "upload", ports[0], size)
    download, whole_down = _transfer(bench, "download", ports[1], size)
    measured.download.samples.append(download)
    for whole, series in ((whole_up, measured.upload), (whole_down, measured.download)):
        if not whole:
            measured.stalls.add(f"{series.subject} {series.work}")
    return upload


Rounds = tuple[Callable[[int], float], Callable[[int], None]]


def _loopback(bench: Bench, size: int, measured: Measured) -> Rounds:
    unit = "sdpod-bench-loopback"

    def measure_round(number: int) -> float:
        ports = (free_port(), free_port())
        script = servers(size).format(sink=ports[0], source=ports[1])
        bench.run(["systemd-run", "--user", "--quiet", f"--unit={unit}", "sh", "-c", script])
        return _both_ways(bench, ports, size, measured)

    def teardown(number: int) -> None:
        bench.run(["systemctl", "--user", "stop", unit], check=False)
        bench.run(["systemctl", "--user", "reset-failed", unit], check=False)

    return measure_round, teardown


def _sdpod(bench: Bench, size: int, backend: str, subjects: dict[str, Measured]) -> Rounds:
    name = f"net-{backend}"
    measured = subjects[backend]

    def measure_round(number: int) -> float:
        ports = (free_port(), free_port())
        command = ["sh", "-c", servers(size).format(sink=SINK_PORT, source=SOURCE_PORT)]
        text = (
            "[container]\n"
            f"name = {json.dumps(name)}\n"
            'image = "oci:image:latest"\n'
            f"command = {json.dumps(command)}\n"
            f'ports = ["127.0.0.1:{ports[0]}:{SINK_PORT}", "127.0.0.1:{ports[1]}:{SOURCE_PORT}"]\n'
            f"network = {json.dumps(backend)}\n"
        )
        bench.run(["sdpod", "up", str(write_toml(bench, name, text))])
        upload = _both_ways(bench, ports, size, measured)
        _record_memory(bench, measured, lambda p: f"/sdpod-{name}.service/supervisor" in p.cgroup)
        return upload

    def teardown(number: int) -> None:
        sdpod_down(bench, [bench.work / f"{name}.toml"])

    return measure_round, teardown


def _podman(bench: Bench, size: int, measured: Measured) -> Rounds:
    name = "net-podman"

    def measure_round(number: int) -> float:
        ports = (free_port(), free_port())
        script = servers(size).format(sink=SINK_PORT, source=SOURCE_PORT)
        argv = ["podman", "run", "-d", "--name", name]
        argv += [
            "-p",
            f"127.0.0.1:{ports[0]}:{SINK_PORT}",
            "-p",
            f"127.0.0.1:{ports[1]}:{SOURCE_PORT}",
        ]
        bench.run([*argv, PODMAN_IMAGE, "sh", "-c", script])
        upload = _both_ways(bench, ports, size, measured)
        _record_memory(bench, measured, _is_podman_helper)
        return upload

    return measure_round, lambda number: podman_remove(bench, [name])


def _is_podman_helper(process: Process) -> bool:
    return process.comm == "slirp4netns" or process.comm.startswith("rootlessport")


def _record_memory(bench: Bench, measured: Measured, keep: Callable[[Process], bool]) -> None:
    """PSS and RSS in MiB of the helper processes `keep` picks, the log relay left out."""
    helpers = [p for p in processes(bench.host.cgroup) if keep(p) and p.comm != "cat"]
    if not helpers:
        raise BenchError("found no network helper process to measure")
    assert measured.pss is not None and measured.rss is not None
    measured.pss.samples.append(sum(pss_kib(p.pid) for p in helpers) / 1024)
    measured.rss.samples.append(sum(_rss_kib(p.pid) for p in helpers) / 1024)


def _rss_kib(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    line = next((line for line in status.splitlines() if line.startswith("VmRSS:")), "")
    return int(line.split()[1]) if line else 0
