"""`python -m sdpod.runtime launch BUNDLE`: the command line of a container's unit.

It is kept apart from the `sdpod` command so that a unit's start imports only the
runtime, not click or the D-Bus client.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from sdpod.errors import SdpodError


def _usage() -> int:
    print("usage: python -m sdpod.runtime launch BUNDLE", file=sys.stderr)
    return 2


def main(argv: list[str]) -> int:
    debug = "--debug" in argv
    args = [arg for arg in argv if arg != "--debug"]
    if len(args) != 2 or args[0] != "launch":
        return _usage()
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO, format="%(levelname)s: %(message)s"
    )

    from sdpod.runtime import launch

    try:
        return launch.main(Path(args[1]))
    except SdpodError as error:
        print(f"error: {error}", file=sys.stderr)
        if error.hint:
            print(f"hint: {error.hint}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
