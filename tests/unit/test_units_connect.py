"""Without a reachable manager, the error says which one and what to do."""

from __future__ import annotations

import os

import pytest

from sdpod.errors import SystemdError
from sdpod.units.manager import SYSTEM_BUS_HINT, USER_BUS_HINT, Manager


def test_an_unreachable_bus_is_named_with_a_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    # Both buses are pointed at a socket that does not exist.
    missing = "unix:path=/nonexistent/sdpod-test-bus"
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", missing)
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", missing)

    with pytest.raises(SystemdError) as raised:
        Manager.connect()

    root = os.geteuid() == 0
    assert f"failed to connect to the {'system' if root else 'user'} bus" in str(raised.value)
    assert raised.value.hint == (SYSTEM_BUS_HINT if root else USER_BUS_HINT)
