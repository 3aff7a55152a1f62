"""The one place errors become messages: an OSError no layer explained is no traceback."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from sdpod import lifecycle
from sdpod.cli import main as cli_main


def test_a_full_disk_is_reported_in_one_line_with_a_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def full_disk(*_: object, **__: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "config.json"))

    monkeypatch.setattr(lifecycle, "up", full_disk)
    monkeypatch.setattr("sys.argv", ["sdpod", "up", str(tmp_path / "web.toml")])

    with pytest.raises(SystemExit) as exit_:
        cli_main.main()

    assert exit_.value.code == cli_main.EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("error: [Errno 28] No space left on device")
    assert "hint: free some space" in err
    assert "Traceback" not in err


def test_version_is_the_installed_package_s(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from importlib.metadata import version

    monkeypatch.setattr("sys.argv", ["sdpod", "--version"])
    cli_main.main()  # returns: exit status 0

    assert capsys.readouterr().out == f"sdpod {version('sdpod')}\n"
