"""The work every subject does: the busybox image, sdpod TOML files, podman's copy.

The image is tests/support/mkimage.py's busybox image (Debian's static busybox, httpd
serving /www on port 80), built once per run into the user's work directory; podman
gets the same layout through `podman pull oci:DIR:latest`, outside the clock.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from support.mkimage import build_busybox_image

from bench.host import Bench

HTTPD = ["httpd", "-f", "-v", "-p", "80", "-h", "/www"]
PODMAN_IMAGE = "localhost/sdpod-bench/busybox:latest"


def build_image(bench: Bench) -> Path:
    """The busybox layout at WORK/image and the site at WORK/www, owned by the user."""
    layout = bench.work / "image"
    build_busybox_image(layout)
    www = bench.work / "www"
    www.mkdir()
    (www / "index.html").write_text("hello from the benchmark\n")
    bench.give(bench.work)
    return layout


def web_toml(bench: Bench, name: str, port: int) -> Path:
    """A one-container TOML like examples/web.toml, serving on 127.0.0.1:`port`."""
    text = (
        "[container]\n"
        f"name = {json.dumps(name)}\n"
        'image = "oci:image:latest"\n'
        f"command = {json.dumps(HTTPD)}\n"
        f'ports = ["127.0.0.1:{port}:80"]\n'
        'volumes = ["./www:/www:ro"]\n'
        'restart = "always"\n'
    )
    return write_toml(bench, name, text)


def true_toml(bench: Bench, name: str) -> Path:
    """A container that runs `true` once and is not restarted."""
    text = (
        "[container]\n"
        f"name = {json.dumps(name)}\n"
        'image = "oci:image:latest"\n'
        'command = ["true"]\n'
        'restart = "no"\n'
    )
    return write_toml(bench, name, text)


def write_toml(bench: Bench, name: str, text: str) -> Path:
    path = bench.work / f"{name}.toml"
    path.write_text(text)
    bench.give(path)
    return path


def sdpod_up(toml: Path, port: int | None = None, gone: str | None = None) -> dict[str, Any]:
    step: dict[str, Any] = {"argv": ["sdpod", "up", str(toml)]}
    if port is not None:
        step["port"] = port
    if gone is not None:
        step["gone"] = gone
    return step


def sdpod_down(bench: Bench, tomls: Sequence[Path]) -> None:
    for toml in tomls:
        bench.run(["sdpod", "down", str(toml)], check=False)


def unit_cgroup_events(bench: Bench, name: str) -> str:
    """A recursive glob for the unit's cgroup.events inside the sandbox, in any slice."""
    manager = f"/sys/fs/cgroup/user.slice/user-{bench.uid}.slice/user@{bench.uid}.service"
    return f"{manager}/**/sdpod-{name}.service/cgroup.events"


def podman_reason(bench: Bench) -> str:
    """Why podman cannot be measured, or "" when it can."""
    if not bench.has("podman"):
        return "missing: podman is not installed (apt install podman)"
    return ""


# The cgroup v2 tree here has no controllers enabled, and podman asks for the pids
# controller to apply its default limit of 2048 processes (crun then refuses): the
# benchmark user's containers.conf turns that default limit off. sdpod sets no limit.
CONTAINERS_CONF = "[containers]\npids_limit = 0\n"


def configure_podman(bench: Bench) -> None:
    """The benchmark user's containers.conf (see CONTAINERS_CONF)."""
    config = bench.work.parent / ".config" / "containers"
    config.mkdir(parents=True, exist_ok=True)
    (config / "containers.conf").write_text(CONTAINERS_CONF)
    bench.give(bench.work.parent / ".config")


def load_podman_image(bench: Bench, layout: Path) -> None:
    """Copy the busybox layout into the user's podman storage, under PODMAN_IMAGE."""
    configure_podman(bench)
    output = bench.run(["podman", "pull", "-q", f"oci:{layout}:latest"])
    image_id = output.strip().splitlines()[-1]
    bench.run(["podman", "tag", image_id, PODMAN_IMAGE])


def podman_web(name: str, port: int, www: Path) -> dict[str, Any]:
    argv = ["podman", "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:80"]
    argv += ["-v", f"{www}:/www:ro", PODMAN_IMAGE, *HTTPD]
    return {"argv": argv, "port": port}


def podman_remove(bench: Bench, names: Sequence[str]) -> None:
    """Remove those of `names` that exist: `podman rm` of a missing name removes none
    of the others (and 4.3.1's --ignore did not remove them either)."""
    listed = bench.run(["podman", "ps", "-a", "--format", "{{.Names}}"], check=False)
    existing = set(listed.split())
    present = [name for name in names if name in existing]
    if present:
        bench.run(["podman", "rm", "-f", "-t", "0", *present], check=False)


def require(tool: str) -> str:
    """The reason a peer is missing, or "" when `tool` is installed."""
    if shutil.which(tool) is None:
        return f"missing: {tool} is not installed"
    return ""
