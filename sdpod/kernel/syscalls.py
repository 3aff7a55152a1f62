"""The one boundary between sdpod and the kernel's system calls that Python lacks.

Python 3.11 has no `os.unshare`, `os.setns`, `mount` or `pivot_root`; these wrappers
call libc through cffi. Each checks the result and raises `OSError(errno, strerror,
path)` through `_check`, so a failure always names the call and the path it was about.
Constants are spelled as in the kernel's headers.

This module must stay importable between fork and exec: it imports only the
pre-parsed declarations of `_libc` (cffi's backend) and os.
"""

from __future__ import annotations

import errno
import os

from sdpod.kernel._libc import ffi as _ffi

# <sched.h>
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080

# <sys/mount.h>
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MNT_DETACH = 2

# <linux/mount.h>: the file-descriptor-based mount calls, which glibc 2.36 does not wrap.
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 0x00000004
MOUNT_ATTR_IDMAP = 0x00100000
AT_RECURSIVE = 0x8000
AT_EMPTY_PATH = 0x1000
AT_FDCWD = -100
# Their numbers are the same on every architecture that has them (asm-generic/unistd.h).
_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
_SYS_MOUNT_SETATTR = 442

# <linux/prctl.h>
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

# <linux/capability.h>: version 3 takes two 32-bit words per set.
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

# pivot_root has no glibc wrapper; its number differs between architectures.
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}

# The declarations were parsed once, ahead of time (see ffi_build.py).
_libc = _ffi.dlopen(None)


def _check(result: int, call: str, path: str | None = None) -> None:
    if result == -1:
        err = _ffi.errno
        detail = f"{call} failed: {os.strerror(err)}"
        raise OSError(err, detail, path) if path else OSError(err, detail)


def _cstr(value: str | None) -> object:
    return _ffi.NULL if value is None else value.encode()


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def mount(
    source: str | None,
    target: str,
    fstype: str | None = None,
    flags: int = 0,
    data: str | None = None,
) -> None:
    result = _libc.mount(_cstr(source), target.encode(), _cstr(fstype), flags, _cstr(data))
    _check(result, f"mount {fstype or 'bind'} {source or ''}".rstrip(), target)


def umount(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(target.encode(), flags), "umount2", target)


def pivot_root(new_root: str, put_old: str) -> None:
    number = _SYS_PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        raise OSError(errno.ENOSYS, f"pivot_root: unknown on {os.uname().machine}")
    result = _libc.syscall(
        _ffi.cast("long", number),
        _ffi.new("char[]", new_root.encode()),
        _ffi.new("char[]", put_old.encode()),
    )
    _check(result, "pivot_root", new_root)


def _syscall(number: int, *args: object) -> int:
    result: int = _libc.syscall(_ffi.cast("long", number), *args)
    return result


def open_tree(path: str, flags: int) -> int:
    """A detached copy of the mount tree at `path` (open_tree(2)), as a file descriptor."""
    path_arg = _ffi.new("char[]", path.encode())
    fd = _syscall(
        _SYS_OPEN_TREE, _ffi.cast("int", AT_FDCWD), path_arg, _ffi.cast("unsigned", flags)
    )
    _check(fd, "open_tree", path)
    return fd


def idmap_mount(mount_fd: int, userns_fd: int, recursive: bool = True) -> None:
    """Give a detached mount the id mapping of a user namespace (mount_setattr(2))."""
    attr = _ffi.new("struct mount_attr *")
    attr.attr_set = MOUNT_ATTR_IDMAP
    attr.userns_fd = userns_fd
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    result = _syscall(
        _SYS_MOUNT_SETATTR,
        _ffi.cast("int", mount_fd),
        _ffi.new("char[]", b""),
        _ffi.cast("unsigned", flags),
        attr,
        _ffi.cast("size_t", _ffi.sizeof("struct mount_attr")),
    )
    _check(result, "mount_setattr")


def move_mount(mount_fd: int, target: str) -> None:
    """Attach a detached mount at `target` (move_mount(2))."""
    result = _syscall(
        _SYS_MOVE_MOUNT,
        _ffi.cast("int", mount_fd),
        _ffi.new("char[]", b""),
        _ffi.cast("int", AT_FDCWD),
        _ffi.new("char[]", target.encode()),
        _ffi.cast("unsigned", MOVE_MOUNT_F_EMPTY_PATH),
    )
    _check(result, "move_mount", target)


def sethostname(name: str) -> None:
    encoded = name.encode()
    _check(_libc.sethostname(encoded, len(encoded)), "sethostname")


def setdomainname(name: str) -> None:
    encoded = name.encode()
    _check(_libc.setdomainname(encoded, len(encoded)), "setdomainname")


def prctl(option: int, arg2: int = 0, arg3: int = 0) -> int:
    result: int = _libc.prctl(option, arg2, arg3, 0, 0)
    _check(result, "prctl")
    return result


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set the calling thread's capability sets, each a bit mask by number (capset(2))."""
    header = _ffi.new("struct __user_cap_header_struct *", [_LINUX_CAPABILITY_VERSION_3, 0])
    data = _ffi.new("struct __user_cap_data_struct[2]")
    for word in (0, 1):
        shift = 32 * word
        data[word].effective = (effective >> shift) & 0xFFFFFFFF
        data[word].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[word].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    _check(_libc.capset(header, data), "capset")


# <linux/sockios.h> and <net/if.h>, for bringing up a link without netlink.
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def set_link_up(name: str) -> None:
    """Bring up a network interface of the current network namespace (netdevice(7)).

    An ioctl rather than rtnetlink through pyroute2, which issue 7 names: any import of
    pyroute2 loads the whole library, and made every container start 88 ms slower
    (measured: 100 ms to 188 ms for the launcher). The link flag is all the init sets;
    the network helpers configure their own device.
    """
    import fcntl
    import socket
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sh", name.encode(), 0)
        flags = struct.unpack("16sh", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sh", name.encode(), flags | IFF_UP))
