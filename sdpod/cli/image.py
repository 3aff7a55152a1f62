"""`sdpod image ...`: pull, import, save, list, inspect, remove, prune, verify, unpack.

Only click is imported here until a verb runs: `sdpod --help` loads no HTTP or image
code. Each verb parses its arguments, calls `sdpod.images`, and prints; errors rise to
the one place in `sdpod.cli.main` that turns them into messages.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from sdpod.images.store import ImageStore

COLUMNS = ("REPOSITORY", "TAG", "ID", "CREATED", "SIZE")


def _store(context: click.Context) -> ImageStore:
    from sdpod import paths
    from sdpod.images.store import ImageStore

    root = context.find_root().meta.get("sdpod.image.root")
    return ImageStore(root or paths.data_dir())


def _platform(text: str | None) -> Any:
    if text is None:
        return None
    from sdpod.images.platforms import parse_platform

    return parse_platform(text)


@click.group()
@click.option(
    "--root",
    type=click.Path(path_type=Path, file_okay=False),
    help="The store's directory (default: ~/.local/share/sdpod, /var/lib/sdpod as root).",
)
@click.pass_context
def image(context: click.Context, root: Path | None) -> None:
    """Pull, import, save and manage stored images."""
    context.find_root().meta["sdpod.image.root"] = root


@image.command()
@click.argument("reference")
@click.option(
    "--tls-verify",
    type=click.BOOL,
    default=True,
    show_default=True,
    help="false: allow plain HTTP and unverified TLS for this registry.",
)
@click.option("--platform", help="OS/ARCH[/VARIANT] to pull instead of this machine's.")
@click.option("-q", "--quiet", is_flag=True, help="Show no progress; print only the id.")
@click.pass_context
def pull(
    context: click.Context, reference: str, tls_verify: bool, platform: str | None, quiet: bool
) -> None:
    """Pull REFERENCE from its registry (or a mirror) and unpack it."""
    from sdpod.images import progress
    from sdpod.images.pull import PullOptions, PullPolicy
    from sdpod.images.runner import default_unpack

    options = PullOptions(tls_verify, _platform(platform), progress.for_stream(quiet))
    stored = _store(context).ensure(reference, PullPolicy.ALWAYS, default_unpack(), options)
    click.echo(stored.id)


@image.command(name="import")
@click.argument("source")
@click.option("--name", "names", multiple=True, help="A reference to name the image by.")
@click.option("--platform", help="OS/ARCH[/VARIANT] to import instead of this machine's.")
@click.pass_context
def import_(
    context: click.Context, source: str, names: tuple[str, ...], platform: str | None
) -> None:
    """Import SOURCE: an OCI layout, oci-archive or docker-archive, as PATH[:TAG]."""
    from sdpod.images import archive
    from sdpod.images.reference import parse_reference
    from sdpod.images.runner import default_unpack

    path, tag = archive.split_source(source)
    references = tuple(str(parse_reference(name)) for name in names)
    options = archive.ImportOptions(tag, references, _platform(platform))
    stored = archive.import_path(_store(context), path, options, default_unpack())
    click.echo(stored.id)


@image.command()
@click.argument("reference")
@click.argument("dest", type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["oci", "oci-archive"]),
    default="oci",
    show_default=True,
    help="A layout directory, or a tar of one.",
)
@click.option("--tag", help="The tag in the layout's index (default: the reference's tag).")
@click.pass_context
def save(context: click.Context, reference: str, dest: Path, fmt: str, tag: str | None) -> None:
    """Write the image REFERENCE to DEST, for skopeo's `oci:DEST:TAG`."""
    from sdpod.images import export
    from sdpod.images.find import find_image

    store = _store(context)
    image_id = find_image(store, reference)
    tag = tag or _tag_of(reference)
    if fmt == "oci":
        export.save_layout(store, image_id, dest, tag)
    else:
        export.save_archive(store, image_id, dest, tag)
    click.echo(f"{image_id} saved to {fmt}:{dest}:{tag}")


def _tag_of(text: str) -> str:
    from sdpod.errors import ImageError
    from sdpod.images.reference import parse_reference

    try:
        return parse_reference(text).tag or "latest"
    except ImageError:
        return "latest"


@image.command(name="ls")
@click.pass_context
def list_(context: click.Context) -> None:
    """List the stored images: repository, tag, id, creation time, size."""
    rows = [COLUMNS, *_rows(_store(context))]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _rows(store: ImageStore) -> list[tuple[str, ...]]:
    from sdpod.images.names import names_of
    from sdpod.images.progress import human_size

    names = store.names()
    rows = []
    for image_id in store.image_ids():
        created = _created(_config(store, image_id).get("created"))
        size = human_size(int(store.metadata(image_id).get("size") or 0))
        short = image_id.removeprefix("sha256:")[:12]
        for name in names_of(names, image_id) or ["<none>:<none>"]:
            repository, tag = _split_name(name)
            rows.append((repository, tag, short, created, size))
    return sorted(rows)


