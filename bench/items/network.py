"""Item 6, network: iperf3 throughput through a published port each way, and the memory
the network helper keeps per container, for each of sdpod's backends beside loopback and
podman.

One container per subject runs `iperf3 -s` on one port, published on the host's
127.0.0.1. The busybox image has no iperf3: the host's /usr/bin/iperf3 and its library
directory are bind-mounted read-only, and run through the host's dynamic loader with
that directory as the library path. The client, the host's iperf3 as the user in the
sandbox, sends N bytes (host to container) and, with `-R`, has the server send them
(container to host). "loopback" is the same server on the host's 127.0.0.1, no
container between. Nothing leaves the loopback.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.figures import Figure, Series
from bench.host import Bench, BenchError, free_port
from bench.pss import Process, processes, pss_kib
from bench.rounds import Subject, alternate
from bench.work import PODMAN_IMAGE, podman_remove, require, sdpod_down, write_toml

METHOD = (
    "`iperf3 -c 127.0.0.1 -p PORT -n N -J` (host->container) and the same with -R "
    "(container->host), one TCP stream, the receiver's bits per second; the server is "
    "`iperf3 -s` in the container (the host's binary and libraries bind-mounted "
    "read-only) behind a published port 127.0.0.1:PORT; loopback: the same server on the "
    'host; sdpod: `network = "slirp4netns"` (TCP ports through systemd\'s socket '
    'activation and systemd-socket-proxyd), `"pasta"` (pasta splices loopback '
    'connections) and `"none"` (the proxy alone); podman run -p (its default: '
    "slirp4netns, rootlessport); memory: PSS and RSS of the helper processes of the one "
    "container (sdpod: the unit's supervisor leaf but the log relay `cat`, i.e. the "
    "helper and its shell, and the port's proxy unit; podman: slirp4netns and "
    "rootlessport), read after the transfers, and for sdpod also once the container "
    "runs, before the first connection"
)
IPERF = "/usr/bin/iperf3"
LIBRARIES = "/usr/lib/x86_64-linux-gnu"
MOUNTED_IPERF, MOUNTED_LIBRARIES = "/iperf/iperf3", "/iperf/lib"
SERVER_PORT = 5201
# sdpod's networks measured: through slirp4netns, pasta, and loopback alone.
SDPOD_NETWORKS = ("slirp4netns", "pasta", "none")
# A transfer that takes longer is cut off there (`timeout`) and counts what moved: a stall
# is a figure, and a note.
LIMIT_SECONDS = 30
WARM_UP_TRIES = 50
# The server inside a container: the host's iperf3 through the host's loader.
SERVER = [
    f"{MOUNTED_LIBRARIES}/ld-linux-x86-64.so.2",
    "--library-path",
    MOUNTED_LIBRARIES,
    MOUNTED_IPERF,
    "-s",
    "-p",
    str(SERVER_PORT),
]
VOLUMES = [f"{IPERF}:{MOUNTED_IPERF}:ro", f"{LIBRARIES}:{MOUNTED_LIBRARIES}:ro"]


@dataclass
class Measured:
    """The series of one subject: throughput each way, and its helper's memory."""

    upload: Series
    download: Series
    pss: Series | None = None
    rss: Series | None = None
    idle_pss: Series | None = None
    stalls: list[str] = field(default_factory=list)


def measure(bench: Bench, podman_ready: str) -> Figure:
    figure = Figure("6", "network throughput and helper memory", METHOD)
    size = (64 if bench.quick else 2048) << 20
    missing = require("iperf3")
    subjects = {
        "loopback": _measured(figure, "loopback", memory=False, reason=missing),
        **{
            backend: _measured(figure, f"sdpod {backend}", idle=True, reason=missing)
            for backend in SDPOD_NETWORKS
        },
        "podman": _measured(figure, "podman run -p", reason=podman_ready or missing),
    }
    for direction in ("upload", "download"):
        base = getattr(subjects["loopback"], direction)
        for name in SDPOD_NETWORKS:
            ours = getattr(subjects[name], direction)
            figure.compare(figure.series.index(ours), figure.series.index(base))
            peer = getattr(subjects["podman"], direction)
            figure.compare(figure.series.index(ours), figure.series.index(peer))
    for name in SDPOD_NETWORKS:
        ours_pss, peer_pss = subjects[name].pss, subjects["podman"].pss
        assert ours_pss is not None and peer_pss is not None
        figure.compare(figure.series.index(ours_pss), figure.series.index(peer_pss))

    runs = [
        Subject(subjects["loopback"].upload, *_loopback(bench, size, subjects["loopback"])),
        *(
            Subject(subjects[name].upload, *_sdpod(bench, size, name, subjects))
            for name in SDPOD_NETWORKS
        ),
        Subject(subjects["podman"].upload, *_podman(bench, size, subjects["podman"])),
    ]
    alternate(runs, bench.rounds)
    for measured in subjects.values():
        for series in (measured.download, measured.pss, measured.rss, measured.idle_pss):
            if series is not None and not series.samples:
                series.reason = series.reason or measured.upload.reason
    figure.notes.append(f"N = {size >> 20} MiB per transfer, at most {LIMIT_SECONDS} s")
    for measured in subjects.values():
        figure.notes += [f"{stall}: cut off at {LIMIT_SECONDS} s once" for stall in measured.stalls]
    return figure


