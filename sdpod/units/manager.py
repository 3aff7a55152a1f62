"""The systemd manager over D-Bus: start, stop and inspect units, transient or from files.

jeepney's blocking API keeps asyncio off the start path (DESIGN.md measured it: 40 ms for
one transient unit, half of the asyncio libraries' time). The D-Bus exchange is done in
full: subscribe to job results before starting, wait for the job, report any result but
`done` with the unit's name, reset a failed unit of the same name before reuse.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jeepney import (
    DBusAddress,
    DBusErrorResponse,
    MatchRule,
    message_bus,
    new_method_call,
)
from jeepney.io.blocking import DBusConnection, open_dbus_connection
from jeepney.wrappers import unwrap_msg

from sdpod.errors import SystemdError
from sdpod.units.translate import Property

SYSTEMD = DBusAddress(
    "/org/freedesktop/systemd1",
    bus_name="org.freedesktop.systemd1",
    interface="org.freedesktop.systemd1.Manager",
)
MANAGER_PROPERTIES = DBusAddress(
    SYSTEMD.object_path, bus_name=SYSTEMD.bus_name, interface="org.freedesktop.DBus.Properties"
)
UNIT_INTERFACE = "org.freedesktop.systemd1.Unit"
SERVICE_INTERFACE = "org.freedesktop.systemd1.Service"
NO_SUCH_UNIT = "org.freedesktop.systemd1.NoSuchUnit"
FILE_NOT_FOUND = "org.freedesktop.DBus.Error.FileNotFound"
UNLOAD_TIMEOUT_SECONDS = 10.0
JOB_TIMEOUT_SECONDS = 120
USER_BUS_HINT = (
    "sdpod needs a running systemd user manager: log in through a session or run "
    "`loginctl enable-linger $USER`, and check DBUS_SESSION_BUS_ADDRESS"
)
SYSTEM_BUS_HINT = (
    "as root, sdpod runs containers as services of systemd itself, which must be PID 1; "
    "where it is not (a container, a CI runner), the README's throwaway host "
    "(`python3 tests/sandbox.py shell`) gives one"
)


@dataclass(frozen=True)
class UnitState:
    name: str
    description: str
    active_state: str
    sub_state: str


class Manager:
    """One connection to the user's manager (or the system's, for root)."""

    def __init__(self, connection: DBusConnection, user: bool) -> None:
        self._connection = connection
        self._subscribed = False
        self.user = user

    @classmethod
    def connect(cls) -> Manager:
        user = os.geteuid() != 0
        bus = "SESSION" if user else "SYSTEM"
        try:
            connection = open_dbus_connection(bus=bus)
        except (OSError, KeyError) as error:
            raise SystemdError(
                f"failed to connect to the {'user' if user else 'system'} bus of systemd: {error}",
                hint=USER_BUS_HINT if user else SYSTEM_BUS_HINT,
            ) from None
        return cls(connection, user)

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> Manager:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, address: DBusAddress, method: str, signature: str, *args: Any) -> Any:
        message = new_method_call(address, method, signature or None, args or None)
        reply = self._connection.send_and_get_reply(message, timeout=JOB_TIMEOUT_SECONDS)
        return unwrap_msg(reply)

    def start_transient(
        self,
        name: str,
        properties: Sequence[Property],
        aux: Sequence[tuple[str, Sequence[Property]]] = (),
    ) -> None:
        """Create and start the service `name`; return when its start job is done.

        `aux` units (name, properties) are created with it but not started: the service
        pulls them in through its own dependencies, as a health check's timer. A failed
        unit of any of these names, left loaded by an earlier run, is reset first: it
        would refuse the name.
        """
        for aux_name, _ in aux:
            self.reset_failed(aux_name)
        self.reset_failed(name)
        self._run_job(
            name,
            "start",
            "StartTransientUnit",
            "ssa(sv)a(sa(sv))",
            name,
            "fail",
            list(properties),
            [(aux_name, list(aux_properties)) for aux_name, aux_properties in aux],
        )

    def stop(self, name: str) -> None:
        """Stop `name` and forget it; a unit that is not loaded is already stopped."""
        try:
            self._run_job(name, "stop", "StopUnit", "ss", name, "replace")
        except SystemdError as error:
            if NO_SUCH_UNIT not in str(error):
                raise
        self.reset_failed(name)

    def reset_failed(self, name: str) -> None:
        try:
            self._call(SYSTEMD, "ResetFailedUnit", "s", name)
        except DBusErrorResponse as error:
            if error.name != NO_SUCH_UNIT:
                raise SystemdError(f"failed to reset unit {name}: {error}") from None

    def _run_job(self, name: str, verb: str, method: str, signature: str, *args: Any) -> None:
        # No sender in the rule: signals carry the manager's unique bus name, which
        # jeepney's local filter would compare with the well-known name and miss.
        rule = MatchRule(
            type="signal",
            interface=SYSTEMD.interface,
            member="JobRemoved",
            path=SYSTEMD.object_path,
        )
        self._subscribe(rule)
        with self._connection.filter(rule) as signals:
            try:
                (job,) = self._call(SYSTEMD, method, signature, *args)
            except DBusErrorResponse as error:
                raise SystemdError(
                    f"failed to {verb} {name}: {error.name}: {' '.join(map(str, error.data))}"
                ) from None
            result = self._wait_for_job(signals, job)
        if result != "done":
            raise SystemdError(
                f"failed to {verb} {name}: its job ended as {result!r}\n" + self.recent_log(name),
                hint=f"`{self.journalctl_hint(name)}` shows the whole log",
            )

    def _subscribe(self, rule: MatchRule) -> None:
        # The manager emits job signals only to subscribed clients, and refuses a second
        # subscription from the same connection (AlreadySubscribed).
        if self._subscribed:
            return
        self._connection.send_and_get_reply(message_bus.AddMatch(rule))
        self._call(SYSTEMD, "Subscribe", "")
        self._subscribed = True

    def _wait_for_job(self, signals: Any, job: str) -> str:
        while True:
            try:
                signal = self._connection.recv_until_filtered(signals, timeout=JOB_TIMEOUT_SECONDS)
            except TimeoutError:
                raise SystemdError(f"no result for job {job} in {JOB_TIMEOUT_SECONDS} s") from None
            _, path, _, result = signal.body
            if path == job:
                return str(result)

    def journalctl_argv(self, name: str) -> list[str]:
        return ["journalctl", *(["--user"] if self.user else []), "-u", name]

    def journalctl_hint(self, name: str) -> str:
        return " ".join(self.journalctl_argv(name))

    def recent_log(self, name: str, lines: int = 10) -> str:
        """The unit's last log lines, for an error message; empty where none can be read."""
        argv = [*self.journalctl_argv(name), "-n", str(lines), "-o", "cat", "--no-pager"]
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return "\n".join(f"  {line}" for line in result.stdout.splitlines())

    def list_units(self, pattern: str) -> list[UnitState]:
        (rows,) = self._call(SYSTEMD, "ListUnitsByPatterns", "asas", [], [pattern])
        return [UnitState(row[0], row[1], row[3], row[4]) for row in rows]

    def unit_property(self, name: str, interface: str, prop: str) -> Any:
        """One property of a loaded unit, or None where the unit is not loaded."""
        try:
            (path,) = self._call(SYSTEMD, "GetUnit", "s", name)
        except DBusErrorResponse as error:
            if error.name == NO_SUCH_UNIT:
                return None
            raise SystemdError(f"failed to find unit {name}: {error}") from None
        unit = DBusAddress(
            path, bus_name=SYSTEMD.bus_name, interface="org.freedesktop.DBus.Properties"
        )
        (value,) = self._call(unit, "Get", "ss", interface, prop)
        return value[1]

    # -- units defined by unit files (`sdpod enable`) -----------------------------------

    def start_unit(self, name: str) -> None:
        """Start `name` from its unit file; return when its start job is done."""
        self.reset_failed(name)
        self._run_job(name, "start", "StartUnit", "ss", name, "replace")

    def reload(self) -> None:
        """Make the manager read the unit files again, as `systemctl daemon-reload` does.

        The manager answers Reload once the reload is over; reading one of its properties
        afterwards checks that it serves requests again.
        """
        self._manager_call("reload the manager", "Reload", "")
        self._manager_property("Version")

    def enable_unit_files(self, names: Sequence[str]) -> None:
        """Link the unit files into the targets their [Install] sections name."""
        # runtime=false: the links go beside the unit files and outlive a reboot;
        # force=true: a link of the same name left pointing elsewhere is replaced.
        what = f"enable {', '.join(names)}"
        self._manager_call(what, "EnableUnitFiles", "asbb", list(names), False, True)

    def disable_unit_files(self, names: Sequence[str]) -> None:
        """Remove the links `enable_unit_files` made; the unit files stay."""
        what = f"disable {', '.join(names)}"
        self._manager_call(what, "DisableUnitFiles", "asb", list(names), False)

    def unit_file_state(self, name: str) -> str | None:
        """The state of `name`'s unit file ("enabled", "disabled"...), None without one."""
        try:
            (state,) = self._call(SYSTEMD, "GetUnitFileState", "s", name)
        except DBusErrorResponse as error:
            if error.name == FILE_NOT_FOUND:
                return None
            raise SystemdError(f"failed to read the unit file state of {name}: {error}") from None
        return str(state)

    def unit_path(self) -> list[str]:
        """The directories the manager loads unit files from, in their order."""
        return [str(path) for path in self._manager_property("UnitPath")]

    def wait_unloaded(self, name: str, timeout: float = UNLOAD_TIMEOUT_SECONDS) -> None:
        """Wait until the manager has let go of a stopped unit; a transient unit's file
        is deleted only then, and until then no unit file of that name can be enabled."""
        deadline = time.monotonic() + timeout
        while self.unit_property(name, UNIT_INTERFACE, "Id") is not None:
            if time.monotonic() > deadline:
                raise SystemdError(f"failed to unload {name}: still loaded after {timeout:.0f} s")
            time.sleep(0.02)

    def _manager_call(self, what: str, method: str, signature: str, *args: Any) -> Any:
        return self._checked_call(what, SYSTEMD, method, signature, *args)

    def _manager_property(self, prop: str) -> Any:
        what = f"read the manager's {prop}"
        (value,) = self._checked_call(
            what, MANAGER_PROPERTIES, "Get", "ss", SYSTEMD.interface, prop
        )
        return value[1]

    def _checked_call(
        self, what: str, address: DBusAddress, method: str, signature: str, *args: Any
    ) -> Any:
        try:
            return self._call(address, method, signature, *args)
        except DBusErrorResponse as error:
            detail = " ".join(map(str, error.data))
            raise SystemdError(f"failed to {what}: {error.name}: {detail}") from None

    # -- jobs and processes for health checks and `sdpod exec` ---------------------------

    def enqueue(self, method: str, name: str) -> None:
        """Queue a job (`RestartUnit`, `StopUnit`...) for `name` without waiting for it.

        For a caller that the job would end or block: a health check restarting the
        container it checks.
        """
        try:
            self._call(SYSTEMD, method, "ss", name, "replace")
        except DBusErrorResponse as error:
            raise SystemdError(f"failed to queue {method} of {name}: {error}") from None

    def attach_processes(self, name: str, subcgroup: str, pids: Sequence[int]) -> None:
        """Move `pids` into the cgroup `subcgroup` below the delegated unit `name`.

        The manager can move a process that its owner cannot: one outside the user's
        delegated tree, for which it asks the system manager (org.freedesktop.systemd1(5),
        AttachProcessesToUnit).
        """
        try:
            self._call(SYSTEMD, "AttachProcessesToUnit", "ssau", name, subcgroup, list(pids))
        except DBusErrorResponse as error:
            raise SystemdError(
                f"failed to move process {', '.join(map(str, pids))} into {name}: "
                f"{error.name}: {' '.join(map(str, error.data))}"
            ) from None
