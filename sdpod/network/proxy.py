"""The programs that forward published TCP ports into containers (`sdpod.units.sockets`):
systemd's socket proxy, entered into the container's namespaces by nsenter."""

from __future__ import annotations

import os
import shutil

from sdpod.errors import RuntimeSetupError

NSENTER_BINARY = "nsenter"
# Where Debian, and systemd's own install, put the proxy: it is not on PATH.
PROXY_PATHS = ("/usr/lib/systemd/systemd-socket-proxyd", "/lib/systemd/systemd-socket-proxyd")


def find_proxy() -> tuple[str, str]:
    """The paths of nsenter and systemd-socket-proxyd."""
    nsenter = shutil.which(NSENTER_BINARY)
    proxy = next((path for path in PROXY_PATHS if os.access(path, os.X_OK)), None)
    if nsenter is None or proxy is None:
        missing = NSENTER_BINARY if nsenter is None else PROXY_PATHS[0]
        raise RuntimeSetupError(
            f"failed to find {missing}, which forwards published TCP ports into containers",
            hint="install Debian's packages `systemd` and `util-linux`",
        )
    return nsenter, proxy
