"""The store's layer trees: each layer unpacked once, over the trees of the layers below.

    <root>/layers/<chain>/tree        one layer applied over the trees below it, with
                                      owners written through the store's id mapping
    <root>/layers/<chain>/layer.json  its chain id, diff id, the chain below, its size
    <root>/layers/<chain>-<key>/      the same, owners written through the id mapping
                                      that `key` names (`IdMapping.fingerprint`)

What a layer's tree holds depends on the layers below it: an entry may pass through a
directory or a symlink of a lower layer, or hard-link one of its files. So a tree is
named by the layer's chain id (OCI image spec, config.md, "ChainID"): the base layer's
diff id, then the digest of the chain below, a space and the layer's own diff id. Images
share the trees of the layers they have in common from the base up, as containerd's
snapshots do; a layer whose config names no diff id is named by its blob's digest.

A directory under layers/ is complete: it appears by one rename(2) of a finished staging
directory under the store's tmp/, after every tree below it. Callers hold the store's
lock while trees are made or removed.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from sdpod.errors import ImageError, SdpodError
from sdpod.images.unpack import LayerFile, Skipped, unpack_layer

# Runs a closure somewhere that may own the image's files (a user namespace mapped
# through the user's subordinate ids). The closure only writes to disk.
Unpack = Callable[[Callable[[], None]], None]

LAYERS = "layers"
TREE = "tree"
_INFO = "layer.json"
DONE = "unpacked"
ERROR = "error.json"

_NAME = re.compile(r"([0-9a-f]{64})(?:-([0-9a-f]{16}))?")


def chain_ids(layers: Sequence[LayerFile]) -> list[str]:
    """The chain id of each layer, base first."""
    chains: list[str] = []
    for layer in layers:
        own = str(layer.diff_id) if layer.diff_id is not None else layer.digest
        if not chains:
            chains.append(own)
        else:
            text = f"{chains[-1]} {own}"
            chains.append("sha256:" + hashlib.sha256(text.encode()).hexdigest())
    return chains


def tree_name(chain: str, key: str | None) -> str:
    """The directory under layers/ of a chain's tree: its hex digest, and the mapping's
    key for owners written through another mapping than the store's."""
    hex_digest = chain.removeprefix("sha256:")
    return hex_digest if key is None else f"{hex_digest}-{key}"


def parse_tree_name(name: str) -> tuple[str, str | None] | None:
    """The chain id and mapping key a directory under layers/ stands for, if it is one."""
    match = _NAME.fullmatch(name)
    return None if match is None else (f"sha256:{match[1]}", match[2])


@dataclass(frozen=True)
class _Job:
    """One layer to apply: its blob, its staging directory, the trees below it."""

    staging: Path
    layer: LayerFile
    lowers: tuple[Path, ...]


class LayerTrees:
    def __init__(self, root: Path, tmp: Path) -> None:
        self.dir = root / LAYERS
        self.tmp = tmp

    def path(self, chain: str, key: str | None = None) -> Path:
        return self.dir / tree_name(chain, key) / TREE

    def paths(self, chains: Sequence[str], key: str | None = None) -> tuple[Path, ...] | None:
        """The trees of `chains`, base first; None unless every one is there."""
        found = tuple(self.path(chain, key) for chain in chains)
        return found if all(path.is_dir() for path in found) else None

    def size(self, chain: str, key: str | None = None) -> int:
        """Bytes of a tree's regular files and symlinks, as counted when it was made."""
        try:
            info = json.loads((self.dir / tree_name(chain, key) / _INFO).read_text())
            return int(info.get("size") or 0)
        except (OSError, ValueError, AttributeError):
            return 0

    def build(
        self, layers: Sequence[LayerFile], key: str | None, run: Unpack, source: str
    ) -> list[str]:
        """Make the trees of `layers` (base first) that are missing; return every chain id.

        The missing layers are applied through `run` in one go, each into a staging
        directory of its own over the trees below it, staged or stored; then each staging
        directory is renamed into place, base first.
        """
        chains = chain_ids(layers)
        todo = [i for i, chain in enumerate(chains) if not self.path(chain, key).is_dir()]
        if not todo:
            return chains
        self.dir.mkdir(mode=0o700, exist_ok=True)
        staged: dict[int, Path] = {}
        for i in todo:
            prefix = f"{chains[i].removeprefix('sha256:')[:16]}-"
            staged[i] = Path(tempfile.mkdtemp(prefix=prefix, dir=self.tmp))
        jobs = [
            _Job(
                staged[i],
                layers[i],
                tuple(self._tree(chains, j, key, staged) for j in range(i))[::-1],
            )
            for i in todo
        ]
        sizes = run_recorded(
            run, functools.partial(_apply, tuple(jobs)), list(staged.values()), source
        )
        for i, size in zip(todo, sizes, strict=True):
            _write_info(staged[i], chains[i], chains[i - 1] if i else None, layers[i], size)
        # rename(2) makes each tree visible at once; sync first, so that after a crash
        # no name points at files whose data never reached the disk.
        os.sync()
        for i in todo:
            os.rename(staged[i], self.dir / tree_name(chains[i], key))
        fsync_dir(self.dir)
        return chains

    def _tree(
        self, chains: list[str], index: int, key: str | None, staged: dict[int, Path]
    ) -> Path:
        return staged[index] / TREE if index in staged else self.path(chains[index], key)


