"""The C declarations sdpod calls, and the generator of `sdpod/kernel/_libc.py` from them.

cffi parses C declarations with pycparser, which costs 50-65 ms at every start of the
CLI and of every container's launcher. In cffi's out-of-line ABI mode the parsing is
done once, here, and `_libc.py` holds the result as plain Python. Regenerate it after
changing the declarations:

    python -m sdpod.kernel.ffi_build

A unit test fails while the committed file differs from what this generates.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cffi

MODULE = "sdpod.kernel._libc"
DECLARATIONS = """
    int unshare(int flags);
    int setns(int fd, int nstype);
    int mount(const char *source, const char *target, const char *filesystemtype,
              unsigned long mountflags, const void *data);
    int umount2(const char *target, int flags);
    int sethostname(const char *name, size_t len);
    int setdomainname(const char *name, size_t len);
    int prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4,
              unsigned long arg5);
    long syscall(long number, ...);
    struct __user_cap_header_struct {
        uint32_t version;
        int pid;
    };
    struct __user_cap_data_struct {
        uint32_t effective;
        uint32_t permitted;
        uint32_t inheritable;
    };
    int capset(struct __user_cap_header_struct *header, struct __user_cap_data_struct *data);
    int capget(struct __user_cap_header_struct *header, struct __user_cap_data_struct *data);
    struct mount_attr {
        uint64_t attr_set;
        uint64_t attr_clr;
        uint64_t propagation;
        uint64_t userns_fd;
    };

    /* libseccomp (seccomp_init(3) and the pages it links to), opened apart. */
    typedef void *scmp_filter_ctx;
    scmp_filter_ctx seccomp_init(uint32_t def_action);
    void seccomp_release(scmp_filter_ctx ctx);
    int seccomp_arch_add(scmp_filter_ctx ctx, uint32_t arch_token);
    uint32_t seccomp_arch_native(void);
    int seccomp_syscall_resolve_name(const char *name);
    int seccomp_rule_add(scmp_filter_ctx ctx, uint32_t action, int syscall,
                         unsigned int arg_cnt, ...);
    int seccomp_load(scmp_filter_ctx ctx);
    int seccomp_attr_set(scmp_filter_ctx ctx, int attr, uint32_t value);
"""


def builder() -> cffi.FFI:
    ffi = cffi.FFI()
    ffi.cdef(DECLARATIONS)
    # None as the source: ABI mode, nothing is compiled; only the parsing is saved.
    ffi.set_source(MODULE, None)
    return ffi


def generate(destination: Path) -> None:
    builder().emit_python_code(str(destination))


if __name__ == "__main__":
    target = Path(__file__).with_name("_libc.py")
    generate(target)
    print(f"wrote {target}", file=sys.stderr)