def _measured(
    figure: Figure, subject: str, memory: bool = True, idle: bool = False, reason: str = ""
) -> Measured:
    def series(work: str, unit: str) -> Series:
        made = Series(subject, work, unit, reason=reason)
        figure.add(made)
        return made

    measured = Measured(series("host->container", "Gbit/s"), series("container->host", "Gbit/s"))
    if memory:
        measured.pss = series("helper PSS", "MiB")
        measured.rss = series("helper RSS", "MiB")
    if idle:
        measured.idle_pss = series("helper PSS before a connection", "MiB")
    return measured


def _transfer(bench: Bench, port: int, size: int, reverse: bool) -> tuple[float, bool]:
    """Gbit/s that one iperf3 test counted, and whether it finished within the limit.

    A finished test gives its receiver's figure; one cut off at the limit gives what its
    per-second intervals counted until then (iperf3 -J reports them when interrupted)."""
    argv = ["timeout", str(LIMIT_SECONDS), "iperf3", "-c", "127.0.0.1", "-p", str(port)]
    argv += ["-n", str(size), "-J", *(["-R"] if reverse else [])]
    output = bench.run(argv, check=False, timeout=LIMIT_SECONDS + 30)
    way = "container->host" if reverse else "host->container"
    try:
        result = json.loads(output)
    except json.JSONDecodeError as e:
        raise BenchError(f"failed to measure {way} through port {port}: {output!r}") from e
    error = str(result.get("error", ""))
    if not error:
        return float(result["end"]["sum_received"]["bits_per_second"]) / 1e9, True
    intervals = [i["sum"] for i in result.get("intervals", [])]
    moved = sum(float(i["bytes"]) for i in intervals)
    if "interrupt" not in error or not moved:
        raise BenchError(f"failed to measure {way} through port {port}: {error}")
    return moved * 8 / sum(float(i["seconds"]) for i in intervals) / 1e9, False


def _both_ways(bench: Bench, port: int, size: int, measured: Measured) -> float:
    """Once a 1 MiB test gets through, one test each way; record the container->host
    figure, return the host->container one."""
    for _ in range(WARM_UP_TRIES):
        try:
            _transfer(bench, port, 1 << 20, reverse=False)
            break
        except BenchError:
            time.sleep(0.1)
    else:
        raise BenchError(f"failed to get 1 MiB through port {port} with iperf3")
    upload, whole_up = _transfer(bench, port, size, reverse=False)
    download, whole_down = _transfer(bench, port, size, reverse=True)
    measured.download.samples.append(download)
    for whole, series in ((whole_up, measured.upload), (whole_down, measured.download)):
        if not whole:
            measured.stalls.append(f"{series.subject} {series.work}")
    return upload


Rounds = tuple[Callable[[int], float], Callable[[int], None]]


def _loopback(bench: Bench, size: int, measured: Measured) -> Rounds:
    unit = "sdpod-bench-loopback"

    def measure_round(number: int) -> float:
        port = free_port()
        server = ["iperf3", "-s", "-B", "127.0.0.1", "-p", str(port)]
        bench.run(["systemd-run", "--user", "--quiet", f"--unit={unit}", *server])
        return _both_ways(bench, port, size, measured)

    def teardown(number: int) -> None:
        bench.run(["systemctl", "--user", "stop", unit], check=False)
        bench.run(["systemctl", "--user", "reset-failed", unit], check=False)

    return measure_round, teardown


def _sdpod(bench: Bench, size: int, backend: str, subjects: dict[str, Measured]) -> Rounds:
    name = f"net-{backend}"
    measured = subjects[backend]

    def measure_round(number: int) -> float:
        port = free_port()
        text = (
            "[container]\n"
            f"name = {json.dumps(name)}\n"
            'image = "oci:image:latest"\n'
            f"command = {json.dumps(SERVER)}\n"
            f'ports = ["127.0.0.1:{port}:{SERVER_PORT}"]\n'
            f"volumes = {json.dumps(VOLUMES)}\n"
            f"network = {json.dumps(backend)}\n"
        )
        bench.run(["sdpod", "up", str(write_toml(bench, name, text))])
        assert measured.idle_pss is not None
        measured.idle_pss.samples.append(_helpers_pss(bench, helpers) / 1024)
        upload = _both_ways(bench, port, size, measured)
        _record_memory(bench, measured, helpers)
        return upload

    def helpers(process: Process) -> bool:
        """The helper and its shell in the unit's supervisor leaf, and the port's proxy."""
        supervisor = f"/sdpod-{name}.service/supervisor" in process.cgroup
        return supervisor or f"/sdpod-{name}:{SERVER_PORT}.service" in process.cgroup

    def teardown(number: int) -> None:
        sdpod_down(bench, [bench.work / f"{name}.toml"])

    return measure_round, teardown


def _podman(bench: Bench, size: int, measured: Measured) -> Rounds:
    name = "net-podman"

    def measure_round(number: int) -> float:
        port = free_port()
        argv = ["podman", "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:{SERVER_PORT}"]
        for volume in VOLUMES:
            argv += ["-v", volume]
        bench.run([*argv, PODMAN_IMAGE, *SERVER])
        upload = _both_ways(bench, port, size, measured)
        _record_memory(bench, measured, _is_podman_helper)
        return upload

    return measure_round, lambda number: podman_remove(bench, [name])


def _is_podman_helper(process: Process) -> bool:
    return process.comm == "slirp4netns" or process.comm.startswith("rootlessport")


def _helpers_pss(bench: Bench, keep: Callable[[Process], bool]) -> int:
    """PSS in KiB of the helper processes `keep` picks, the log relay left out; 0 for none."""
    helpers = [p for p in processes(bench.host.cgroup) if keep(p) and p.comm != "cat"]
    return sum(pss_kib(p.pid) for p in helpers)


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
