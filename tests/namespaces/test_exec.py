"""`sdpod.runtime.exec`: a command run inside a container that the launcher started by hand.

The launcher runs in a cgroup of the test's own, named like a unit's, so that it makes
the `supervisor` and `container` leaves as under systemd. Root is needed to write the id
maps without /etc/subuid and to make that cgroup; slirp4netns and tini as for the
launcher's own test.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.mkimage import build_busybox_image
from support.terminal import PROMPT, Terminal, exercise_shell

from namespaces.common import MAPPING, MARKS, remove_cgroup
from sdpod.config.model import Container, LayoutImage
from sdpod.errors import RuntimeSetupError
from sdpod.images.store import ImageStore
from sdpod.kernel.userns import run_in_userns
from sdpod.runtime import bundle, cgroup, exec
from sdpod.runtime.spec import BundleLayout, build_spec

pytestmark = MARKS

PROBE = """
echo "hostname=$(hostname)"
echo "uid=$(id -u)"
echo "self=$$"
echo "pid1=$(cat /proc/1/cmdline | tr '\\0' ' ')"
echo "cgroup=$(grep "^0::" /proc/self/cgroup)"
echo "root_fs=$(awk '$5 == "/" {print $9}' /proc/self/mountinfo)"
echo "marker=$(cat /marker 2>&1)"
echo "cwd=$(pwd)"
echo "greeting=$GREETING"
"""


@dataclass
class Launched:
    init_pid: int
    spec: dict[str, Any]
    leaf: Path


def _unit_cgroup() -> Path:
    mount = cgroup.cgroup2_mount(Path("/proc/self/mountinfo").read_text())
    if mount is None:
        pytest.skip("no cgroup v2 hierarchy is mounted")
    path = mount / f"sdpod-exec-test-{secrets.token_hex(3)}.service"
    path.mkdir()
    return path


def _launch(tmp_path: Path, unit_cgroup: Path) -> Launched:
    image_dir = tmp_path / "image"
    build_busybox_image(image_dir, "latest")
    store = ImageStore(tmp_path / "store")
    image = store.import_layout(
        LayoutImage(image_dir, "latest"), unpack=lambda work: run_in_userns(MAPPING, work)
    )
    container = Container(
        name="probe",
        image=LayoutImage(image_dir, "latest"),
        command=("sh", "-c", "echo in-container > /marker; exec sleep 600"),
        env=(("GREETING", "hello"),),
    )
    layout = BundleLayout.under(tmp_path / "bundle", image.lowers, tmp_path / "volumes")
    spec = build_spec(
        container, image.config, layout, MAPPING, Path(shutil.which("tini-static") or "")
    )
    etc = {"hosts": "127.0.0.1 localhost\n", "hostname": "probe\n", "resolv.conf": ""}
    bundle.prepare(layout, spec, etc, (0, 0))

    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path / "run")}
    env.pop("NOTIFY_SOCKET", None)
    join = 'echo $$ > "$0/cgroup.procs" && exec "$@"'
    launcher = [sys.executable, "-m", "sdpod.runtime", "launch", str(layout.bundle)]
    # The container inherits the launcher's output and keeps running: a file, not a pipe,
    # so that nothing waits for its end.
    log = tmp_path / "launch.log"
    with log.open("w") as output:
        result = subprocess.run(
            ["/bin/sh", "-c", join, str(unit_cgroup), *launcher],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            timeout=60,
            env=env,
        )
    assert result.returncode == 0, log.read_text()
    init_pid = int((tmp_path / "run/sdpod/probe.pid").read_text())
    return Launched(init_pid, spec, unit_cgroup / "container")


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launched]:
    path = tmp_path_factory.mktemp("exec")
    unit_cgroup = _unit_cgroup()
    try:
        container = _launch(path, unit_cgroup)
        _wait_for_marker(container)
        yield container
    finally:
        remove_cgroup(unit_cgroup)
        run_in_userns(MAPPING, lambda: shutil.rmtree(path))


def _wait_for_marker(container: Launched) -> None:
    deadline = time.monotonic() + 10
    while run_captured(container, ["cat", "/marker"])[0] != 0:
        assert time.monotonic() < deadline, "the container's command did not write /marker"
        time.sleep(0.05)


def run_captured(
    container: Launched, argv: list[str], timeout: float | None = None
) -> tuple[int, str]:
    output = os.memfd_create("probe-output")
    try:
        stdio = exec.Stdio(None, output, output)
        status = exec.run(container.init_pid, container.spec, argv, timeout, stdio=stdio)
        os.lseek(output, 0, os.SEEK_SET)
        return status, os.read(output, 65536).decode()
    finally:
        os.close(output)


@pytest.fixture(scope="module")
def seen(launched: Launched) -> dict[str, str]:
    status, output = run_captured(launched, ["sh", "-c", PROBE])
    assert status == 0, output
    lines = [line.partition("=") for line in output.splitlines() if "=" in line]
    return {key: value.strip() for key, _, value in lines}


def test_the_command_sees_the_containers_names_and_is_root(seen: dict[str, str]) -> None:
    assert seen["hostname"] == "probe" != os.uname().nodename
    assert seen["uid"] == "0"


def test_the_command_is_in_the_containers_pid_namespace(
    seen: dict[str, str], launched: Launched
) -> None:
    assert seen["pid1"].startswith("/dev/init -- sh -c echo in-container")
    assert int(seen["self"]) != launched.init_pid
    assert int(seen["self"]) < 100  # a number of the container's own, young namespace


def test_the_command_sees_the_containers_files(seen: dict[str, str]) -> None:
    assert seen["root_fs"] == "overlay"
    assert seen["marker"] == "in-container"


def test_the_command_runs_in_the_containers_leaf(seen: dict[str, str], launched: Launched) -> None:
    # At the root of the container's cgroup namespace, which is its leaf.
    assert seen["cgroup"] == "0::/"
    assert launched.leaf.name == "container"


def test_the_command_gets_the_specs_environment_and_directory(seen: dict[str, str]) -> None:
    assert seen["greeting"] == "hello"
    assert seen["cwd"] == "/"


def test_exit_status_is_returned(launched: Launched) -> None:
    assert run_captured(launched, ["sh", "-c", "exit 7"])[0] == 7
    assert run_captured(launched, ["true"])[0] == 0


def test_a_signal_death_is_128_plus_the_signal(launched: Launched) -> None:
    assert run_captured(launched, ["sh", "-c", "kill -TERM $$"])[0] == 128 + 15


def test_a_timeout_kills_the_command_and_its_group(launched: Launched) -> None:
    before = set((launched.leaf / "cgroup.procs").read_text().split())
    with pytest.raises(TimeoutError, match=r"did not finish within 0\.5 s"):
        # The shell's child, sleep, is in the command's process group too.
        run_captured(launched, ["sh", "-c", "sleep 60; echo not reached"], timeout=0.5)
    # The killed processes leave the leaf as they finish dying: poll, with a deadline.
    deadline = time.monotonic() + 10
    while set((launched.leaf / "cgroup.procs").read_text().split()) != before:
        assert time.monotonic() < deadline, "the timed-out command's processes live on"
        time.sleep(0.05)


def test_a_missing_command_is_reported(launched: Launched) -> None:
    with pytest.raises(RuntimeSetupError, match="'no-such-command' not found in the container"):
        run_captured(launched, ["no-such-command"])


def test_a_process_that_is_gone_is_reported() -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    with pytest.raises(RuntimeSetupError, match="no longer exists"):
        exec.run(gone.pid, {"process": {}}, ["true"])


# -- with a terminal -------------------------------------------------------------------------

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
# The user's side of `sdpod exec -it`: exec.run with a terminal, its stdio the user's pty.
EXEC_WITH_TERMINAL = """
import json, sys
from sdpod.runtime import exec
spec = json.loads(open(sys.argv[2]).read())
sys.exit(exec.run(int(sys.argv[1]), spec, sys.argv[3:], terminal=True))
"""


def exec_on_terminal(
    launched: Launched, tmp_path: Path, argv: list[str], size: tuple[int, int]
) -> Terminal:
    spec = tmp_path / "config.json"
    spec.write_text(json.dumps(launched.spec))
    command = [sys.executable, "-c", EXEC_WITH_TERMINAL, str(launched.init_pid), str(spec)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return Terminal.start([*command, *argv], env=env, size=size)


def test_a_shell_on_a_terminal_has_job_control(launched: Launched, tmp_path: Path) -> None:
    with exec_on_terminal(launched, tmp_path, ["sh"], (30, 90)) as term:
        exercise_shell(term, (30, 90))
        term.send("exit 7\r")
        assert term.wait() == 7, term.transcript()


def test_a_signal_death_on_a_terminal_is_128_plus_the_signal(
    launched: Launched, tmp_path: Path
) -> None:
    with exec_on_terminal(launched, tmp_path, ["sh"], (24, 80)) as term:
        term.expect(PROMPT)
        term.send("kill -9 $$\r")
        assert term.wait() == 128 + 9, term.transcript()


def test_the_terminal_is_the_containers_and_the_commands_users(
    launched: Launched, tmp_path: Path
) -> None:
    script = 'ls -ln "$(tty)"; ls /dev/pts; cut -d" " -f6 /proc/$$/stat; echo "self $$"'
    with exec_on_terminal(launched, tmp_path, ["sh", "-c", script], (24, 80)) as term:
        assert term.wait() == 0, term.transcript()
    words = term.transcript().split()
    # crw--w---- 1 0 0 136, 0 ... /dev/pts/0: the container's root owns its terminal,
    # one of the container's own devpts, where only its own ptys are.
    assert words[0].startswith("crw") and words[2:4] == ["0", "0"], words
    assert words[-6].startswith("/dev/pts/"), words
    assert "ptmx" in words
    # The command leads a session of its own.
    assert words[-3] == words[-1], words
