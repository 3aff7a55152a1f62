"""`python -m sdpod.health check BUNDLE`: the command of a container's health service.

Like `python -m sdpod.runtime`, it stays apart from the `sdpod` command, so that a check
imports neither click nor, unless it must act, the D-Bus client.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sdpod.errors import SdpodError


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "check":
        print("usage: python -m sdpod.health check BUNDLE", file=sys.stderr)
        return 2

    from sdpod.health import check

    try:
        return check.main(Path(argv[1]))
    except (SdpodError, OSError) as error:
        # "<3>": logged at error level, above the unit's LogLevelMax=notice.
        print(f"<3>error: {error}", flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