def _write_info(staging: Path, chain: str, below: str | None, layer: LayerFile, size: int) -> None:
    diff_id = str(layer.diff_id) if layer.diff_id is not None else None
    info = {"chain_id": chain, "below": below, "diff_id": diff_id, "blob": layer.digest}
    (staging / _INFO).write_text(json.dumps({**info, "size": size}, indent=2) + "\n")


def _apply(jobs: tuple[_Job, ...]) -> None:
    """The extraction itself, base layer first: everything it reports, it writes into
    each layer's staging directory."""
    skipped = Skipped()
    for job in jobs:
        with recording(job.staging):
            tree = job.staging / TREE
            tree.mkdir(mode=0o755)
            unpack_layer(tree, job.layer, job.lowers, skipped)
            mark_done(job.staging, tree)
    skipped.warn()


@contextlib.contextmanager
def recording(staging: Path) -> Iterator[None]:
    """Write an error raised inside into `staging`, with its hint, where the caller of a
    runner that forks finds it (`run_recorded`)."""
    try:
        yield
    except Exception as exc:
        error = exc if isinstance(exc, ImageError) else ImageError(f"failed to unpack: {exc!r}")
        record = {"message": str(error), "hint": error.hint}
        (staging / ERROR).write_text(json.dumps(record))
        raise


def mark_done(staging: Path, tree: Path) -> None:
    """Record that `tree` is complete, with its size. Counted here, where every directory
    can be read: outside the user namespace, directories of subordinate ids with mode 0700
    cannot."""
    (staging / DONE).write_text(str(tree_size(tree)))


def _is_full(error: Exception) -> bool:
    return getattr(error, "errno", None) == errno.ENOSPC or os.strerror(errno.ENOSPC) in str(error)


def _discard(run: Unpack, stagings: Sequence[Path]) -> None:
    """Remove what a failed unpack wrote, through `run`: its files may belong to
    subordinate ids. Where that fails too, the next import clears it."""
    with contextlib.suppress(Exception):
        run(functools.partial(_remove_all, list(stagings)))


def _remove_all(paths: list[Path]) -> None:
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


def run_recorded(
    run: Unpack, work: Callable[[], None], stagings: Sequence[Path], source: str
) -> list[int]:
    """Run `work` through `run`, and learn its outcome from the disk alone.

    `run` may fork, and its errors then arrive as plain text, if at all; `work` leaves a
    marker holding each tree's size in each of `stagings` when it finishes (`mark_done`),
    and its ImageError in a file where it fails (`recording`). Returns the sizes.
    """
    try:
        run(work)
    except Exception as error:
        recorded = _recorded_error(stagings)
        _discard(run, stagings)
        if recorded is not None:
            raise recorded from None
        if isinstance(error, SdpodError) and error.hint:
            raise
        raise ImageError(
            f"failed to unpack image {source}: {error}",
            hint="free some space where sdpod keeps its images" if _is_full(error) else None,
        ) from None
    recorded = _recorded_error(stagings)
    if recorded is not None:
        raise recorded
    try:
        return [int((staging / DONE).read_text()) for staging in stagings]
    except (OSError, ValueError):
        raise ImageError(
            f"failed to unpack image {source}: the extraction ended unfinished"
        ) from None


def _recorded_error(stagings: Sequence[Path]) -> ImageError | None:
    for staging in stagings:
        try:
            record = json.loads((staging / ERROR).read_text())
        except (OSError, ValueError):
            continue
        return ImageError(str(record.get("message")), record.get("hint"))
    return None


def tree_size(root: Path) -> int:
    """Bytes of the regular files and symlinks beneath `root`, each inode counted once."""
    seen: set[int] = set()
    total = 0
    for directory, _, files in os.walk(root):
        for name in files:
            st = os.lstat(os.path.join(directory, name))
            if st.st_ino not in seen:
                seen.add(st.st_ino)
                total += st.st_size
    return total


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
