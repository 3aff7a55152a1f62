"""Bringing up the loopback of a new network namespace through netlink, as the init does.

Each test forks into a user namespace of its own (root or not) with a network namespace
it owns, and looks only there.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable

import pytest

from sdpod.errors import RuntimeSetupError
from sdpod.kernel import syscalls
from sdpod.kernel.userns import IdMapping, IdRange, run_in_userns
from sdpod.network import netlink

pytestmark = pytest.mark.namespaces

MAPPING = IdMapping(uids=(IdRange(0, os.getuid(), 1),), gids=(IdRange(0, os.getgid(), 1),))
IFF_UP = 0x1  # <net/if.h>


def loopback_is_up() -> bool:
    from pyroute2.iproute.linux import IPRoute

    with IPRoute(groups=0) as ipr:
        (link,) = ipr.link("get", ifname="lo")
        return bool(link["flags"] & IFF_UP)


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def in_new_network(work: Callable[[], None]) -> None:
    def enter_then_work() -> None:
        syscalls.unshare(syscalls.CLONE_NEWNET)
        assert not loopback_is_up(), "a new network namespace's lo is already up"
        work()

    run_in_userns(MAPPING, enter_then_work)


def test_loopback_comes_up_and_answers_on_127_0_0_1() -> None:
    def bring_up_and_connect() -> None:
        before = open_fds()
        netlink.bring_loopback_up()
        assert open_fds() == before, "the netlink socket (or its event loop) stayed open"
        assert loopback_is_up(), "lo is still down"

        with socket.create_server(("127.0.0.1", 0)) as server:
            port = server.getsockname()[1]
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                accepted, _ = server.accept()
                accepted.close()

    in_new_network(bring_up_and_connect)


def test_without_the_right_over_the_namespace_it_fails_naming_lo() -> None:
    def fail_from_a_nested_user_namespace() -> None:
        # A process in a child user namespace holds no capability over a network
        # namespace that its parent user namespace owns (user_namespaces(7)).
        syscalls.unshare(syscalls.CLONE_NEWUSER)
        try:
            netlink.bring_loopback_up()
        except OSError as error:
            assert error.errno == errno.EPERM, error
            raise
        raise AssertionError("bringing up lo without CAP_NET_ADMIN succeeded")

    with pytest.raises(RuntimeSetupError, match=r"failed to bring up lo: Operation not permitted"):
        in_new_network(fail_from_a_nested_user_namespace)