def _split_name(name: str) -> tuple[str, str]:
    if "@" in name:
        repository, _, digest = name.partition("@")
        return repository, digest[:19]
    head, colon, tag = name.rpartition(":")
    return (head, tag) if colon and "/" not in tag else (name, "<none>")


def _created(text: Any) -> str:
    """An image config's `created` (RFC 3339, Go writes nanoseconds) as UTC minutes."""
    if not isinstance(text, str):
        return ""
    import re

    # fromisoformat takes at most six digits of a second's fraction.
    trimmed = re.sub(r"(\.\d{6})\d+", r"\1", text).replace("Z", "+00:00")
    try:
        when = datetime.fromisoformat(trimmed)
    except ValueError:
        return text[:16]
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def _config(store: ImageStore, image_id: str) -> dict[str, Any]:
    from sdpod.images.digest import Digest

    data = store.blob_path(Digest.parse(image_id)).read_bytes()
    document = json.loads(data)
    return document if isinstance(document, dict) else {}


@image.command()
@click.argument("references", nargs=-1, required=True)
@click.pass_context
def inspect(context: click.Context, references: tuple[str, ...]) -> None:
    """Print the images' config, layers and digests as JSON."""
    from sdpod.images.find import find_image

    store = _store(context)
    click.echo(json.dumps([_inspect(store, find_image(store, r)) for r in references], indent=2))


def _inspect(store: ImageStore, image_id: str) -> dict[str, Any]:
    from sdpod.images.names import names_of

    metadata = store.metadata(image_id)
    stored = store.get(image_id)
    diff_ids = metadata.get("diff_ids") or [None] * len(metadata.get("layers", []))
    layers = zip(
        metadata.get("layers", []),
        metadata.get("layer_types") or [None] * len(diff_ids),
        metadata.get("layer_sizes") or [None] * len(diff_ids),
        diff_ids,
        strict=False,
    )
    return {
        "id": image_id,
        "names": names_of(store.names(), image_id),
        "manifest": {
            "digest": metadata.get("manifest"),
            "mediaType": metadata.get("manifest_type"),
            "size": metadata.get("manifest_size"),
        },
        "layers": [{"digest": d, "mediaType": t, "size": s, "diffID": i} for d, t, s, i in layers],
        "size": metadata.get("size"),
        "source": metadata.get("source"),
        "trees": [str(tree) for tree in stored.layers] if stored else None,
        "config": _config(store, image_id),
    }


@image.command()
@click.argument("references", nargs=-1, required=True)
@click.pass_context
def rm(context: click.Context, references: tuple[str, ...]) -> None:
    """Remove images (or one name of an image that has several); never one in use."""
    from sdpod.images import removal
    from sdpod.images.find import find_image
    from sdpod.images.runner import default_unpack

    store = _store(context)
    for reference in references:
        image_id = find_image(store, reference)
        # A name removes only itself while the image has others; an id removes the image.
        name = _stored_name(store, reference, image_id)
        removed = removal.remove(store, image_id, name, default_unpack())
        _say_removed(removed)


def _stored_name(store: ImageStore, text: str, image_id: str) -> str | None:
    from sdpod.images.names import names_of
    from sdpod.images.reference import parse_reference

    names = names_of(store.names(), image_id)
    if text in names:
        return text
    try:
        full = str(parse_reference(text))
    except Exception:
        return None
    return full if full in names else None


def _say_removed(removed: Any) -> None:
    for name in removed.untagged:
        click.echo(f"untagged {name}")
    for image_id in removed.images:
        click.echo(f"removed {image_id}")


@image.command()
@click.pass_context
def prune(context: click.Context) -> None:
    """Remove every image no container uses, and blobs nothing needs."""
    from sdpod.images import removal
    from sdpod.images.runner import default_unpack

    removed = removal.prune(_store(context), default_unpack())
    _say_removed(removed)
    counts = f"{len(removed.images)} image(s), {removed.trees} layer tree(s)"
    click.echo(f"{counts} and {removed.blobs} blob(s) removed")


@image.command()
@click.pass_context
def verify(context: click.Context) -> None:
    """Re-hash every stored blob; fail naming each one that is damaged or missing."""
    from sdpod.errors import ImageError
    from sdpod.images import removal

    store = _store(context)
    bad = removal.verify(store, lambda line: click.echo(f"bad: {line}", err=True))
    if bad:
        raise ImageError(f"failed to verify the store {store.root}: {len(bad)} problem(s)")
    click.echo(f"{store.root}: every blob verified")


@image.command()
@click.argument("reference")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.pass_context
def unpack(context: click.Context, reference: str, directory: Path) -> None:
    """Write the image's root filesystem to DIRECTORY/rootfs, as `umoci unpack` does."""
    from sdpod.images import export
    from sdpod.images.find import find_image
    from sdpod.images.runner import default_unpack

    store = _store(context)
    rootfs = export.unpack_to(store, find_image(store, reference), directory, default_unpack())
    click.echo(str(rootfs))
