"""The same bundle run by `sdpod runtime run`, `crun run` and `runc run`: the probe inside
must see the same, key by key, as root and rootless.

Each bundle is `sdpod runtime spec [--rootless]`'s, with the busybox test image's files
and the probe, and for the "rich" bundles most of the process and linux fields sdpod
executes. The only differences allowed are those in DOCUMENTED, each with its reason.
Root is needed for the comparison environment (tests/namespaces/peers.py); rootless
runs use `sdpod-test`, whom the sandbox set-up gives subordinate ids.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.probe import ProbeUnavailable, build

from namespaces import peers
from sdpod.runtime.default_spec import default_spec
from sdpod.runtime.seccomp_profile import default_profile

pytestmark = [
    pytest.mark.namespaces,
    pytest.mark.skipif(os.geteuid() != 0, reason="makes mount namespaces and cgroups: root"),
]

HOST_UID_BASE = 100000  # sdpod-test's first subordinate id (the sandbox set-up's)
RICH_CAPABILITIES = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN"]


@dataclass(frozen=True)
class Difference:
    """Keys (a regular expression) on which `peers` see otherwise, and why."""

    keys: str
    peers: tuple[str, ...]
    reason: str
    modes: tuple[str, ...] = ("root", "rootless")
    bundles: tuple[str, ...] = ("default", "rich")


DOCUMENTED = (
    Difference(
        r"propagation\..*",
        ("runc",),
        "without rootfsPropagation, runc makes the container's mounts slaves of the host's "
        "(rslave); sdpod, as crun, keeps them private: the OCI spec sets no default",
        bundles=("default",),
    ),
    Difference(
        r"propagation\./",
        ("crun",),
        "crun 1.8.1 leaves the root's mount private whatever rootfsPropagation asks; sdpod "
        "and runc make it a slave as asked",
        bundles=("rich",),
    ),
    Difference(
        r"propagation\./proc/(keys|timer_list)",
        ("crun",),
        "crun binds the host's /dev/null over masked files and leaves the bind in the "
        "peer group of the host's /dev (shared as root, a slave rootless) where the root's "
        "propagation is not recursive; sdpod makes such binds private",
        bundles=("rich",),
    ),
    Difference(
        r"propagation\./(proc/(keys|timer_list)|dev/(null|zero|full|random|urandom|tty))",
        ("runc",),
        "rootless, runc's binds of the host's devices and of /dev/null over masked files "
        "stay slaves of the host's /dev where the root's propagation is not recursive; "
        "sdpod makes such binds private",
        modes=("rootless",),
        bundles=("rich",),
    ),
    Difference(
        r"(mount|mountdata|propagation)\./sys/fs/cgroup(#\d)?",
        ("crun", "runc"),
        "rootless, /sys is the host's, bound, and brings the host's cgroup2 along, on which "
        "the container's own cannot be mounted (EBUSY): sdpod remounts it read-only, as for "
        "its containers on the host's network; runc hides it under an empty tmpfs; crun "
        "mounts the container's cgroup2 over a tmpfs",
        modes=("rootless",),
        bundles=("rich",),
    ),
    Difference(
        r"groups",
        ("runc",),
        "rootless, runc 1.1.5 never calls setgroups(2) and leaves the caller's "
        "supplementary groups (the user's own group, root's inside); sdpod and crun set "
        "the spec's list, here empty",
        modes=("rootless",),
        bundles=("rich",),
    ),
    Difference(
        r"dev\.core",
        ("crun",),
        "crun adds /dev/core -> /proc/kcore, a link the OCI spec does not list; "
        "/proc/kcore is masked anyway",
    ),
    Difference(
        r"domainname",
        ("runc",),
        "runc 1.1.5 does not set the spec's domainname (its support came with runc 1.2)",
    ),
    Difference(
        r"env\.HOME",
        ("crun",),
        "crun sets HOME only for a user found in the image's /etc/passwd; sdpod, as runc, "
        "falls back to /",
    ),
    Difference(
        r"dev\.null",
        ("crun",),
        "crun gives /dev/null to the process's user when that is not root; sdpod and runc "
        "leave it root's, mode 0666",
        ("root",),
    ),
    Difference(
        r"mountdata\./sys",
        ("crun",),
        "crun mounts sysfs read-write and makes only the mount read-only; sdpod and runc "
        "mount it read-only (the per-mount options, compared apart, agree)",
        ("root",),
    ),
    Difference(
        r"mountdata\./(proc/acpi|proc/scsi|sys/firmware|sys/dev/block)",
        ("crun", "runc"),
        "masked directories are empty read-only tmpfs mounts in all three, but their "
        "superblock options differ: sdpod gives size=0, crun no read-only superblock, runc "
        "no size",
    ),
    Difference(
        r"mount(data)?\./proc/(keys|timer_list|kcore|latency_stats|timer_stats|sched_debug)",
        ("crun", "runc"),
        "masked files have /dev/null bound over them: sdpod and crun bind the host's "
        "(devtmpfs), runc the container's (tmpfs); crun also makes the bind read-only",
    ),
    Difference(
        r"mount\./dev/(null|zero|full|random|urandom|tty|net/tun)",
        ("crun",),
        "rootless, the host's devices are bound in: crun adds nosuid and noexec to those "
        "binds, sdpod and runc bind them plainly",
        ("rootless",),
    ),
    Difference(
        r"cgroup\.unified",
        ("crun", "runc"),
        "rootless, crun and runc leave the container in its caller's cgroup when they may "
        "not make cgroupsPath at the root; sdpod makes it below the caller's delegated "
        "cgroup, so that kill --all and delete reach the container's processes alone",
        ("rootless",),
    ),
)


def documented(key: str, runtime: str, mode: str, bundle: str) -> Difference | None:
    for difference in DOCUMENTED:
        if (
            runtime in difference.peers
            and mode in difference.modes
            and bundle in difference.bundles
            and re.fullmatch(difference.keys, key)
        ):
            return difference
    return None


def relative_namespaces(seen: dict[str, str]) -> dict[str, str]:
    """Namespace inode numbers differ from run to run: what counts is whether the
    container shares the host's namespace or has its own."""
    result = dict(seen)
    for key, value in seen.items():
        if key.startswith("ns."):
            host = os.stat(f"/proc/self/ns/{key[3:]}").st_ino
            result[key] = "host" if value == str(host) else "own"
    return result


