"""Run sdpod's benchmarks beside podman, crun, runc, skopeo and umoci (issue 8).

    sudo python3 bench/run.py [--quick] [--rounds R] [--max-n N] [--json OUT]

As root: boots a throwaway systemd host (tests/sandbox.py) with a user of its own,
`sdpod-bench`, runs every item as that user with sdpod as installed (scripts/install),
alternating sdpod and each peer on the same work, and prints a table of min, median and
the ratio sdpod / peer of the medians; `--json` writes the same figures. A peer missing
from the machine is reported as missing. `--quick`: 3 rounds, N up to 10, no 50 MB image.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import report
from bench.figures import Figure
from bench.host import BENCH_USER, Bench, BenchError, SandboxError, SandboxHost, machine
from bench.items import cli, images, network, resident, serving
from bench.items import exit as exit_item
from bench.work import build_image, load_podman_image, podman_reason

log = logging.getLogger("bench")
FULL_SIZES = (1, 10, 50)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 3 rounds")
    parser.add_argument("--rounds", type=int, help="rounds per item (default 5, quick 3)")
    parser.add_argument("--max-n", type=int, help="largest N of item 3 (default 50, quick 10)")
    parser.add_argument("--json", type=Path, help="write the figures as JSON to this file")
    parser.add_argument("--only", help="comma-separated item numbers to run (default: all)")
    return parser.parse_args(argv)


def sizes(options: argparse.Namespace) -> list[int]:
    largest = options.max_n or (10 if options.quick else 50)
    return [n for n in FULL_SIZES if n <= largest] or [1]


def run_items(bench: Bench, only: set[str]) -> list[Figure]:
    bench.prepare()
    layout = build_image(bench)
    www = bench.work / "www"
    ready = podman_reason(bench)
    if not ready:
        try:
            load_podman_image(bench, layout)
        except (BenchError, SandboxError, OSError) as e:
            ready = f"failed to load the image into podman: {e}"
    items: list[tuple[str, Callable[[], Figure]]] = [
        ("1", lambda: serving.measure(bench, www, ready)),
        ("2", lambda: exit_item.measure(bench, layout, ready)),
        ("3", lambda: resident.measure(bench, www, ready)[0]),
        ("4", lambda: cli.measure(bench, www, ready)),
        ("5", lambda: images.measure(bench, ready)),
        ("6", lambda: network.measure(bench, ready)),
    ]
    figures = []
    for key, item in items:
        if only and key not in only:
            continue
        log.info("item %s", key)
        figures.append(item())
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    options = parse(argv)
    logging.basicConfig(level=logging.INFO, format="bench: %(message)s")
    rounds = options.rounds or (3 if options.quick else 5)
    only = set(options.only.split(",")) if options.only else set()
    try:
        with SandboxHost(BENCH_USER, nosub_user=None) as host:
            bench = Bench(host, rounds, options.quick, sizes(options))
            figures = run_items(bench, only)
    except (SandboxError, BenchError) as e:
        print(f"bench: failed to run the benchmarks: {e}", file=sys.stderr)
        return 1

    print(report.table(figures), end="")
    if options.json:
        report.write_json(options.json, machine(), figures)
    incomplete = [f.key for f in figures if not f.complete()]
    if incomplete:
        print(f"bench: items without a figure or a reason: {incomplete}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
