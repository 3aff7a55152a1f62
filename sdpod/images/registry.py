"""The OCI distribution API (v2) of one repository: manifests by tag or digest, and blobs."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sdpod.errors import ImageError
from sdpod.images import mediatypes as mt
from sdpod.images.digest import Digest, hash_bytes
from sdpod.images.layout import MAX_JSON_BLOB
from sdpod.images.registries import Endpoint
from sdpod.images.transport import Response, Transport


@dataclass(frozen=True)
class Manifest:
    """A manifest or index as the registry served it, and the digest of its bytes."""

    data: bytes
    media_type: str
    digest: Digest


class Repository:
    """One repository at one endpoint (a registry or one of its mirrors)."""

    def __init__(self, endpoint: Endpoint, transport: Transport) -> None:
        self.endpoint = endpoint
        self.transport = transport
        self.scope = f"repository:{endpoint.repository}:pull"

    @property
    def name(self) -> str:
        return f"{self.endpoint.host}/{self.endpoint.repository}"

    def fail(self, what: str, reason: str, hint: str | None = None) -> ImageError:
        return ImageError(f"failed to fetch {what} of {self.name}: {reason}", hint)

    def manifest(self, selector: str) -> Manifest:
        """The manifest or index tagged `selector`, or with `selector` as its digest."""
        path = f"/v2/{self.endpoint.repository}/manifests/{selector}"
        headers = {"Accept": ", ".join(mt.MANIFEST_ACCEPT)}
        with self.transport.get(path, headers, self.scope) as response:
            self.check(response, f"manifest {selector}")
            data = response.read(MAX_JSON_BLOB + 1)
            media_type = response.headers.get_content_type()
            served = response.headers.get("Docker-Content-Digest")
        if len(data) > MAX_JSON_BLOB:
            raise self.fail(f"manifest {selector}", f"it is larger than {MAX_JSON_BLOB} bytes")
        digest, _ = hash_bytes(data)
        if served and served != str(digest):
            raise self.fail(
                f"manifest {selector}",
                f"the registry says its digest is {served}, its content hashes to {digest}",
            )
        return Manifest(data, _media_type(data, media_type, self, selector), digest)

    def open_blob(self, digest: Digest, what: str) -> Response:
        """A stream of the blob; the caller verifies what it reads and closes it."""
        path = f"/v2/{self.endpoint.repository}/blobs/{digest}"
        response = self.transport.get(path, {}, self.scope)
        try:
            self.check(response, f"{what} {digest}")
        except BaseException:
            response.close()
            raise
        return response

    def check(self, response: Response, what: str) -> None:
        if response.status == 200:
            return
        reason = _error_text(response.read(64 << 10)) or f"HTTP {response.status}"
        if response.status == 404:
            raise self.fail(what, f"the registry does not have it ({reason})")
        if response.status in (401, 403):
            raise self.fail(
                what,
                f"access denied ({reason})",
                hint=f"log in with `podman login {self.endpoint.host}` if it needs an account",
            )
        raise self.fail(what, f"the registry answered {response.status} ({reason})")


def _media_type(data: bytes, served: str, repository: Repository, selector: str) -> str:
    """The manifest's type: what it declares, else what the registry served it as."""
    try:
        declared = json.loads(data).get("mediaType")
    except (ValueError, AttributeError):
        raise repository.fail(f"manifest {selector}", "it is not a JSON object") from None
    if isinstance(declared, str) and declared:
        media_type = declared
    else:
        # Without a declared type the resolver tells a manifest from an index by its keys.
        media_type = served if mt.kind_of(served) is not None else ""
    if media_type in mt.DOCKER_SCHEMA1:
        raise repository.fail(
            f"manifest {selector}",
            "it is a Docker schema 1 manifest, which registries retired in 2019",
            hint="push the image again with a current tool, which writes schema 2 or OCI",
        )
    return media_type


def _error_text(body: bytes) -> str:
    """The messages of a registry's JSON error body (`{"errors": [{"code", "message"}]}`)."""
    try:
        errors = json.loads(body).get("errors") or []
        return "; ".join(f"{e.get('code', '')}: {e.get('message', '')}" for e in errors)
    except (ValueError, AttributeError, TypeError):
        return ""
