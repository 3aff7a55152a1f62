"""Fixtures shared by every test tier.

`sandbox` is one throwaway systemd host for the whole session (tests/sandbox.py); system
tests drive sdpod as its test user. Files both sides see belong under that user's home:
`user_dir` gives each test a fresh directory there. The host's /tmp, and so pytest's
`tmp_path`, is not visible inside the sandbox.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sandbox import NOSUB_USER, SandboxError, SandboxHost, check_prerequisites


def pytest_configure(config: pytest.Config) -> None:
    # Declared in pyproject.toml as well; repeated so that running pytest from another
    # directory, or with another configuration file, still knows them.
    config.addinivalue_line(
        "markers", "namespaces: forks into a user namespace (needs uidmap and subordinate ids)"
    )
    config.addinivalue_line(
        "markers", "system: drives the real CLI against a throwaway systemd host (needs root)"
    )


@pytest.fixture(scope="session")
def sandbox() -> Iterator[SandboxHost]:
    """A booted systemd host with `sdpod-test` (subordinate ids) and `sdpod-nosub`."""
    try:
        check_prerequisites()
    except SandboxError as e:
        # CI runs as root with everything installed: a skip there would hide a broken
        # set-up, so it fails instead.
        if os.environ.get("CI"):
            pytest.fail(f"cannot boot the sandbox host on CI: {e}")
        pytest.skip(f"cannot boot the sandbox host: {e}")

    host = SandboxHost(nosub_user=NOSUB_USER)
    host.start()
    try:
        yield host
    finally:
        host.stop()


@pytest.fixture
def user_dir(sandbox: SandboxHost, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A fresh directory owned by the test user under their home, removed afterwards."""
    entry = pwd.getpwnam(sandbox.user)
    name = re.sub(r"[^\w.-]", "_", request.node.name)[:60]
    path = Path(entry.pw_dir) / "tests" / f"{name}-{secrets.token_hex(3)}"
    path.mkdir(parents=True)
    for part in (path.parent, path):
        os.chown(part, entry.pw_uid, entry.pw_gid)
    yield path
    shutil.rmtree(path, ignore_errors=True)
