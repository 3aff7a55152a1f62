"""Persistence: `enable`, `disable`, idempotent `up` and edit-and-`up`, against real systemd.

Enabling a container writes a unit file into the user's home, which every sandbox host
on this machine shares. A container enabled for `sdpod-test` would therefore also start
in the sandbox of any test session that boots meanwhile, where that session's tests
count `sdpod-test`'s processes, and it would hold our port there. So the tests that
enable run as BOOT_USER in hosts of their own; linger flags are private to each boot
(see `sandbox.boot_script`), so no other host starts BOOT_USER's manager. The tests
that only run `up` use the session's sandbox.
"""

from __future__ import annotations

import json
import logging
import pwd
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sandbox import SandboxError, SandboxHost, check_prerequisites

from sdpod import persist
from system.helpers import (
    HTTPD,
    Project,
    fetch,
    free_port,
    home_dir,
    refuses,
    wait_for,
)

BOOT_USER = "sdpod-boot"
MANAGER_TIMEOUT = 60.0

Completed = subprocess.CompletedProcess[str]


def ok(result: Completed) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


def unique(stem: str) -> str:
    return f"{stem}-{secrets.token_hex(3)}"


def succeeds(result: Completed) -> str:
    assert result.returncode == 0, ok(result)
    assert "Traceback" not in result.stderr, ok(result)
    return result.stdout


# -- hosts and users --------------------------------------------------------------------


def start_boot_host() -> SandboxHost:
    try:
        check_prerequisites()
    except SandboxError as e:
        pytest.skip(f"cannot boot a sandbox host: {e}")
    remove_leftovers()
    host = SandboxHost(BOOT_USER, nosub_user=None)
    host.start()
    return host


def remove_leftovers() -> None:
    """What a test run that was killed may have left enabled: only these tests use
    BOOT_USER, and a unit left enabled would start at the next boot of its host."""
    try:
        home = Path(pwd.getpwnam(BOOT_USER).pw_dir)
    except KeyError:
        return
    units = home / ".config/systemd/user"
    for path in [*units.glob("sdpod-*"), *units.glob("*.wants/sdpod-*")]:
        path.unlink()
    shutil.rmtree(home / ".local/share/sdpod/containers", ignore_errors=True)


@pytest.fixture(scope="module")
def boot_host() -> Iterator[SandboxHost]:
    host = start_boot_host()
    try:
        yield host
    finally:
        host.stop()
        remove_leftovers()


@pytest.fixture
def web(boot_host: SandboxHost) -> Iterator[Project]:
    """One busybox web container of BOOT_USER; disabled and brought down at teardown."""
    with home_dir(boot_host, BOOT_USER, unique("persist")) as directory:
        project = Project.create(boot_host, BOOT_USER, directory, unique("pweb"), free_port())
        yield project
        # Brought down first: an enabled container keeps its files until `disable`.
        project.down()
        project.sdpod("disable", project.toml)


def unit_file(project: Project) -> Path:
    return project.sandbox.home(project.user) / ".config/systemd/user" / project.unit


def socket_file(project: Project) -> Path:
    """The unit file of the socket that publishes the container's port 80."""
    return unit_file(project).with_name(f"sdpod-{project.name}:80.socket")


def wants_link(project: Project) -> Path:
    directory = project.sandbox.home(project.user) / ".config/systemd/user/default.target.wants"
    return directory / project.unit


def is_enabled(project: Project) -> str:
    return project.run(["systemctl", "--user", "is-enabled", project.unit]).stdout.strip()


def restart_user_manager(host: SandboxHost, user: str) -> None:
    """Restart the user's manager as root, and wait until it has started its units."""
    host.run_as_root(["systemctl", "restart", f"user@{host.uid(user)}.service"], timeout=90)

    def started() -> str | None:
        argv = ["systemctl", "--user", "is-system-running"]
        state = host.run_as_user(argv, user, check=False).stdout.strip()
        return state if state in ("running", "degraded") else None

    wait_for(started, MANAGER_TIMEOUT, f"the user manager of {user} after its restart")


