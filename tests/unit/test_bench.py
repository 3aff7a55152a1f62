"""The benchmark suite's own pieces: figures, the table, the probe, the PSS count.

No timing is asserted anywhere: these check that a figure is computed from its samples,
that a missing peer reads as missing (never as zero) and that the probe's conditions
tell what they claim.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

# Appended, not prepended: the installed sdpod must stay the one the other tests import.
REPO_ROOT = Path(__file__).resolve().parent.parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.append(str(REPO_ROOT))

from bench import probe, pss, report  # noqa: E402
from bench.figures import Figure, Series  # noqa: E402
from bench.work import podman_reason, require  # noqa: E402


def figure_with(peer: Series) -> Figure:
    figure = Figure("1", "start to serving", "how it was measured")
    figure.compare(figure.add(Series("sdpod up", "web", "s", [0.3, 0.1, 0.2])), figure.add(peer))
    return figure


def test_min_median_and_ratio_come_from_the_samples() -> None:
    figure = figure_with(Series("podman run -d", "web", "s", [0.4, 0.5, 0.1]))
    ours = figure.series[0]
    assert (ours.minimum(), ours.median()) == (0.1, 0.2)
    [(_, _, ratio)] = figure.ratios()
    assert ratio == pytest.approx(0.2 / 0.4)
    assert figure.complete()


def test_a_missing_peer_is_reported_missing_never_zero() -> None:
    figure = figure_with(Series("podman run -d", "web", "s", reason="missing: podman"))
    [(_, _, ratio)] = figure.ratios()
    assert ratio is None
    document = figure.to_json()
    assert document["series"][1]["median"] is None
    assert document["series"][1]["reason"] == "missing: podman"
    assert document["ratios"][0]["ratio"] is None
    text = report.table([figure])
    assert "missing: podman" in text
    assert "0.00" not in text and " 0 ms" not in text
    assert figure.complete()


def test_a_series_with_neither_samples_nor_reason_is_incomplete() -> None:
    assert not figure_with(Series("podman run -d", "web", "s")).complete()
    assert Figure("6", "network", "iperf3", reason="not built (issue 7)").complete()


def test_the_table_and_the_json_carry_the_same_figures(tmp_path: Path) -> None:
    figure = figure_with(Series("podman run -d", "web", "s", [0.4]))
    out = tmp_path / "bench.json"
    report.write_json(out, {"cpus": 2}, [figure])
    document = json.loads(out.read_text())
    assert document["machine"] == {"cpus": 2}
    [saved] = document["figures"]
    assert saved["method"] == "how it was measured"
    assert saved["series"][0]["median"] == 0.2
    text = report.table([figure])
    assert "200 ms" in text and "400 ms" in text and "0.50" in text


def test_peers_absent_from_path_read_as_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert require("crun").startswith("missing")

    class NoTools:
        def has(self, tool: str) -> bool:
            return require(tool) == ""

    assert podman_reason(NoTools()).startswith("missing")  # type: ignore[arg-type]


@pytest.fixture
def server() -> Iterator[int]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()


def test_probe_counts_any_http_response_as_serving(server: int) -> None:
    assert probe.answers(server)


def test_probe_does_not_count_a_closed_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert not probe.answers(port)


def test_probe_waits_for_a_populated_cgroup_to_empty(tmp_path: Path) -> None:
    events = tmp_path / "user@1.service" / "a.slice" / "sdpod-x.service" / "cgroup.events"
    events.parent.mkdir(parents=True)
    pattern = str(tmp_path / "**" / "sdpod-x.service" / "cgroup.events")
    events.write_text("populated 1\nfrozen 0\n")
    assert not probe.cgroup_gone(pattern)
    events.write_text("populated 0\nfrozen 0\n")
    assert probe.cgroup_gone(pattern)
    events.unlink()
    assert probe.cgroup_gone(pattern)


def test_probe_reports_a_failing_step(tmp_path: Path) -> None:
    with pytest.raises(probe.ProbeError, match="status 1"):
        probe.run_step({"argv": ["false"]}, deadline=time.monotonic() + 10)


def test_pss_counts_an_owned_process_in_the_tree(tmp_path: Path) -> None:
    leaf = tmp_path / "user@1.service" / "sdpod.slice" / "sdpod-x.service" / "supervisor"
    leaf.mkdir(parents=True)
    (leaf / "cgroup.procs").write_text(f"{os.getpid()}\n")
    me = os.getuid()
    total, names = pss.manager_pss(tmp_path, lambda uid: uid == me, pss.is_sdpod)
    assert total > 0
    assert len(names) == 1
    assert pss.manager_pss(tmp_path, lambda uid: uid == me, pss.is_other)[0] == 0
    assert pss.manager_pss(tmp_path, lambda uid: False, pss.is_sdpod)[0] == 0
