"""Pull an image from a registry into the store: resolve, fetch verified blobs, unpack.

Order of work: the manifest (and any index) is fetched and resolved for the platform;
the config and every layer the store lacks are fetched, layers by a few threads at once,
each into a temporary file that only gets its digest as name once verified
(`sdpod.images.blobs`); then the threads are gone and the layers are applied, which
may fork into a user namespace. A pull that is killed leaves at most temporary files,
which the next pull removes, and blobs that are complete and verified.

A blob cut off midway is fetched again from its first byte: resuming it with a Range
request would save that, and is not done. When one layer fails, the layers already
being fetched finish (or fail) before the error is reported.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

# One enum for the TOML's `pull` setting and this module: config may not import images.
from sdpod.config.model import PullPolicy as PullPolicy
from sdpod.errors import ImageError
from sdpod.images import registries
from sdpod.images.auth import credentials_for
from sdpod.images.digest import check, hash_bytes
from sdpod.images.layout import MAX_JSON_BLOB, Descriptor, ResolvedImage, resolve
from sdpod.images.platforms import HostPlatform
from sdpod.images.progress import Progress, Quiet
from sdpod.images.reference import Reference, parse_reference
from sdpod.images.registry import Manifest, Repository
from sdpod.images.store import ImageStore, StoredImage, Unpack
from sdpod.images.transport import Transport

log = logging.getLogger(__name__)

# Layers fetched at once: enough to fill a home connection, few enough not to be rude.
FETCH_THREADS = 3


@dataclass(frozen=True)
class PullOptions:
    tls_verify: bool = True
    platform: HostPlatform | None = None
    progress: Progress = field(default_factory=Quiet)


def ensure(
    store: ImageStore,
    text: str,
    policy: PullPolicy,
    unpack: Unpack | None = None,
    options: PullOptions | None = None,
) -> StoredImage:
    """The stored image `text` names, pulled first as `policy` says."""
    options = options or PullOptions()
    conf = registries.load()
    reference = parse_reference(text, conf.aliases)
    if policy is not PullPolicy.ALWAYS:
        image_id = store.names().get(str(reference))
        # An image stored without its layer trees gets them from the blobs it has.
        stored = (store.get(image_id) or store.restore(image_id, unpack)) if image_id else None
        if stored is not None:
            return stored
        if policy is PullPolicy.NEVER:
            raise ImageError(
                f"failed to find image {reference}: it is not stored and the pull policy is "
                "'never'",
                hint=f"pull it with `sdpod image pull {_pull_flags(options)}{reference}`",
            )
    return pull(store, reference, unpack, options, conf)


def _pull_flags(options: PullOptions) -> str:
    return "" if options.tls_verify else "--tls-verify=false "


def pull(
    store: ImageStore,
    reference: Reference,
    unpack: Unpack | None = None,
    options: PullOptions | None = None,
    conf: registries.RegistriesConf | None = None,
) -> StoredImage:
    """Fetch `reference` from its mirrors or registry, verified, and store it unpacked."""
    options = options or PullOptions()
    conf = conf or registries.load()
    endpoints = conf.endpoints(reference, insecure=not options.tls_verify)
    progress = options.progress
    try:
        with store.fetching():
            resolved = _fetch_from_any(store, reference, endpoints, options)
            progress.close()  # its thread must be gone before the unpacking forks
            progress.say(f"unpacking {reference}")
            return store.commit(resolved, str(reference), unpack, [str(reference)])
    finally:
        progress.close()


def _fetch_from_any(
    store: ImageStore,
    reference: Reference,
    endpoints: Sequence[registries.Endpoint],
    options: PullOptions,
) -> ResolvedImage:
    """Try each mirror, then the registry; a mirror's failure is logged, not fatal."""
    for endpoint in endpoints:
        try:
            return _fetch(store, reference, endpoint, options)
        except ImageError as exc:
            if not endpoint.mirror:
                raise
            log.warning("mirror %s failed, trying the next source: %s", endpoint.host, exc)
    raise AssertionError("the registry itself is always the last endpoint")


def _fetch(
    store: ImageStore, reference: Reference, endpoint: registries.Endpoint, options: PullOptions
) -> ResolvedImage:
    credentials = credentials_for(endpoint.host, endpoint.repository)
    repository = Repository(endpoint, Transport(endpoint.host, endpoint.insecure, credentials))
    top = repository.manifest(reference.selector)
    if reference.digest is not None and top.digest != reference.digest:
        raise ImageError(
            f"failed to pull image {reference}: {repository.name} served a manifest that "
            f"hashes to {top.digest}"
        )
    source = _RemoteJson(repository, store, top)
    resolved = resolve(source, str(reference), source.top, options.platform)
    _fetch_layers(store, repository, resolved, options.progress, str(reference))
    return resolved


class _RemoteJson:
    """Manifests and configs of one repository, verified, and kept in the store."""

    def __init__(self, repository: Repository, store: ImageStore, top: Manifest) -> None:
        self.repository = repository
        self.store = store
        self.top_manifest = top
        self.top = Descriptor(top.media_type, top.digest, len(top.data))

    def read_json_blob(self, descriptor: Descriptor, what: str) -> dict[str, Any]:
        """Fetch a JSON blob unless it is stored, verify it, store it, and parse it."""
        if not self.store.has_blob(descriptor):
            where = f"{self.repository.name}@{descriptor.digest}"
            if descriptor.size > MAX_JSON_BLOB:
                raise ImageError(
                    f"failed to fetch {what} {where}: its descriptor says {descriptor.size} "
                    f"bytes, more than the {MAX_JSON_BLOB} a {what} may have"
                )
            data = self.fetch(descriptor, what)
            check(what, where, descriptor.digest, descriptor.size, hash_bytes(data))
            self.store.write_blob(io.BytesIO(data), descriptor, what, where)
        return self.store.read_json_blob(descriptor, what)

    def fetch(self, descriptor: Descriptor, what: str) -> bytes:
        if descriptor.digest == self.top.digest:
            return self.top_manifest.data
        if what == "manifest":
            return self.repository.manifest(str(descriptor.digest)).data
        with self.repository.open_blob(descriptor.digest, what) as response:
            return response.read(MAX_JSON_BLOB + 1)


def _fetch_layers(
    store: ImageStore,
    repository: Repository,
    resolved: ResolvedImage,
    progress: Progress,
    title: str,
) -> None:
    wanted = {layer.descriptor.digest: layer.descriptor for layer in resolved.layers}
    missing = [d for d in wanted.values() if not store.has_blob(d)]
    progress.begin(title, [(str(d.digest), d.size) for d in missing])
    if not missing:
        return
    with ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="sdpod-fetch") as pool:
        futures = [pool.submit(_fetch_layer, store, repository, d, progress) for d in missing]
        finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in finished if f.exception() is not None]
        if failed:
            for future in futures:
                future.cancel()
            failed[0].result()


def _fetch_layer(
    store: ImageStore, repository: Repository, descriptor: Descriptor, progress: Progress
) -> None:
    digest = str(descriptor.digest)
    with repository.open_blob(descriptor.digest, "layer") as response:
        store.write_blob(
            response,
            descriptor,
            "layer",
            f"{repository.name}@{digest}",
            lambda count: progress.advance(digest, count),
        )
    progress.done(digest)