def serving(project: Project) -> dict[str, str]:
    """The page is served and the unit runs; its state."""
    assert fetch(project.url) == project.index_html
    state = project.show()
    assert (state["ActiveState"], state["SubState"]) == ("active", "running"), state
    return state


# -- the unit from a file is the transient unit -----------------------------------------

# What differs between two starts of the same unit, or only says where its definition
# came from: none of it is a setting.
VOLATILE = re.compile(
    r"Timestamp|PID$|^InvocationID$|^ControlGroupId$|Current$|NSec$|Bytes$|Packets$"
    r"|Operations$|^NRestarts$|^FragmentPath$|^UnitFileState$|^Transient$|^WantedBy$|^NeedDaemonReload$"
)
# Dependency lists come in no fixed order; an enabled unit is also ordered before the
# target that wants it.
DEPENDENCIES = ("Requires", "Wants", "After", "Before", "BindsTo", "PartOf", "Conflicts")


def settings(project: Project) -> dict[str, object]:
    out = project.run(["systemctl", "--user", "show", project.unit])
    assert out.returncode == 0, ok(out)
    found: dict[str, object] = {}
    for line in out.stdout.splitlines():
        key, _, value = line.partition("=")
        if VOLATILE.search(key):
            continue
        if key in DEPENDENCIES:
            found[key] = set(value.split()) - {"default.target"}
        elif key.startswith("Exec"):
            # `{ path=... ; argv[]=... ; ignore_errors=no ; start_time=... ; pid=... }`
            found[key] = re.sub(r" ; start_time=.*", "", value)
        else:
            found[key] = value
    return found


# -- enable, disable, and the manager's restart -------------------------------------


@pytest.mark.system
def test_enabled_container_comes_back_after_its_manager_restarts(web: Project) -> None:
    succeeds(web.up())
    transient = settings(web)
    assert transient.get("ExecStart"), transient

    result = web.sdpod("enable", web.toml)
    enabled = succeeds(result)
    assert f"{web.name}: enabled" in enabled, enabled
    # The host lets BOOT_USER linger, so there is nothing to warn about.
    assert "enable-linger" not in result.stderr, ok(result)
    assert is_enabled(web) == "enabled"
    assert unit_file(web).is_file() and wants_link(web).is_symlink()
    assert socket_file(web).is_file()
    before = serving(web)
    assert web.show()["LoadState"] == "loaded"
    # Every setting systemd holds for the unit from its file is the transient unit's.
    assert settings(web) == transient

    restart_user_manager(web.sandbox, web.user)
    after = serving(web)
    assert after["MainPID"] != before["MainPID"], (before, after)

    down = succeeds(web.down())
    assert "still enabled" in down, down
    assert web.show()["ActiveState"] in ("inactive", "failed")
    assert refuses(web.port)
    assert (web.container_dir / "config.json").is_file()
    assert is_enabled(web) == "enabled"

    disabled = succeeds(web.sdpod("disable", web.toml))
    assert f"{web.name}: disabled and removed" in disabled, disabled
    assert not unit_file(web).exists() and not wants_link(web).is_symlink()
    assert not socket_file(web).exists()
    assert not web.container_dir.exists()


@pytest.mark.system
def test_disabled_container_keeps_running_then_stays_down(web: Project) -> None:
    succeeds(web.up())
    succeeds(web.sdpod("enable", web.toml))
    before = serving(web)

    disabled = succeeds(web.sdpod("disable", web.toml))
    assert "keeps running" in disabled, disabled
    after = serving(web)
    assert after["MainPID"] == before["MainPID"]
    assert not wants_link(web).is_symlink()
    assert is_enabled(web) == "disabled"
    # systemd still holds its settings while it runs: its restart policy among them.
    restart = web.run(["systemctl", "--user", "show", "-p", "Restart", "--value", web.unit])
    assert restart.stdout.strip() == "always"

    restart_user_manager(web.sandbox, web.user)
    state = web.show()
    assert state["ActiveState"] == "inactive", state
    assert refuses(web.port)

    # The next `up` starts it as a transient unit again, and removes the disabled file.
    succeeds(web.up())
    serving(web)
    assert not unit_file(web).exists()
    transient = web.run(["systemctl", "--user", "show", "-p", "Transient", "--value", web.unit])
    assert transient.stdout.strip() == "yes"
    succeeds(web.down())
    assert not web.container_dir.exists()


