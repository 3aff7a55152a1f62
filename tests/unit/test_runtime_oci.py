"""The OCI runtime's pure parts and its helpers that need no privileges: the default
configuration, devices in the mount plan, signals, hooks, the state directory, HOME."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest

from sdpod.cli.runtime import parse_signal
from sdpod.errors import RuntimeSetupError
from sdpod.kernel import capabilities
from sdpod.runtime import cgroup, hooks, lifecycle, mounts, state
from sdpod.runtime.default_spec import CAPABILITIES, default_spec

REPO_ROOT = Path(__file__).resolve().parent.parent.parent


def test_the_default_configuration_is_the_peers() -> None:
    spec = default_spec(False)
    process = spec["process"]
    assert (process["terminal"], process["args"], spec["root"]) == (
        True,
        ["sh"],
        {"path": "rootfs", "readonly": True},
    )
    assert process["capabilities"]["bounding"] == CAPABILITIES
    assert process["capabilities"]["inheritable"] == []
    assert process["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
    kinds = [entry["type"] for entry in spec["linux"]["namespaces"]]
    assert kinds == ["pid", "network", "ipc", "uts", "mount"]
    devpts = next(m for m in spec["mounts"] if m["destination"] == "/dev/pts")
    assert "gid=5" in devpts["options"]


def test_the_rootless_configuration_maps_the_caller_and_binds_sys() -> None:
    spec = default_spec(True, 1000, 1001)
    linux = spec["linux"]
    assert linux["uidMappings"] == [{"containerID": 0, "hostID": 1000, "size": 1}]
    assert linux["gidMappings"] == [{"containerID": 0, "hostID": 1001, "size": 1}]
    kinds = [entry["type"] for entry in linux["namespaces"]]
    assert "network" not in kinds and "user" in kinds
    sys_mount = next(m for m in spec["mounts"] if m["destination"] == "/sys")
    assert sys_mount["type"] == "none" and "rbind" in sys_mount["options"]
    devpts = next(m for m in spec["mounts"] if m["destination"] == "/dev/pts")
    assert not any(option.startswith("gid=") for option in devpts["options"])
    # The plan takes it as it is: /sys is a recursive, read-only bind.
    plan = mounts.plan_mounts(spec)
    sys_op = next(op for op in plan if op.target == "/sys")
    assert isinstance(sys_op, mounts.Mount) and sys_op.is_bind


def _devices(plan: list[mounts.Operation]) -> dict[str, mounts.Device]:
    return {op.target: op for op in plan if isinstance(op, mounts.Device)}


def test_devices_are_made_without_a_user_namespace_and_bound_with_one() -> None:
    declared = {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o20666}
    spec: dict[str, Any] = {"linux": {"namespaces": [{"type": "mount"}], "devices": [declared]}}
    made = _devices(mounts.plan_mounts(spec))
    assert set(made) == {f"/dev/{name}" for name in mounts.DEVICES} | {"/dev/fuse"}
    assert not any(device.bind for device in made.values())
    assert (made["/dev/fuse"].major, made["/dev/fuse"].minor, made["/dev/fuse"].mode) == (
        10,
        229,
        0o666,
    )
    assert (made["/dev/null"].major, made["/dev/null"].minor) == (1, 3)

    spec["linux"]["namespaces"].append({"type": "user"})
    assert all(device.bind for device in _devices(mounts.plan_mounts(spec)).values())


def test_a_declared_device_replaces_the_default_at_its_path() -> None:
    null = {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "uid": 5, "gid": 6}
    plan = mounts.plan_mounts({"linux": {"devices": [null]}})
    nulls = [op for op in plan if isinstance(op, mounts.Device) and op.target == "/dev/null"]
    assert len(nulls) == 1 and (nulls[0].uid, nulls[0].gid) == (5, 6)


def test_an_unknown_device_type_names_the_valid_ones() -> None:
    spec = {"linux": {"devices": [{"path": "/dev/x", "type": "z"}]}}
    with pytest.raises(ValueError, match="unknown type 'z'; valid: c, u, b, p"):
        mounts.plan_mounts(spec)


def test_propagation_options_include_unbindable() -> None:
    assert mounts.parse_options(["runbindable"]).propagation == (1 << 17) | (1 << 14)


@pytest.mark.parametrize(
    ("text", "number"), [("TERM", 15), ("SIGTERM", 15), ("15", 15), ("kill", 9), ("SIGRTMIN", 34)]
)
def test_signals_are_names_with_or_without_sig_or_numbers(text: str, number: int) -> None:
    assert parse_signal(text) == number


@pytest.mark.parametrize("text", ["SIGNOPE", "0", "999", ""])
def test_a_bad_signal_is_a_usage_error(text: str) -> None:
    with pytest.raises(click.BadParameter, match="no signal"):
        parse_signal(text)


def test_a_cgroups_path_may_not_climb() -> None:
    with pytest.raises(RuntimeSetupError, match="may not climb"):
        cgroup.place("a/../../etc")


def test_capability_masks_follow_the_kernels_numbers() -> None:
    assert capabilities.mask_of(["CAP_CHOWN", "CAP_KILL"]) == 1 | 1 << 5
    assert capabilities.mask_of(["CAP_NOT_A_THING"]) == 0


# -- hooks -------------------------------------------------------------------------------


def _hook(script: str, **extra: Any) -> dict[str, Any]:
    return {"path": "/bin/sh", "args": ["sh", "-c", script], **extra}


def test_a_hook_reads_the_state_on_its_input(tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    hooks.run(_hook(f"cat > {seen}"), "prestart", b'{"id": "x"}')
    assert json.loads(seen.read_text()) == {"id": "x"}


def test_a_hook_gets_its_own_environment_only(tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    hook = _hook(f'echo "$GREETING:$HOME" > {seen}', env=["GREETING=hi"])
    hooks.run(hook, "poststop", b"{}")
    assert seen.read_text() == "hi:\n"


def test_a_hook_that_does_not_read_its_input_is_fine() -> None:
    # More than a pipe holds: the write meets a closed pipe, or a full one, and stops.
    hooks.run({"path": "/bin/true", "args": ["true"]}, "poststart", b"x" * 300_000)


def test_a_failing_hook_reports_its_status_and_output() -> None:
    with pytest.raises(RuntimeSetupError, match=r"createRuntime hook /bin/sh: exit status 3: oops"):
        hooks.run(_hook("echo oops >&2; exit 3"), "createRuntime", b"{}")


def test_a_hook_past_its_timeout_is_killed() -> None:
    with pytest.raises(RuntimeSetupError, match="did not finish within 1 s"):
        hooks.run(_hook("exec sleep 30", timeout=1), "prestart", b"{}")


def test_a_missing_hook_is_reported() -> None:
    with pytest.raises(RuntimeSetupError, match="hook /nonexistent: No such file"):
        hooks.run({"path": "/nonexistent"}, "prestart", b"{}")


def test_hooks_of_several_kinds_come_in_order() -> None:
    spec = {"hooks": {"prestart": [{"path": "/a"}], "createRuntime": [{"path": "/b"}]}}
    assert [h["path"] for h in hooks.of(spec, "prestart", "createRuntime")] == ["/a", "/b"]
    assert hooks.of({}, "poststop") == []


# -- the state directory -----------------------------------------------------------------


def test_ids_are_runcs() -> None:
    state.check_id("web-1.test_x+y")
    for bad in ("../x", "a/b", "", ".", "..", "a b"):
        with pytest.raises(RuntimeSetupError, match="invalid container id"):
            state.check_id(bad)


def test_a_process_is_known_by_its_start_time() -> None:
    started = state.start_time(os.getpid())
    assert started > 0
    assert state.alive(os.getpid(), started)
    assert not state.alive(os.getpid(), started + 1)
    done = subprocess.Popen(["true"])
    done.wait()
    assert state.start_time(done.pid) == 0 or not state.alive(done.pid, started)


def test_a_record_round_trips_and_sets_the_status(tmp_path: Path) -> None:
    container = state.Container(tmp_path, "one")
    container.directory.mkdir()
    assert container.status() == state.CREATING
    record = state.Record("one", os.getpid(), state.start_time(os.getpid()), "/b", "now", 0)
    container.save(record)
    container.save_spec({"annotations": {"a": "b"}})
    assert container.record() == record
    container.fifo.touch()
    assert container.status() == state.CREATED
    container.fifo.unlink()
    assert container.oci_state()["status"] == state.RUNNING
    assert container.oci_state()["annotations"] == {"a": "b"}
    container.save(state.Record("one", os.getpid(), 1, "/b", "now", 0))
    assert container.oci_state()["status"] == state.STOPPED
    assert container.oci_state()["pid"] == 0
    assert [c.id for c in state.every(tmp_path)] == ["one"]


def test_a_missing_container_names_the_state_root(tmp_path: Path) -> None:
    with pytest.raises(RuntimeSetupError, match=f"does not exist in {tmp_path}"):
        state.find(tmp_path, "none")


def test_home_comes_from_the_images_passwd(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text(
        "root:x:0:0::/root:/bin/sh\nwww:x:33:33::/www:/bin/false\n"
    )
    for uid, home in ((33, "/www"), (0, "/root"), (1000, "/")):
        spec: dict[str, Any] = {"process": {"user": {"uid": uid}, "env": ["PATH=/bin"]}}
        lifecycle._give_home(spec, str(tmp_path))
        assert spec["process"]["env"] == ["PATH=/bin", f"HOME={home}"]
    spec = {"process": {"env": ["HOME=/mine"]}}
    lifecycle._give_home(spec, str(tmp_path))
    assert spec["process"]["env"] == ["HOME=/mine"]


# -- the command line --------------------------------------------------------------------


def test_runtime_help_lists_every_verb_and_loads_no_runtime_code() -> None:
    code = (
        "import sys\nfrom sdpod.cli.runtime import main\n"
        "sys.argv = ['sdpod-runtime', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('sdpod.runtime')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    for verb in ("spec", "create", "start", "state", "kill", "delete", "run", "exec", "list"):
        assert f"  {verb} " in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"