def undocumented_differences(
    sdpod: dict[str, str], peer: dict[str, str], runtime: str, mode: str, bundle: str
) -> list[str]:
    ours, theirs = relative_namespaces(sdpod), relative_namespaces(peer)
    problems = []
    for key in sorted(set(ours) | set(theirs)):
        mine, other = ours.get(key, "<absent>"), theirs.get(key, "<absent>")
        if mine != other and documented(key, runtime, mode, bundle) is None:
            problems.append(f"{key}: sdpod {mine!r}, {runtime} {other!r}")
    return problems


# -- the bundles -------------------------------------------------------------------------


def default_bundle(user: Any) -> dict[str, Any]:
    if user is None:
        return peers.with_probe(default_spec(False))
    return peers.with_probe(default_spec(True, user.pw_uid, user.pw_gid))


def rich_bundle(user: Any) -> dict[str, Any]:
    """Most of what sdpod executes: another user, every capability set, limits, umask,
    OOM score, names, sysctl, rootfs propagation, seccomp without no_new_privs (loaded
    before the capabilities go), and as root supplementary groups and a device.

    Rootless, runc 1.1.5 refuses supplementary groups and crun 1.8.1 fails on any
    device (`unshare CLONE_NEWNS: Operation not permitted`): sdpod's rootless groups
    and devices are checked by the `extras` bundle, which only sdpod runs.
    """
    spec = default_bundle(user)
    spec["process"]["args"].append("/proc/sys/net/ipv4/ip_forward")
    spec["process"]["user"] = {"uid": 1000, "gid": 1000, "umask": 0o027}
    spec["process"]["rlimits"] = [
        {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
        {"type": "RLIMIT_NPROC", "soft": 512, "hard": 512},
    ]
    caps = RICH_CAPABILITIES
    spec["process"]["capabilities"] = {
        "bounding": caps,
        "permitted": caps[:3],
        "effective": caps[:2],
        "inheritable": caps[1:3],
        "ambient": caps[1:3],
    }
    spec["process"]["oomScoreAdj"] = 100
    spec["process"]["noNewPrivileges"] = False
    spec["process"]["cwd"] = "/tmp"
    spec["process"]["env"].append("GREETING=hello")
    spec["hostname"] = "peer"
    spec["domainname"] = "example.org"
    spec["root"]["readonly"] = False
    linux = spec["linux"]
    linux["rootfsPropagation"] = "slave"
    linux["sysctl"] = {"net.ipv4.ip_forward": "1"}
    linux["seccomp"] = default_profile(caps)
    kinds = [entry["type"] for entry in linux["namespaces"]]
    linux["namespaces"] += [{"type": kind} for kind in ("network", "cgroup") if kind not in kinds]
    if user is None:
        spec["process"]["user"]["additionalGids"] = [10, 20]
        device = {"path": "/dev/sdpod-null", "type": "c", "major": 1, "minor": 3}
        linux["devices"] = [{**device, "fileMode": 0o640, "uid": 0, "gid": 10}]
    else:
        # The user's subordinate ids, through newuidmap and newgidmap.
        for key, own in (("uidMappings", user.pw_uid), ("gidMappings", user.pw_gid)):
            linux[key] = [
                {"containerID": 0, "hostID": own, "size": 1},
                {"containerID": 1, "hostID": HOST_UID_BASE, "size": 65536},
            ]
    return spec


def extras_bundle(user: Any) -> dict[str, Any]:
    """The rich bundle with supplementary groups and a device rootless too: the host's
    node at the same path, bound in, since a user namespace may not make one."""
    spec = rich_bundle(user)
    spec["process"]["user"]["additionalGids"] = [10, 20]
    if user is not None:
        spec["linux"]["devices"] = [
            {"path": "/dev/net/tun", "type": "c", "major": 10, "minor": 200}
        ]
    return spec


BUNDLES: dict[str, Callable[[Any], dict[str, Any]]] = {
    "default": default_bundle,
    "rich": rich_bundle,
    "extras": extras_bundle,
}
COMPARED = ("default", "rich")


# -- running them ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def probe_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        return build(tmp_path_factory.mktemp("probe"))
    except ProbeUnavailable as error:
        pytest.skip(str(error))


Observe = Callable[[str, str, str], dict[str, str]]


@pytest.fixture(scope="module")
def observe(probe_binary: Path) -> Iterator[Observe]:
    """What the probe sees for (bundle, mode, runtime), each run once."""
    workspaces: dict[str, peers.Workspace] = {}
    seen: dict[tuple[str, str, str], dict[str, str]] = {}

    def run(kind: str, mode: str, runtime: str) -> dict[str, str]:
        reason = peers.missing(runtime)
        if reason:
            pytest.skip(reason)
        user = None
        if mode == "rootless":
            user = peers.rootless_user()
            if user is None:
                pytest.skip(f"no user {peers.ROOTLESS_USER} (the sandbox set-up makes it)")
        if (kind, mode, runtime) not in seen:
            if mode not in workspaces:
                workspaces[mode] = peers.Workspace(user)
            workspace = workspaces[mode]
            bundle = workspace.path / kind
            if not bundle.exists():
                workspace.bundle(kind, BUNDLES[kind](user), probe_binary)
            peer = peers.Peer(runtime, user)
            seen[kind, mode, runtime] = peers.probe(peer, workspace, bundle)
        return copy.deepcopy(seen[kind, mode, runtime])

    yield run
    for workspace in workspaces.values():
        workspace.remove()


@pytest.mark.parametrize("runtime", ["crun", "runc"])
@pytest.mark.parametrize("mode", ["root", "rootless"])
@pytest.mark.parametrize("kind", COMPARED)
def test_a_peer_sees_what_sdpod_sees(observe: Observe, kind: str, mode: str, runtime: str) -> None:
    ours = observe(kind, mode, "sdpod")
    theirs = observe(kind, mode, runtime)
    problems = undocumented_differences(ours, theirs, runtime, mode, kind)
    assert not problems, "\n".join(problems)


def test_every_documented_difference_names_a_peer_and_a_reason() -> None:
    for difference in DOCUMENTED:
        assert difference.peers and set(difference.peers) <= {"crun", "runc"}
        assert len(difference.reason) > 40
        re.compile(difference.keys)


# -- what sdpod shows by itself, whatever the peers do -----------------------------------


def _mask(names: list[str]) -> str:
    from sdpod.kernel.capabilities import mask_of

    return f"{mask_of(names):016x}"


@pytest.mark.parametrize("mode", ["root", "rootless"])
def test_the_rich_bundle_is_executed_field_by_field(observe: Observe, mode: str) -> None:
    seen = observe("extras", mode, "sdpod")
    assert seen["uid"] == "1000 1000 1000" and seen["gid"] == "1000 1000 1000"
    assert seen["groups"] == "10,20"
    assert seen["umask"] == "0027"
    assert seen["rlimit.NOFILE"] == "512 1024" and seen["rlimit.CORE"] == "0 0"
    caps = RICH_CAPABILITIES
    assert seen["cap.bounding"] == _mask(caps)
    # A user other than root keeps across exec only the ambient set (capabilities(7)).
    assert seen["cap.ambient"] == seen["cap.permitted"] == seen["cap.effective"] == _mask(caps[1:3])
    assert seen["cap.inheritable"] == _mask(caps[1:3])
    assert seen["oom_score_adj"] == "100"
    assert (seen["hostname"], seen["domainname"]) == ("peer", "example.org")
    assert seen["file./proc/sys/net/ipv4/ip_forward"] == "1"
    assert seen["seccomp"] == "2" and seen["no_new_privs"] == "0"
    assert seen["cwd"] == "/tmp" and seen["env.GREETING"] == "hello"
    assert seen["propagation./"] == "slave"
    assert seen["fds"] == ""
    if mode == "root":
        assert seen["dev.sdpod-null"] == "c 0640 0:10 1:3"
    else:
        assert seen["mount./dev/net/tun"].startswith("devtmpfs ")


def test_the_default_bundle_runs_as_root_with_three_capabilities(observe: Observe) -> None:
    seen = observe("default", "root", "sdpod")
    three = _mask(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"])
    assert seen["uid"] == "0 0 0"
    assert seen["cap.effective"] == seen["cap.bounding"] == three
    assert seen["pid"] == "1" and seen["root_writable"] == "no"
    assert seen["rlimit.NOFILE"] == "1024 1024" and seen["no_new_privs"] == "1"
    assert relative_namespaces(seen)["ns.net"] == "own"
