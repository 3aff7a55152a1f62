"""Real registries on loopback for the pull tests: Debian's `docker-registry` (distribution 2.8).

One session starts four instances over one storage directory, each on 127.0.0.1 with a
free port and a configuration written here: `open` (no authentication; skopeo pushes the
test images to it), `basic` (htpasswd, bcrypt) and `token` (the Bearer flow: the registry
checks RS256 tokens against a certificate made here, and a token service this process
serves on loopback signs them with `openssl` only for the right user and password).
Every instance is a process this session started (`support.registry`, which the system
tests of registry images use too), and is stopped by its id.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from support.mkimage import (
    BUSYBOX_CONFIG,
    Dir,
    Entry,
    File,
    Layout,
    busybox_entries,
)
from support.registry import Instance, skopeo_push, start_registry, stop_registry

USER, PASSWORD = "sdpod", "s3cret-pass"
SERVICE, ISSUER = "sdpod-test", "sdpod-test-issuer"
BIG_LAYERS = 6
BIG_LAYER_BYTES = 3 << 20


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "registry: pulls from real registries on loopback (docker-registry, skopeo)"
    )


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def self_signed(key: Path, cert: Path, subject: str) -> None:
    """A new RSA key and a certificate for `subject` that it signs itself, valid 2 days."""
    argv = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
    argv += ["-keyout", str(key), "-out", str(cert), "-subj", subject]
    subprocess.run(argv, check=True, capture_output=True)


class TokenService:
    """Signs registry tokens (the distribution token spec) for USER:PASSWORD only."""

    def __init__(self, directory: Path) -> None:
        self.key = directory / "token.key"
        self.cert = directory / "token.crt"
        self_signed(self.key, self.cert, "/CN=sdpod-test-token")
        der = subprocess.run(
            ["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
            check=True,
            capture_output=True,
        ).stdout
        self.x5c = base64.b64encode(der).decode()
        self.issued: list[str] = []
        self.refused = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/token"

    def token(self, scope: str) -> str:
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        now = int(time.time())
        access = []
        if scope.startswith("repository:"):
            _, name, actions = scope.split(":", 2)
            access.append({"type": "repository", "name": name, "actions": actions.split(",")})
        claims = {
            "iss": ISSUER,
            "sub": USER,
            "aud": SERVICE,
            "exp": now + 300,
            "nbf": now - 60,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        signing_input = (
            f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        )
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signing_input.encode(),
            check=True,
            capture_output=True,
        ).stdout
        return f"{signing_input}.{b64url(signature)}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        service = self
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
                if self.headers.get("Authorization") != expected:
                    service.refused += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                scope = query.get("scope", "")
                service.issued.append(scope)
                body = json.dumps({"token": service.token(scope)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        return Handler


@dataclass
class Registries:
    open: Instance
    basic: Instance
    token: Instance
    tls: Instance
    tokens: TokenService
    images: dict[str, Path]
    ca: Path


def make_certificates(directory: Path) -> tuple[Path, str]:
    """A CA and a certificate it signs for 127.0.0.1; the CA's path and the TLS config."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

    self_signed(directory / "ca.key", directory / "ca.crt", "/CN=sdpod-test-ca")
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    )
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        "server.crt",
        "-extfile",
        "san.ext",
    )
    tls = (
        f"  tls:\n    certificate: {directory / 'server.crt'}\n"
        f"    key: {directory / 'server.key'}\n"
    )
    return directory / "ca.crt", tls


def marker_layer(text: str) -> list[Entry]:
    return [Dir("etc"), File("etc/which", text.encode())]


def build_images(directory: Path) -> dict[str, Path]:
    """OCI layouts to push: busybox, a two-platform index, a zstd one, a big one."""
    layouts = {}
    bb = Layout(directory / "busybox")
    # A file of another owner than root shows where rootless pulls map owners.
    owned = File("www/owned", b"www's", mode=0o640, uid=33, gid=33)
    bb.tag(bb.add_image([[*busybox_entries(), owned]], dict(BUSYBOX_CONFIG)), "1")
    bb.save()
    layouts["busybox"] = bb.dest

    multi = Layout(directory / "multi")
    entries = []
    for arch in ("amd64", "arm64"):
        platform = {"os": "linux", "architecture": arch}
        manifest = multi.add_image([marker_layer(arch)], {"Cmd": ["true"]}, platform)
        entries.append(
            type(manifest)(manifest.media_type, manifest.digest, manifest.size, platform)
        )
    multi.tag(multi.add_index(entries), "1")
    multi.save()
    layouts["multi"] = multi.dest

    zstd = Layout(directory / "zstd")
    zstd.tag(zstd.add_image([marker_layer("zstd")], {"Cmd": ["true"]}), "1")
    zstd.save()
    layouts["zstd"] = zstd.dest

    big = Layout(directory / "big")
    layers: list[Sequence[Entry]] = [
        [File(f"blob{i}", os.urandom(BIG_LAYER_BYTES))] for i in range(BIG_LAYERS)
    ]
    big.tag(big.add_image(layers, {"Cmd": ["true"]}, compress=False), "1")
    big.save()
    layouts["big"] = big.dest
    return layouts


@pytest.fixture(scope="session")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registries]:
    for tool in ("docker-registry", "skopeo", "htpasswd", "openssl"):
        if shutil.which(tool) is None:
            message = f"{tool} is not installed (scripts/install --test installs it)"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
    directory = tmp_path_factory.mktemp("registries")
    storage = directory / "storage"
    htpasswd = directory / "htpasswd"
    subprocess.run(
        ["htpasswd", "-Bbc", str(htpasswd), USER, PASSWORD], check=True, capture_output=True
    )
    tokens = TokenService(directory)
    tokens.thread.start()
    started: list[Instance] = []
    try:
        started.append(start_registry(directory, "open", storage))
        basic_auth = f"auth:\n  htpasswd:\n    realm: sdpod-test\n    path: {htpasswd}\n"
        started.append(start_registry(directory, "basic", storage, basic_auth))
        token_auth = (
            f"auth:\n  token:\n    realm: {tokens.realm}\n    service: {SERVICE}\n"
            f"    issuer: {ISSUER}\n    rootcertbundle: {tokens.cert}\n"
        )
        started.append(start_registry(directory, "token", storage, token_auth))
        ca, tls = make_certificates(directory)
        started.append(start_registry(directory, "tls", storage, tls=tls))
        images = build_images(directory / "layouts")
        host = started[0].host
        skopeo_push(f"oci:{images['busybox']}:1", f"{host}/test/busybox:1")
        skopeo_push(f"oci:{images['busybox']}:1", f"{host}/test/v2s2:1", "--format", "v2s2")
        skopeo_push(f"oci:{images['multi']}:1", f"{host}/test/multi:1", "--all")
        skopeo_push(
            f"oci:{images['zstd']}:1", f"{host}/test/zstd:1", "--dest-compress-format", "zstd"
        )
        skopeo_push(f"oci:{images['big']}:1", f"{host}/test/big:1")
        yield Registries(*started, tokens=tokens, images=images, ca=ca)
    finally:
        for instance in started:
            stop_registry(instance)
        tokens.server.shutdown()
