"""sdpod's benchmark suite (issue 8): run `sudo python3 bench/run.py [--quick] [--json OUT]`.

The suite reuses the tests' sandbox host and image builder, which live in tests/.
"""

import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parent.parent / "tests")
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
