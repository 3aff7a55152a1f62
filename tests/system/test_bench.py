"""CI's smoke run of the benchmark suite: the smallest sizes, one round.

`bench/run.py` boots a sandbox host of its own (user `sdpod-bench`), so this test needs
root but not the `sandbox` fixture. It asserts only that every item of issue 8 produced
a figure for each subject or a stated reason (a missing peer says "missing"); it asserts
no time, and is able to fail: a subject with neither samples nor reason fails it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sandbox import SandboxError, check_prerequisites

pytestmark = pytest.mark.system

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
ITEMS = {"1", "2", "3", "4", "5", "6"}
SMOKE_TIMEOUT = 240


@pytest.fixture
def can_boot() -> None:
    try:
        check_prerequisites()
    except SandboxError as e:
        if os.environ.get("CI"):
            pytest.fail(f"cannot boot the sandbox host on CI: {e}")
        pytest.skip(f"cannot boot the sandbox host: {e}")


def test_quick_run_gives_a_figure_or_a_reason_for_every_item(
    can_boot: None, tmp_path: Path
) -> None:
    out = tmp_path / "bench.json"
    argv = [sys.executable, str(REPO_ROOT / "bench" / "run.py"), "--quick", "--rounds", "1"]
    argv += ["--max-n", "1", "--json", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=SMOKE_TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr

    document = json.loads(out.read_text())
    assert document["machine"]["kernel"] == os.uname().release
    figures = {figure["key"]: figure for figure in document["figures"]}
    assert set(figures) == ITEMS
    for figure in figures.values():
        if figure["reason"]:
            continue
        assert figure["series"], figure
        for series in figure["series"]:
            has_figure = series["median"] is not None and series["min"] <= series["median"]
            assert has_figure or series["reason"], (figure["key"], series)
            # Nothing at all is a figure only where no process may run yet.
            may_be_nothing = series["work"].endswith("before a connection")
            assert may_be_nothing or series["median"] != 0, (figure["key"], series)
    for figure in document["figures"]:
        assert figure["title"] in done.stdout
