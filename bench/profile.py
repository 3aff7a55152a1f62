"""Profile one `sdpod up` of the web TOML (or one `sdpod image pull`) with pyinstrument.

    sudo python3 bench/profile.py [--venv /opt/sdpod-profile] [--flat] [--pull]

pyinstrument is not sdpod's dependency: it comes from a scratch venv made with Debian's
Python (readable by every user), for example

    /usr/bin/python3 -m venv /opt/sdpod-profile
    /opt/sdpod-profile/bin/pip install pyinstrument
    chmod -R a+rX /opt/sdpod-profile

and joins the installed sdpod's own interpreter through PYTHONPATH (the unit's launcher
runs under the CLI's sys.executable, which must stay sdpod's). It samples the CLI
process only: the launcher runs as the unit's own process and is not in this profile;
its share is the wait for the start job (until READY=1), which `sdpod up` spends polling.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.host import BENCH_USER, Bench, SandboxHost, free_port
from bench.registry import Registry
from bench.work import build_image, sdpod_down, web_toml

Completed = subprocess.CompletedProcess[str]

SDPOD_PYTHON = "/opt/sdpod/venv/bin/python"
SDPOD = "/opt/sdpod/venv/bin/sdpod"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", default="/opt/sdpod-profile", help="has pyinstrument")
    parser.add_argument("--interval", default="0.0002", help="sampling interval, seconds")
    parser.add_argument("--flat", action="store_true", help="a flat list, not a tree")
    parser.add_argument("--pull", action="store_true", help="profile `sdpod image pull`")
    options = parser.parse_args(argv)
    sites = sorted(Path(options.venv).glob("lib/python3*/site-packages"))
    if not sites:
        print(f"bench: failed to profile: {options.venv} has no site-packages", file=sys.stderr)
        return 1

    profile = [SDPOD_PYTHON, "-m", "pyinstrument", "-i", options.interval, "-r", "text"]
    profile += ["-p", "flat=true"] if options.flat else []
    profile = ["env", f"PYTHONPATH={sites[0]}", *profile, "--show", "*/sdpod/*", SDPOD]
    with SandboxHost(BENCH_USER, nosub_user=None) as host:
        bench = Bench(host, 1, True, [1])
        bench.prepare()
        layout = build_image(bench)
        run = profile_pull if options.pull else profile_up
        done = run(bench, layout, profile)
    print(done.stdout, done.stderr, sep="\n")
    return done.returncode


def profile_up(bench: Bench, layout: Path, profile: list[str]) -> Completed:
    toml = web_toml(bench, "profiled", free_port())
    try:
        return bench.host.run_as_user([*profile, "up", str(toml)], check=False)
    finally:
        sdpod_down(bench, [toml])


def profile_pull(bench: Bench, layout: Path, profile: list[str]) -> Completed:
    with tempfile.TemporaryDirectory(prefix="sdpod-bench-registry-") as scratch:
        registry = Registry(Path(scratch))
        try:
            reference = registry.push(layout, "busybox")
            pull = ["image", "--root", str(bench.work / "store"), "pull", "--tls-verify=false"]
            return bench.host.run_as_user([*profile, *pull, reference], check=False)
        finally:
            registry.stop()


if __name__ == "__main__":
    sys.exit(main())
