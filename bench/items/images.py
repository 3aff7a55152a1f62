"""Item 5, images: pull from a loopback registry and unpack, a small and a ~50 MB image.

The big image is five uncompressed layers of 10 MiB from os.urandom: random content, so
no compression could shrink it and the figure is about moving and writing bytes. Each
round starts from an empty store (sdpod: a fresh `--root`; skopeo: a fresh layout;
podman: the image removed after the round, untimed).
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from support.mkimage import BUSYBOX_CONFIG, File, build_layout, busybox_entries

from bench.figures import Figure, Series
from bench.host import Bench, BenchError
from bench.registry import Registry
from bench.rounds import Subject, alternate
from bench.work import require

BIG_LAYERS = 5
BIG_LAYER_BYTES = 10 << 20

METHOD = (
    "wall time to pull from docker-registry on 127.0.0.1 (plain HTTP) and unpack, as the "
    "user inside the sandbox, from an empty store each round; sdpod: `sdpod image --root "
    "FRESH pull --tls-verify=false` (pull verifies and unpacks); skopeo+umoci: `skopeo copy "
    "docker://REF oci:DIR:1` then `umoci unpack --rootless`; podman: `podman pull "
    "--tls-verify=false`; images: busybox (1 gzip layer, ~1 MB, plus a file unique to the "
    "run) and big (5 x 10 MiB of random bytes, uncompressed layers)"
)


def measure(bench: Bench, podman_ready: str) -> Figure:
    figure = Figure("5", "image pull and unpack", METHOD)
    scratch = Path(tempfile.mkdtemp(prefix="sdpod-bench-registry-"))
    try:
        registry = Registry(scratch)
    except BenchError as e:
        figure.reason = str(e)
        return figure
    try:
        layouts = {"busybox": build_small(scratch / "small")}
        if not bench.quick:
            layouts["big (50 MiB)"] = build_big(scratch / "big")
        for label, layout in layouts.items():
            reference = registry.push(layout, label.split()[0])
            measure_image(bench, figure, label, reference, podman_ready)
    except BenchError as e:
        figure.reason = str(e)
    finally:
        registry.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    return figure


def build_small(dest: Path) -> Path:
    """The busybox image plus a file unique to this run.

    Podman already holds the busybox layer (items 1 to 4 run it); a layer of its own
    makes podman fetch and unpack it like the others, instead of finding it stored.
    """
    marker = File("etc/bench-run", secrets.token_hex(16).encode())
    build_layout(dest, "latest", [[*busybox_entries(), marker]], dict(BUSYBOX_CONFIG))
    return dest


def build_big(dest: Path) -> Path:
    layers = [[File(f"blob{i}", os.urandom(BIG_LAYER_BYTES))] for i in range(BIG_LAYERS)]
    build_layout(dest, "latest", layers, {"Cmd": ["true"]}, compress=False)
    return dest


def measure_image(
    bench: Bench, figure: Figure, label: str, reference: str, podman_ready: str
) -> None:
    ours = figure.add(Series("sdpod image pull", label, "s"))
    peers = [
        (Series("skopeo copy + umoci unpack", label, "s", reason=oci_tools()), skopeo_umoci),
        (Series("podman pull", label, "s", reason=podman_ready), podman_pull),
    ]
    subjects = [Subject(figure.series[ours], *sdpod_pull(bench, reference))]
    for series, make in peers:
        figure.compare(ours, figure.add(series))
        subjects.append(Subject(series, *make(bench, reference)))
    alternate(subjects, bench.rounds)


def oci_tools() -> str:
    return require("skopeo") or require("umoci")


Pair = tuple[Callable[[int], float], Callable[[int], None]]


def sdpod_pull(bench: Bench, reference: str) -> Pair:
    def measure_round(number: int) -> float:
        root = bench.work / f"store-{number}"
        argv = ["sdpod", "image", "--root", str(root), "pull", "--tls-verify=false", "-q"]
        return bench.time([{"argv": [*argv, reference]}], timeout=300)[0]

    return measure_round, lambda number: remove(bench, f"store-{number}")


def skopeo_umoci(bench: Bench, reference: str) -> Pair:
    def measure_round(number: int) -> float:
        layout = bench.work / f"skopeo-{number}"
        copy = ["skopeo", "copy", "--src-tls-verify=false", f"docker://{reference}"]
        unpack = ["umoci", "unpack", "--rootless", "--image", f"{layout}:1"]
        steps = [{"argv": [*copy, f"oci:{layout}:1"]}, {"argv": [*unpack, f"{layout}-b"]}]
        return sum(bench.time(steps, timeout=300))

    def teardown(number: int) -> None:
        remove(bench, f"skopeo-{number}")
        remove(bench, f"skopeo-{number}-b")

    return measure_round, teardown


def podman_pull(bench: Bench, reference: str) -> Pair:
    def measure_round(number: int) -> float:
        argv = ["podman", "pull", "-q", "--tls-verify=false", reference]
        return bench.time([{"argv": argv}], timeout=300)[0]

    def teardown(number: int) -> None:
        bench.run(["podman", "rmi", "-f", reference], check=False)

    return measure_round, teardown


def remove(bench: Bench, name: str) -> None:
    """Remove WORK/name; as root, since a rootless unpack leaves subordinate owners."""
    bench.run_root(["rm", "-rf", str(bench.work / name)])