@pytest.mark.system
def test_rm_force_of_an_enabled_container_takes_its_unit_file_too(web: Project) -> None:
    succeeds(web.up())
    succeeds(web.sdpod("enable", web.toml))
    assert unit_file(web).exists() and wants_link(web).is_symlink()

    succeeds(web.sdpod("rm", "--force", web.name))
    # Left behind, the enabled unit would start at every boot without its bundle.
    assert not unit_file(web).exists()
    assert not wants_link(web).is_symlink()
    assert web.show()["LoadState"] == "not-found"


@pytest.mark.system
def test_enable_prepares_a_stopped_container_and_up_starts_its_unit_file(web: Project) -> None:
    enabled = succeeds(web.sdpod("enable", web.toml))
    assert "not started" in enabled, enabled
    assert (web.container_dir / "config.json").is_file()
    assert refuses(web.port)
    assert web.show()["ActiveState"] == "inactive"
    assert is_enabled(web) == "enabled"

    up = succeeds(web.up())
    assert f"{web.name}: running" in up, up
    serving(web)
    fragment = web.run(["systemctl", "--user", "show", "-p", "FragmentPath", "--value", web.unit])
    assert fragment.stdout.strip() == str(unit_file(web))

    again = succeeds(web.up())
    assert "already running" in again, again


@pytest.mark.system
def test_edited_enabled_container_is_replaced_from_its_rewritten_unit_file(web: Project) -> None:
    succeeds(web.sdpod("enable", web.toml))
    succeeds(web.up())
    before = serving(web)
    old_port = web.port

    web.port = free_port()
    web.rewrite(Path(web.toml).read_text().replace(f":{old_port}:", f":{web.port}:"))
    up = succeeds(web.up())
    assert f"{web.name}: replaced" in up, up
    after = serving(web)
    assert after["MainPID"] != before["MainPID"]
    assert refuses(old_port)
    assert is_enabled(web) == "enabled"


@pytest.mark.system
@pytest.mark.parametrize("verb", ["up", "enable"])
def test_an_enabled_container_moved_to_pasta_stops_and_loses_its_sockets(
    web: Project, verb: str
) -> None:
    succeeds(web.sdpod("enable", web.toml))
    succeeds(web.up())
    serving(web)
    assert socket_file(web).is_file()

    # pasta publishes its ports itself. Whichever verb rewrites the unit files, the
    # running sockets of the old definition stop before their files go, and free the
    # port for pasta.
    web.rewrite(Path(web.toml).read_text() + 'network = "pasta"\n')
    out = succeeds(web.sdpod(verb, web.toml))
    assert f"{web.name}: replaced" in out, out
    serving(web)
    assert not [unit for unit in web.sdpod_units() if unit.startswith(f"sdpod-{web.name}:")]
    units = sorted(path.name for path in unit_file(web).parent.glob(f"sdpod-{web.name}:*"))
    assert units == []
    assert is_enabled(web) == "enabled"


HEALTH = """ready = "healthy"

[container.health]
command = ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1/"]
interval = "1s"
"""


