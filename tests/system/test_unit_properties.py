"""Every unit property sdpod sets, accepted by a real systemd and read back from it.

`sdpod up` starts two containers of one file that together use every setting that
becomes a property; `systemctl --user show` then reads each property back from the
user manager of the sandbox host. The resource limits (MemoryMax, MemoryHigh,
CPUQuotaPerSecUSec, CPUWeight, TasksMax, IOWeight) are only read back, not enforced:
this machine's cgroup v2 tree has no controllers enabled, so systemd records the limits
but the kernel does not apply them here. A test that they hold needs a host whose
user manager has the memory, cpu, pids and io controllers delegated.
"""

from __future__ import annotations

import secrets
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sandbox import SandboxHost

from system.helpers import Project, free_port

pytestmark = pytest.mark.system

TOML = """\
[project]
name = "props-{token}"

[containers.db]
name = "db-{token}"
image = "oci:image:latest"
# A network apart: on the shared one, web's server and db's would take one port.
network = "slirp4netns"

# Started after db: the file's order, until `up` orders the containers by dependency.
[containers.web]
name = "web-{token}"
image = "oci:image:latest"
restart = "always"
restart_delay = "2s"
stop_signal = "SIGINT"
stop_timeout = "15s"
description = "Properties test web"
documentation = ["https://example.org/sdpod", "man:httpd(8)"]
ready = "healthy"
depends_on = ["db-{token}"]
resources = {{ memory = "512M", memory_high = "384M", cpus = 1.5, cpu_weight = 200, \
pids = 128, io_weight = 50 }}
health = {{ command = ["true"], interval = "5s", timeout = "2s", retries = 2, \
start_period = "2m" }}
"""

# systemctl's renderings of what the TOML above asks for.
WEB_EXPECTED = {
    "Description": "Properties test web",
    "Documentation": 'https://example.org/sdpod "man:httpd(8)"',
    "Type": "notify",
    "NotifyAccess": "all",
    "Delegate": "yes",
    "Restart": "always",
    "RestartUSec": "2s",
    "StartLimitIntervalUSec": "2min",
    "StartLimitBurst": "10",
    "KillSignal": "2",
    "KillMode": "mixed",
    "TimeoutStopUSec": "15s",
    # The start period and three rounds of interval plus timeout: 120 s + 3 * 7 s.
    "TimeoutStartUSec": "2min 21s",
    "MemoryMax": str(512 * 1024**2),
    "MemoryHigh": str(384 * 1024**2),
    "CPUQuotaPerSecUSec": "1.500000s",
    "CPUWeight": "200",
    "TasksMax": "128",
    "IOWeight": "50",
}
DB_EXPECTED = {
    "Type": "notify",
    "NotifyAccess": "main",
    "Delegate": "yes",
    "Restart": "on-failure",
    "RestartUSec": "1s",
    "StartLimitIntervalUSec": "2min",
    "StartLimitBurst": "10",
    "KillSignal": "15",
    "KillMode": "mixed",
    "TimeoutStopUSec": "10s",
    "TimeoutStartUSec": "1min 30s",
    # Limits that are not set stay systemd's: none at all.
    "MemoryMax": "infinity",
    "CPUQuotaPerSecUSec": "infinity",
}
LISTS = ("After", "Requires")


@pytest.fixture
def project(sandbox: SandboxHost, user_dir: Path) -> Iterator[Project]:
    """Two containers of one file, brought down at teardown if a test left them up."""
    token = secrets.token_hex(3)
    made = Project.create(sandbox, sandbox.user, user_dir, f"web-{token}", free_port())
    made.rewrite(TOML.format(token=token))
    yield made
    made.down()


def show(project: Project, unit: str, names: list[str]) -> dict[str, str]:
    out = project.run(["systemctl", "--user", "show", "-p", ",".join(names), unit])
    assert out.returncode == 0, out.stderr
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


def test_systemd_takes_every_property(project: Project) -> None:
    token = project.name.removeprefix("web-")
    web, db = f"sdpod-web-{token}.service", f"sdpod-db-{token}.service"
    project_slice = f"sdpod-props\\x2d{token}.slice"

    up = project.up()
    assert up.returncode == 0, ok(up)

    web_shown = show(project, web, [*WEB_EXPECTED, *LISTS, "Slice", "SyslogIdentifier"])
    assert {key: web_shown.get(key) for key in WEB_EXPECTED} == WEB_EXPECTED
    assert web_shown["Slice"] == project_slice
    assert web_shown["SyslogIdentifier"] == f"web-{token}"
    for key in LISTS:
        assert {db, project_slice} <= set(shlex.split(web_shown[key])), web_shown[key]

    db_shown = show(project, db, [*DB_EXPECTED, *LISTS, "Slice", "Description"])
    assert {key: db_shown.get(key) for key in DB_EXPECTED} == DB_EXPECTED
    assert db_shown["Slice"] == project_slice
    image = f"oci:{project.directory}/image:latest"
    assert db_shown["Description"] == f"sdpod container db-{token} ({image})"
    assert web not in shlex.split(db_shown["Requires"])

    # The project's slice is a child of sdpod.slice, by the escaped dash in its name.
    assert show(project, project_slice, ["Slice"]) == {"Slice": "sdpod.slice"}

    down = project.down()
    assert down.returncode == 0, ok(down)
    for unit in (web, db):
        state = show(project, unit, ["LoadState", "ActiveState"])
        assert state["LoadState"] == "not-found" or state["ActiveState"] == "inactive", state
