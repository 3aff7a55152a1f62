"""The committed, pre-parsed C declarations match what ffi_build generates from them."""

from __future__ import annotations

from pathlib import Path

from sdpod.kernel import ffi_build


def test_committed_libc_module_is_what_ffi_build_generates(tmp_path: Path) -> None:
    generated = tmp_path / "_libc.py"
    ffi_build.generate(generated)
    committed = Path(ffi_build.__file__).with_name("_libc.py")
    assert committed.read_text() == generated.read_text(), (
        "sdpod/kernel/_libc.py is stale: run `python -m sdpod.kernel.ffi_build`"
    )


def test_the_launcher_path_no_longer_parses_c() -> None:
    import subprocess
    import sys

    code = "import sys, sdpod.kernel.syscalls; print('pycparser' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
