"""What every namespace test shares: who may run them, and the id mapping they use."""

from __future__ import annotations

import os
import shutil

import pytest

from sdpod.kernel.userns import IdMapping, IdRange

MARKS = [
    pytest.mark.namespaces,
    pytest.mark.skipif(os.geteuid() != 0, reason="writes id maps and cgroups, which needs root"),
    pytest.mark.skipif(
        not (shutil.which("slirp4netns") and shutil.which("tini-static")),
        reason="needs slirp4netns and tini-static (scripts/install installs both)",
    ),
]

# Root of the container is root outside: the tests run as root without /etc/subuid.
MAPPING = IdMapping(
    uids=(IdRange(0, 0, 1), IdRange(1, 300000, 65536)),
    gids=(IdRange(0, 0, 1), IdRange(1, 300000, 65536)),
)
