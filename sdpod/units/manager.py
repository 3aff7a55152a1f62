"""The systemd manager over D-Bus: start, stop and inspect transient units.

jeepney's blocking API keeps asyncio off the start path (DESIGN.md measured it: 40 ms for
one transient unit, half of the asyncio libraries' time). The D-Bus exchange is done in
full: subscribe to job results before starting, wait for the job, report any result but
`done` with the unit's name, reset a failed unit of the same name before reuse.
"""

from __future__ import annotations

import os
import subprocess
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
UNIT_INTERFACE = "org.freedesktop.systemd1.Unit"
SERVICE_INTERFACE = "org.freedesktop.systemd1.Service"
NO_SUCH_UNIT = "org.freedesktop.systemd1.NoSuchUnit"
JOB_TIMEOUT_SECONDS = 120


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
                hint="sdpod needs a running systemd user manager: log in through a session "
                "or run `loginctl enable-linger $USER`, and check DBUS_SESSION_BUS_ADDRESS",
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

    def start_transient(self, name: str, properties: Sequence[Property]) -> None:
        """Create and start the service `name`; return when its start job is done."""
        self.reset_failed(name)
        self._run_job(
            name,
            "start",
            "StartTransientUnit",
            "ssa(sv)a(sa(sv))",
            name,
            "fail",
            list(properties),
            [],
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