@pytest.mark.system
def test_enabled_health_gated_container_comes_back_with_its_checks(web: Project) -> None:
    web.rewrite(Path(web.toml).read_text() + HEALTH)
    succeeds(web.sdpod("enable", web.toml))
    directory = unit_file(web).parent
    for name in (f"sdpod-{web.name}-health.timer", f"sdpod-{web.name}-health.service"):
        assert (directory / name).is_file(), sorted(p.name for p in directory.iterdir())

    # The manager's start of the container waits for its first passing check, which
    # only the health timer and service from their unit files can bring.
    restart_user_manager(web.sandbox, web.user)
    serving(web)
    timer = f"sdpod-{web.name}-health.timer"
    state = web.run(["systemctl", "--user", "show", "-p", "ActiveState", "--value", timer])
    assert state.stdout.strip() == "active", ok(state)

    succeeds(web.down())
    disabled = succeeds(web.sdpod("disable", web.toml))
    assert "disabled and removed" in disabled, disabled
    assert not any(directory.glob(f"sdpod-{web.name}*")), sorted(directory.iterdir())


@pytest.mark.system
def test_enabling_a_running_pair_keeps_both_running(web: Project) -> None:
    # Restarting the dependency from its unit file stops its dependent (Requires=);
    # enable must bring that one back too.
    db, port = f"{web.name}-db", free_port()
    text = Path(web.toml).read_text().replace("[container]", f"[containers.{web.name}]")
    text = text.replace(f'name = "{web.name}"\n', "")
    text += f"depends_on = [{json.dumps(db)}]\n\n" + two_containers((db,), (port,))
    web.rewrite(text)
    succeeds(web.up())
    db_unit = f"sdpod-{db}.service"

    succeeds(web.sdpod("enable", web.toml))
    serving(web)
    state = web.run(["systemctl", "--user", "show", "-p", "ActiveState", "--value", db_unit])
    assert state.stdout.strip() == "active", ok(state)

    succeeds(web.down())
    succeeds(web.sdpod("disable", web.toml))


@pytest.mark.system
def test_an_enabled_container_moves_into_a_pod_and_out_again(web: Project) -> None:
    succeeds(web.up())
    succeeds(web.sdpod("enable", web.toml))
    single = Path(web.toml).read_text().replace("[container]", f"[containers.{web.name}]")
    single = single.replace(f'name = "{web.name}"\n', "")
    db, port = f"{web.name}-db", free_port()
    holder = unit_file(web).parent / "sdpod-web-pod.service"

    # A second container makes a pod: the enabled one requires its holder at boot, which
    # so gets a unit file too.
    web.rewrite(single + "\n" + two_containers((db,), (port,)))
    succeeds(web.up())
    assert holder.is_file()
    restart_user_manager(web.sandbox, web.user)
    serving(web)
    # The new one is not enabled until `enable` runs again: it stays down.
    state = web.run(["systemctl", "--user", "is-active", f"sdpod-{db}.service"])
    assert state.stdout.strip() == "inactive", ok(state)
    # Enabling the file says what becomes of the holder.
    enabled = succeeds(web.sdpod("enable", web.toml))
    assert "web-pod: sdpod-web-pod.service starts at boot with the members" in enabled, enabled

    # The second one leaves for a network apart: the holder and its file go.
    web.rewrite(single + "\n" + two_containers((db,), (port,), "slirp4netns"))
    out = succeeds(web.up())
    assert "web-pod: stopped and removed" in out, out
    assert not holder.exists()
    serving(web)


# -- a reboot of the whole host ---------------------------------------------------------


@pytest.mark.system
def test_enabled_container_runs_after_the_host_reboots() -> None:
    host = start_boot_host()
    name = unique("reboot")
    try:
        with home_dir(host, BOOT_USER, unique("reboot")) as directory:
            project = Project.create(host, BOOT_USER, directory, name, free_port())
            succeeds(project.up())
            succeeds(project.sdpod("enable", project.toml))
            serving(project)
            host.stop()

            # The same user on a new boot: the home, and so ~/.config, is on the disk.
            host = SandboxHost(BOOT_USER, nosub_user=None)
            host.start()
            project.sandbox = host
            # No sdpod command ran in this boot: the user's manager started it.
            serving(project)
            assert project.journal(0).count(f"Started {project.unit}") == 1

            disabled = succeeds(project.sdpod("disable", project.toml))
            assert "keeps running" in disabled, disabled
            succeeds(project.down())
            assert not unit_file(project).exists()
            assert not project.container_dir.exists()
    finally:
        host.stop()
        remove_leftovers()


