"""`sdpod enable` and `sdpod disable`: containers that start at boot, from unit files.

A transient unit vanishes at reboot (DESIGN.md). An enabled container has a unit file in
the manager's own unit directory, written from the very properties that `up` gives a
transient unit (sdpod.units.unitfile), and linked into default.target. A rootless user's
manager starts at boot only when the user lingers (loginctl(1) enable-linger).
"""

from __future__ import annotations

import logging
import os
import pwd
from pathlib import Path

from sdpod import lifecycle, pods, projects, publishing
from sdpod.config.load import load_project
from sdpod.config.model import Container
from sdpod.errors import SystemdError
from sdpod.health import readiness
from sdpod.health import service as checks
from sdpod.units import unitfile
from sdpod.units.manager import UNIT_INTERFACE, Manager

log = logging.getLogger(__name__)

LINGER_DIR = Path("/var/lib/systemd/linger")


def enable(file: Path, say: lifecycle.Say, debug: bool = False) -> None:
    """Make every container of `file` start at boot; start none that is not running."""
    project = projects.load(file)
    with lifecycle.session(project, debug) as context:
        _check_unit_path(context.manager)
        # Known before anything moves: restarting a container from its unit file also
        # stops the containers that require it, which must come back as well.
        running = {
            c.name for c in project.containers if lifecycle.is_running(context.manager, c.unit_name)
        }
        holder = pods.desired_holder(context)
        if holder is not None:
            pods.make_persistent(holder, context, say, bool(running & set(holder.members)))
        for container in readiness.start_order(project):
            _enable_one(container, context, file, say, container.name in running)
    if os.geteuid() != 0:
        warn_without_linger(_user_name())


def warn_without_linger(user: str, directory: Path = LINGER_DIR) -> None:
    if not lingers(user, directory):
        log.warning(
            "%s does not linger: the containers start when %s logs in, not at boot; "
            "`loginctl enable-linger %s` starts them at boot",
            user,
            user,
            user,
        )


def _enable_one(
    container: Container,
    context: lifecycle.Context,
    file: Path,
    say: lifecycle.Say,
    running: bool,
) -> None:
    unit = container.unit_name
    manager = context.manager
    want = lifecycle.desired(container, context)
    units = lifecycle.unit_files(want)
    if manager.unit_property(unit, UNIT_INTERFACE, "Transient"):
        # A transient unit's own file comes first in the unit path, and EnableUnitFiles
        # refuses a name that has one: the container moves to its unit file by a restart.
        if running:
            say(f"{container.name}: restarting from a unit file, to run at boot as well")
        manager.stop(unit)
        checks.stop_checks(manager, container)
        for name, _, _ in units:
            manager.wait_unloaded(name)

    publishing.write_unit_files(manager, container.name, units)
    manager.enable_unit_files([unit])
    manager.reload()

    if running:
        lifecycle.bring_up(want, context, say)
        say(f"{container.name}: enabled: {unit} starts at boot")
        return
    lifecycle.remove_if_changed(want, context, running=False)
    lifecycle.prepare(want)
    say(
        f"{container.name}: enabled: {unit} starts at boot; "
        f"not started now (`sdpod up {file}` starts it)"
    )


def _check_unit_path(manager: Manager) -> None:
    """The manager must read the directory we write to; XDG_CONFIG_HOME may differ
    between this shell and the user's manager, which has its own environment."""
    directory = unitfile.unit_dir()
    if str(directory) not in manager.unit_path():
        raise SystemdError(
            f"failed to enable the containers: systemd reads no unit files from {directory}",
            hint="set XDG_CONFIG_HOME as the user manager has it (`systemctl --user "
            "show-environment`), or unset it",
        )


def disable(file: Path, say: lifecycle.Say) -> None:
    """Make no container of `file` start at boot; the running ones keep running."""
    project = load_project(file, check_paths=False)
    with lifecycle.session(project) as context:
        units = [
            c.unit_name for c in project.containers if unitfile.unit_path(c.unit_name).exists()
        ]
        if units:
            context.manager.disable_unit_files(units)
        for container in project.containers:
            _disable_one(container, context, file, say)
        if units:
            context.manager.reload()
        pods.forget_unit_file(project, context.manager)


def _disable_one(
    container: Container, context: lifecycle.Context, file: Path, say: lifecycle.Say
) -> None:
    unit = container.unit_name
    if not unitfile.unit_path(unit).exists():
        say(f"{container.name}: not enabled")
        return
    if lifecycle.is_running(context.manager, unit):
        # Its unit file stays while it runs: without it, the next reload would leave
        # systemd a unit with none of its settings (no restart policy, no stop signal).
        # `sdpod down` or `sdpod up` removes the file once the container is stopped.
        say(
            f"{container.name}: disabled: no longer starts at boot; it keeps running "
            f"until `sdpod down {file}`"
        )
        return
    lifecycle.remove_unit_files(container)
    lifecycle.remove_container(container, context)
    say(f"{container.name}: disabled and removed")


def lingers(user: str, directory: Path = LINGER_DIR) -> bool:
    """Whether logind starts `user`'s manager at boot: it keeps one flag file per user."""
    return (directory / user).exists()


def _user_name() -> str:
    return pwd.getpwuid(os.getuid()).pw_name
