"""Where an image's files are written and deleted: here as root, else in a user namespace.

Rootless, an image's owners are shifted into the user's subordinate ids as its layers are
applied, and only a process in a user namespace mapping those ids may later delete them
(the same mapping `sdpod up` uses). As root, an image keeps its own ids.
"""

from __future__ import annotations

import functools
import os

from sdpod.images.store import Unpack


def default_unpack() -> Unpack | None:
    """The runner for this user: None (in this process) as root, else a user namespace."""
    if os.geteuid() == 0:
        return None
    from sdpod.kernel.userns import rootless_mapping, run_in_userns

    return functools.partial(run_in_userns, rootless_mapping())