# -- idempotent up and edit-and-up, in the session's sandbox -----------------------------


def two_containers(names: tuple[str, ...], ports: tuple[int, ...], network: str = "private") -> str:
    """Web servers on container ports 81 and 82: on the file's shared network (beside
    a container_toml one on 80) each needs a port of its own."""
    return "\n".join(
        f"[containers.{name}]\n"
        'image = "oci:image:latest"\n'
        f"command = {json.dumps(httpd_on(81 + index))}\n"
        f'ports = ["127.0.0.1:{port}:{81 + index}"]\n'
        'volumes = ["./www:/www:ro"]\n'
        'restart = "always"\n'
        f"network = {json.dumps(network)}\n"
        for index, (name, port) in enumerate(zip(names, ports, strict=True))
    )


def httpd_on(port: int) -> list[str]:
    return [str(port) if word == "80" else word for word in HTTPD]


@pytest.mark.system
def test_up_twice_then_edit_replaces_only_the_edited_container(
    sandbox: SandboxHost, user_dir: Path
) -> None:
    names = (unique("edited"), unique("kept"))
    ports = (free_port(), free_port())
    project = Project.create(sandbox, sandbox.user, user_dir, names[0], ports[0])
    kept = Project(
        sandbox, sandbox.user, project.directory, project.toml, project.www, names[1], ports[1]
    )
    # Networks apart: a port edit in a shared network replaces its holder, and with it
    # every container of the file (tests/system/test_pod_network.py).
    project.rewrite(two_containers(names, ports, "slirp4netns"))
    try:
        first = succeeds(project.up())
        assert first.count(": running as") == 2, first
        pids = [serving(project)["MainPID"], serving(kept)["MainPID"]]
        files = [bundle_files(p.container_dir) for p in (project, kept)]

        second = succeeds(project.up())
        assert second.count("already running") == 2, second
        assert [project.show()["MainPID"], kept.show()["MainPID"]] == pids
        assert [bundle_files(p.container_dir) for p in (project, kept)] == files

        # What a container wrote goes with it when it is replaced, and only then.
        for p in (project, kept):
            (p.container_dir / "upper" / "left-by-test").write_text("x\n")
        new_port = free_port()
        project.rewrite(two_containers(names, (new_port, ports[1]), "slirp4netns"))
        third = succeeds(project.up())
        assert f"{names[0]}: replaced" in third, third
        assert f"{names[1]}: already running" in third, third

        assert kept.show()["MainPID"] == pids[1]
        assert (kept.container_dir / "upper" / "left-by-test").exists()
        assert not (project.container_dir / "upper" / "left-by-test").exists()
        assert refuses(ports[0])
        project.port = new_port
        assert serving(project)["MainPID"] != pids[0]
        assert fetch(kept.url) == kept.index_html
    finally:
        down = project.down()
    assert down.returncode == 0, ok(down)
    assert not project.container_dir.exists() and not kept.container_dir.exists()


def bundle_files(directory: Path) -> dict[str, int]:
    """Modification times of the files `up` writes: config.json, the digest, etc/*."""
    paths = [directory / "config.json", directory / "desired.sha256"]
    paths += sorted((directory / "etc").iterdir())
    return {str(path.relative_to(directory)): path.stat().st_mtime_ns for path in paths}


# -- linger -----------------------------------------------------------------------------


def test_missing_linger_is_explained(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "lingering").touch()
    assert persist.lingers("lingering", tmp_path)
    assert not persist.lingers("absent", tmp_path)

    with caplog.at_level(logging.WARNING):
        persist.warn_without_linger("lingering", tmp_path)
        assert caplog.records == []
        persist.warn_without_linger("absent", tmp_path)
    (record,) = caplog.records
    assert "loginctl enable-linger absent" in record.getMessage()
    assert "not at boot" in record.getMessage()
