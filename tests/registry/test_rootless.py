"""The installed `sdpod image` as an ordinary user of the sandbox host, from the loopback
registry: owners land in the user's subordinate ids, and go again through them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from registry.conftest import Registries
from sandbox import CHECKOUT_MOUNT, SandboxHost
from support.trees import tree

pytestmark = [pytest.mark.system, pytest.mark.registry]

TIMEOUT = 120.0


def subuid_start(user: str) -> int:
    for line in Path("/etc/subuid").read_text().splitlines():
        name, start, _ = line.split(":")
        if name == user:
            return int(start)
    raise AssertionError(f"{user} has no subordinate ids")


# This checkout's code, as the sandbox sees it, run by the installed Python and its
# libraries: other engineers reinstalling /opt/sdpod meanwhile do not change what runs.
SDPOD = [
    "/opt/sdpod/venv/bin/python",
    "-c",
    "import sys; sys.path.insert(0, sys.argv.pop(1)); from sdpod.cli.main import main; main()",
    CHECKOUT_MOUNT,
]


def run(sandbox: SandboxHost, *args: str) -> subprocess.CompletedProcess[str]:
    return sandbox.run_as_user([*SDPOD, "image", *args], check=False, timeout=TIMEOUT)


def ok(sandbox: SandboxHost, *args: str) -> str:
    result = run(sandbox, *args)
    assert result.returncode == 0, f"{args}: exit {result.returncode}\n{result.stderr}"
    return result.stdout


def test_rootless_pull_maps_owners_and_rm_removes_them(
    sandbox: SandboxHost, registries: Registries, user_dir: Path
) -> None:
    reference = f"{registries.open.host}/test/busybox:1"
    store = sandbox.home() / ".local/share/sdpod"

    image_id = ok(sandbox, "pull", "--tls-verify=false", reference).strip().splitlines()[-1]

    (found,) = json.loads(ok(sandbox, "inspect", reference))
    (layer,) = (Path(path) for path in found["trees"])  # one layer: its tree is the image's
    assert layer.parent.parent == store / "layers"
    owned = (layer / "www/owned").stat()
    assert (owned.st_uid, owned.st_gid) != (33, 33)
    assert owned.st_uid == subuid_start(sandbox.user) + 32  # 0 is the user, 1.. the range
    assert (layer / "bin/busybox").stat().st_uid == sandbox.uid()

    unpacked = user_dir / "unpacked"
    ok(sandbox, "unpack", reference, str(unpacked))
    assert tree(unpacked / "rootfs", owners=True) == tree(layer, owners=True)

    own_blobs = [image_id, found["manifest"]["digest"], found["layers"][0]["digest"]]

    ok(sandbox, "rm", reference)

    assert not layer.parent.exists()
    assert not (store / "images" / image_id.removeprefix("sha256:")).exists()
    # The store may hold other tests' images; this one's blobs are its alone (the layer
    # has the file owned by 33 that no other image has).
    left = {p.name for p in (store / "blobs/sha256").iterdir()}
    assert left.isdisjoint(d.removeprefix("sha256:") for d in own_blobs)
    ok(sandbox, "verify")
