"""The observing verbs keep `sdpod --help` light."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
# DESIGN.md: `sdpod --help` must not import the D-Bus library, netlink, HTTP or the
# image code; the verbs import what they need when they run.
HEAVY = ("jeepney", "asyncio", "http", "urllib.request", "sdpod.images", "sdpod.units")
PROBE = """
import json, sys
from sdpod.cli.main import main
sys.argv = ["sdpod", *json.loads(sys.argv[1])]
code = 0
try:
    main()
except SystemExit as done:
    code = done.code
print("\\n" + json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def modules_after(args: list[str]) -> tuple[int, str, list[str]]:
    """Run the CLI of this checkout with `args` in a fresh interpreter: exit code, output
    and every module it imported."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    output, _, last = result.stdout.rstrip("\n").rpartition("\n")
    report = json.loads(last)
    return report["code"], output, report["modules"]


@pytest.mark.parametrize(
    "args",
    [["--help"], ["ps", "--help"], ["status", "--help"], ["logs", "--help"], ["doctor", "--help"]],
)
def test_help_imports_no_dbus_and_no_image_code(args: list[str]) -> None:
    code, output, modules = modules_after(args)
    assert code == 0, output
    assert "Usage:" in output
    heavy = [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert heavy == []
    # The probe does see what it looks for: the CLI's own modules are there.
    assert "sdpod.cli.ps" in modules and "click" in modules


def test_every_verb_is_listed() -> None:
    _, output, _ = modules_after(["--help"])
    for verb in ("up", "down", "ps", "status", "logs", "doctor"):
        assert f"  {verb} " in output, output
