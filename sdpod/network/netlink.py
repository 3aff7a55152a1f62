"""Links of the current network namespace, set up through rtnetlink (pyroute2).

The container's init calls this between fork and exec, inside its new network
namespace, so the netlink socket is opened and closed there. pyroute2 is imported only
when a function here runs: its package imports the whole library, asyncio included
(about 110 ms here), which no other path may pay.
"""

from __future__ import annotations

import os

LOOPBACK = "lo"


def bring_loopback_up() -> None:
    """Bring up `lo`, which a new network namespace starts with down (rtnetlink(7)).

    Its MTU stays the kernel's 65536: nothing inside a container needs another.
    """
    from pyroute2.iproute.linux import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        # No multicast groups: this socket sends one request and reads its answer.
        with IPRoute(groups=0) as ipr:
            ipr.link("set", ifname=LOOPBACK, state="up")
    except NetlinkError as error:
        reason = os.strerror(error.code)
        raise OSError(error.code, f"failed to bring up {LOOPBACK}: {reason}") from None
