"""What `sdpod runtime` keeps of each container: a directory under the state root, as runc
and crun keep theirs, and the OCI state (runtime.md, "State") read from it.

`ROOT/ID/state.json` holds what `create` learnt (the init's PID and start time, the
bundle, the cgroup); `ROOT/ID/config.json` the configuration as run; `ROOT/ID/exec.fifo`
exists from `create` until `start` has released the init. The status is never stored:
it is what the init's process and the FIFO say now.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdpod.errors import RuntimeSetupError
from sdpod.runtime.bundle import write_atomically
from sdpod.runtime.spec import OCI_VERSION

# runc's rule for container ids, so that an id valid for one is valid for the other.
_VALID_ID = re.compile(r"[\w+.-]+")
STATE_FILE = "state.json"
CONFIG_FILE = "config.json"
EXEC_FIFO = "exec.fifo"

CREATING, CREATED, RUNNING, STOPPED = "creating", "created", "running", "stopped"


def default_root() -> Path:
    """$XDG_RUNTIME_DIR/sdpod-runtime for a user, /run/sdpod-runtime for root."""
    if os.geteuid() == 0:
        return Path("/run/sdpod-runtime")
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if runtime_dir:
        return Path(runtime_dir) / "sdpod-runtime"
    return Path(f"/tmp/sdpod-runtime-{os.geteuid()}")


def check_id(container_id: str) -> None:
    if not _VALID_ID.fullmatch(container_id) or container_id in (".", ".."):
        raise RuntimeSetupError(
            f"invalid container id {container_id!r}: use letters, digits, '_', '+', '-' and '.'"
        )


@dataclass(frozen=True)
class Record:
    """What state.json holds."""

    id: str
    pid: int
    start_time: int
    bundle: str
    created: str
    owner: int
    cgroup: str = ""
    """The container's cgroup directory on the host, or "" where it shares its caller's."""
    cgroup_created: bool = False


class Container:
    """One container's directory under the state root."""

    def __init__(self, root: Path, container_id: str) -> None:
        check_id(container_id)
        self.id = container_id
        self.directory = root / container_id

    @property
    def fifo(self) -> Path:
        return self.directory / EXEC_FIFO

    def exists(self) -> bool:
        return self.directory.is_dir()

    def record(self) -> Record | None:
        """state.json, or None while `create` has not written it yet."""
        try:
            data = json.loads((self.directory / STATE_FILE).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            raise RuntimeSetupError(f"failed to read the state of {self.id}: {error}") from None
        return Record(**data)

    def save(self, record: Record) -> None:
        write_atomically(self.directory / STATE_FILE, json.dumps(dataclasses.asdict(record)))

    def spec(self) -> dict[str, Any]:
        try:
            spec: dict[str, Any] = json.loads((self.directory / CONFIG_FILE).read_text())
        except (OSError, ValueError) as error:
            raise RuntimeSetupError(
                f"failed to read the configuration of {self.id}: {error}"
            ) from None
        return spec

    def save_spec(self, spec: dict[str, Any]) -> None:
        write_atomically(self.directory / CONFIG_FILE, json.dumps(spec))

    def status(self, record: Record | None = None) -> str:
        record = record or self.record()
        if record is None:
            return CREATING
        if not alive(record.pid, record.start_time):
            return STOPPED
        return CREATED if self.fifo.exists() else RUNNING

    def oci_state(self, status: str | None = None) -> dict[str, Any]:
        """The state as the OCI runtime spec defines it, plus runc's `created` and `owner`."""
        record = self.record()
        status = status or self.status(record)
        annotations = self.spec().get("annotations", {}) if record else {}
        return {
            "ociVersion": OCI_VERSION,
            "id": self.id,
            "status": status,
            "pid": record.pid if record and status != STOPPED else 0,
            "bundle": record.bundle if record else "",
            "annotations": annotations,
            "created": record.created if record else "",
            "owner": _owner_name(record.owner) if record else "",
        }


def find(root: Path, container_id: str) -> Container:
    """The existing container `container_id`, or an error naming the state root."""
    container = Container(root, container_id)
    if not container.exists():
        raise RuntimeSetupError(
            f"container {container_id} does not exist in {root}",
            hint="`sdpod runtime list` shows the containers; --root chooses another state root",
        )
    return container


def every(root: Path) -> Iterator[Container]:
    if not root.is_dir():
        return
    for entry in sorted(root.iterdir()):
        if entry.is_dir() and _VALID_ID.fullmatch(entry.name):
            yield Container(root, entry.name)


def start_time(pid: int) -> int:
    """The process's start time in clock ticks since boot (proc(5), stat field 22), which
    tells it from a later process given the same PID; 0 if there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    # The command name, in parentheses, may hold spaces: count fields after its end.
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[19])


def alive(pid: int, started: int) -> bool:
    """Whether `pid` is still the process started at `started`, and not a zombie."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0] not in ("Z", "X") and int(fields[19]) == started


def _owner_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
