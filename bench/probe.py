"""Time a sequence of commands from inside the sandbox, as the user who runs them.

The benchmark host enters the sandbox once per measurement (nsenter and setpriv cost a
few milliseconds that belong to neither tool) and runs this script there, so that the
clock starts right before the first command and stops at the condition asked for.
Standard library only: it runs under Debian's /usr/bin/python3, which every user can run.

Input on stdin, JSON:
    {"timeout": 60, "steps": [{"argv": [...], "port": 8080, "gone": "GLOB"}, ...]}
Each step runs `argv` to completion (a non-zero exit fails the measurement), then, with
`port`, waits until an HTTP GET of 127.0.0.1:port answers; with `gone`, waits until the
cgroup whose `cgroup.events` matches GLOB is empty or removed. Output on stdout, JSON:
    {"seconds": total, "steps": [seconds, ...]}  or  {"error": "..."}
"""

from __future__ import annotations

import glob
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

POLL_SECONDS = 0.002


class ProbeError(Exception):
    """A step failed or its condition did not come true in time."""


def answers(port: int) -> bool:
    # A port forwarder may accept a connection before the container listens and then
    # drop it: only an HTTP response proves that the service serves.
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as response:
            response.read()
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, urllib.error.URLError):
        return False


def cgroup_gone(pattern: str) -> bool:
    for events in glob.glob(pattern, recursive=True):
        try:
            with open(events) as f:
                if "populated 1" in f.read():
                    return False
        except FileNotFoundError:
            continue
    return True


def wait(condition: Any, deadline: float, what: str) -> None:
    while not condition():
        if time.monotonic() > deadline:
            raise ProbeError(f"timed out waiting for {what}")
        time.sleep(POLL_SECONDS)


def run_step(step: dict[str, Any], deadline: float) -> None:
    argv = step["argv"]
    timeout = max(deadline - time.monotonic(), 1.0)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        output = (done.stderr or done.stdout).strip()[-2000:]
        raise ProbeError(f"{' '.join(argv)} exited with status {done.returncode}: {output}")
    if "port" in step:
        wait(lambda: answers(step["port"]), deadline, f"port {step['port']} to answer")
    if "gone" in step:
        wait(lambda: cgroup_gone(step["gone"]), deadline, f"{step['gone']} to empty")


def main() -> int:
    request = json.load(sys.stdin)
    deadline = time.monotonic() + float(request.get("timeout", 60))
    times = []
    try:
        for step in request["steps"]:
            began = time.monotonic()
            run_step(step, deadline)
            times.append(time.monotonic() - began)
    except (ProbeError, OSError, subprocess.TimeoutExpired) as e:
        json.dump({"error": str(e)}, sys.stdout)
        return 1
    json.dump({"seconds": sum(times), "steps": times}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
