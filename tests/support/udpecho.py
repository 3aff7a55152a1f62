"""A static UDP echo server for test images (udpecho.c), built with the host's compiler.

busybox's `nc` in Debian's busybox-static speaks TCP only, and no applet listens on UDP.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SOURCE = Path(__file__).with_name("udpecho.c")


def build_udp_echo(dest: Path) -> str | None:
    """Compile udpecho.c into a static binary at `dest`; None, or why it cannot be built."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return "no C compiler to build the UDP echo server (apt install gcc libc6-dev)"
    argv = [compiler, "-static", "-Os", "-s", "-Wall", "-o", str(dest), str(SOURCE)]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return f"failed to build the UDP echo server: {result.stderr.strip()}"
    return None
