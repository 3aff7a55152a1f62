"""The default `config.json` of `sdpod runtime spec`, as `crun spec` and `runc spec` make
theirs: a pure function.

It runs `sh` on a terminal in a read-only root, with three capabilities and new pid,
network, ipc, uts and mount namespaces. `rootless` adds a user namespace mapping the
caller's own ids to root, and, as the peers do, gives up what a user namespace may not
have: the network namespace (nobody could configure it) and a sysfs of its own (the
host's is bound instead), and the tty group on /dev/pts, which is not mapped.
"""

from __future__ import annotations

from typing import Any

from sdpod.runtime.spec import DEFAULT_PATH, MASKED_PATHS, OCI_VERSION, READONLY_PATHS

CAPABILITIES = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
NOFILE = 1024
# The tty group of Debian and most distributions, for /dev/pts (devpts(5)).
TTY_GID = 5


def default_spec(rootless: bool, uid: int = 0, gid: int = 0) -> dict[str, Any]:
    """The default configuration; `uid` and `gid` are the caller's, mapped to root when
    `rootless`."""
    namespaces = ["pid", "network", "ipc", "uts", "mount"]
    linux: dict[str, Any] = {}
    if rootless:
        namespaces = [kind for kind in namespaces if kind != "network"] + ["user"]
        linux["uidMappings"] = [{"containerID": 0, "hostID": uid, "size": 1}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": gid, "size": 1}]
    linux["namespaces"] = [{"type": kind} for kind in namespaces]
    linux["maskedPaths"] = list(MASKED_PATHS)
    linux["readonlyPaths"] = list(READONLY_PATHS)
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [f"PATH={DEFAULT_PATH}", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                kind: list(CAPABILITIES) for kind in ("bounding", "effective", "permitted")
            }
            | {"inheritable": [], "ambient": list(CAPABILITIES)},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": NOFILE, "soft": NOFILE}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "sdpod",
        "mounts": _mounts(rootless),
        "linux": linux,
    }


def _mount(destination: str, kind: str, source: str, options: list[str]) -> dict[str, Any]:
    return {"destination": destination, "type": kind, "source": source, "options": options}


def _mounts(rootless: bool) -> list[dict[str, Any]]:
    devpts = ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]
    sysfs = ["nosuid", "noexec", "nodev", "ro"]
    shm = ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]
    return [
        _mount("/proc", "proc", "proc", []),
        _mount("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        _mount("/dev/pts", "devpts", "devpts", devpts + ([] if rootless else [f"gid={TTY_GID}"])),
        _mount("/dev/shm", "tmpfs", "shm", shm),
        _mount("/dev/mqueue", "mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
        _mount("/sys", "none", "/sys", ["rbind", *sysfs])
        if rootless
        else _mount("/sys", "sysfs", "sysfs", sysfs),
        _mount("/sys/fs/cgroup", "cgroup", "cgroup", [*sysfs[:3], "relatime", "ro"]),
    ]
