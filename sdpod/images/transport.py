"""HTTP(S) to one registry, authenticated as its challenges ask (OCI distribution spec).

The registry's `/v2/` endpoint answers 401 with a `WWW-Authenticate` challenge when it
wants credentials: `Basic` takes the user's password on every request; `Bearer` sends us
to a token service (`realm`, `service`, `scope`), which hands out a token for a scope, sent
as `Authorization: Bearer TOKEN` (the distribution project's token specification).

HTTPS is verified against the system's authorities plus any `*.crt` in the registry's
certs.d directory (containers-certs.d(5)). A registry the user marks insecure is tried
over HTTPS without verification, then over plain HTTP, as podman and skopeo do.

Each request opens its own connection: layers are fetched by several threads at once,
and http.client's connections are not shared between threads.

HTTP proxies (`https_proxy`) and client certificates from certs.d (`*.cert`, `*.key`)
are not used yet; a registry reached only through a proxy, or one that asks for a
client certificate, cannot be pulled from until they are.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import re
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sdpod.errors import ImageError
from sdpod.images.auth import Credentials

log = logging.getLogger(__name__)

TIMEOUT = 60.0
MAX_REDIRECTS = 5
MAX_TOKEN_RESPONSE = 1 << 20
# Docker Hub's registry answers at another name than the one images are named by.
API_HOSTS = {"docker.io": "registry-1.docker.io"}

_PARAM = re.compile(r'\s*([A-Za-z][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class Challenge:
    """A parsed `WWW-Authenticate` header: its scheme (lower case) and parameters."""

    scheme: str
    params: Mapping[str, str]


def parse_challenge(header: str) -> Challenge:
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): m.group(2) or m.group(3) or "" for m in _PARAM.finditer(rest)}
    params = {k: re.sub(r"\\(.)", r"\1", v) for k, v in params.items()}
    return Challenge(scheme.lower(), params)


class Response:
    """A response whose body is read as a stream; closing it closes its connection."""

    def __init__(self, connection: http.client.HTTPConnection, raw: http.client.HTTPResponse):
        self._connection = connection
        self._raw = raw
        self.status = raw.status
        self.headers = raw.headers

    def read(self, n: int = -1, /) -> bytes:
        # HTTPResponse.read takes None, not -1, for "to the end".
        return self._raw.read(n if n >= 0 else None)

    def close(self) -> None:
        self._raw.close()
        self._connection.close()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def certs_dirs(host: str) -> list[Path]:
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return [
        Path(config) / "containers" / "certs.d" / host,
        Path("/etc/containers/certs.d") / host,
        Path("/etc/docker/certs.d") / host,
    ]


def tls_context(host: str, verify: bool) -> ssl.SSLContext:
    if not verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    context = ssl.create_default_context()
    for directory in certs_dirs(host):
        for ca in sorted(directory.glob("*.crt")) if directory.is_dir() else []:
            log.debug("trusting %s for %s", ca, host)
            context.load_verify_locations(cafile=str(ca))
    return context


class Transport:
    """Requests to one registry host; thread-safe, sharing tokens between threads."""

    def __init__(self, host: str, insecure: bool, credentials: Credentials | None) -> None:
        self.host = host
        self.api_host = API_HOSTS.get(host, host)
        self.insecure = insecure
        self.credentials = credentials
        self.scheme = ""
        self._challenge: Challenge | None = None
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()

    def fail(self, reason: str, hint: str | None = None) -> ImageError:
        return ImageError(f"failed to reach registry {self.host}: {reason}", hint)

    def ping(self) -> None:
        """Learn the scheme the registry speaks and the challenge it sets, once."""
        if self.scheme:
            return
        schemes = ("https", "http") if self.insecure else ("https",)
        for position, scheme in enumerate(schemes):
            try:
                with self._open(scheme, self.api_host, "GET", "/v2/", {}) as response:
                    response.read()
            except (ssl.SSLError, ConnectionError) as exc:
                if position + 1 < len(schemes):
                    log.debug("%s over https failed (%s): trying http", self.host, exc)
                    continue
                raise self._network_error(exc) from None
            except OSError as exc:
                raise self._network_error(exc) from None
            self.scheme = scheme
            self._note_challenge(response)
            return

    def get(self, path: str, headers: Mapping[str, str], scope: str) -> Response:
        """GET `path` of the registry's API, authenticating for `scope`, following
        redirects; the caller closes the response. Any status is returned."""
        self.ping()
        response = self._get_once(path, headers, scope)
        if response.status == 401 and self._note_challenge(response):
            response.close()
            response = self._get_once(path, headers, scope)
        return response

    def _get_once(self, path: str, headers: Mapping[str, str], scope: str) -> Response:
        url = f"{self.scheme}://{self.api_host}{path}"
        own = {**headers, **self._authorization(scope)}
        for _ in range(MAX_REDIRECTS + 1):
            parts = urllib.parse.urlsplit(url)
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            # Credentials go only to the registry itself, never to where it redirects.
            sent = own if parts.netloc == self.api_host else dict(headers)
            try:
                response = self._open(parts.scheme, parts.netloc, "GET", target, sent)
            except OSError as exc:
                raise self._network_error(exc) from None
            if response.status not in _REDIRECTS:
                return response
            location = response.headers.get("Location", "")
            response.close()
            url = urllib.parse.urljoin(url, location)
        raise self.fail(f"more than {MAX_REDIRECTS} redirects for {path}")

    def _open(
        self, scheme: str, netloc: str, method: str, target: str, headers: Mapping[str, str]
    ) -> Response:
        connection: http.client.HTTPConnection
        if scheme == "https":
            context = tls_context(self.host, verify=not self.insecure)
            connection = http.client.HTTPSConnection(netloc, timeout=TIMEOUT, context=context)
        elif scheme == "http" and self.insecure:
            connection = http.client.HTTPConnection(netloc, timeout=TIMEOUT)
        else:
            raise self.fail(
                f"refusing plain HTTP to {netloc} for a registry not marked insecure",
                hint="pass --tls-verify=false only for a registry you trust on your own network",
            )
        try:
            connection.request(method, target, headers={"User-Agent": "sdpod", **headers})
            return Response(connection, connection.getresponse())
        except BaseException:
            connection.close()
            raise

    def _note_challenge(self, response: Response) -> bool:
        """Remember a 401's challenge; whether it changed what we send (worth a retry)."""
        header = response.headers.get("WWW-Authenticate")
        if response.status != 401 or not header:
            return False
        challenge = parse_challenge(header)
        with self._lock:
            changed = challenge != self._challenge
            self._challenge = challenge
        return changed

    def _authorization(self, scope: str) -> dict[str, str]:
        challenge = self._challenge
        if challenge is None:
            return {}
        if challenge.scheme == "basic":
            if self.credentials is None:
                raise self.fail(
                    "it asks for a user name and password, and none is stored for it",
                    hint=f"log in with `podman login {self.host}` or `skopeo login {self.host}`",
                )
            return {"Authorization": _basic(self.credentials)}
        if challenge.scheme == "bearer":
            return {"Authorization": f"Bearer {self._token(challenge, scope)}"}
        raise self.fail(f"it asks for authentication scheme {challenge.scheme!r}, unsupported")

    def _token(self, challenge: Challenge, scope: str) -> str:
        with self._lock:
            token = self._tokens.get(scope)
            if token is None:
                token = self._tokens[scope] = self._fetch_token(challenge, scope)
            return token

    def _fetch_token(self, challenge: Challenge, scope: str) -> str:
        realm = challenge.params.get("realm", "")
        parts = urllib.parse.urlsplit(realm)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise self.fail(f"its token service {realm!r} is not an HTTP(S) URL")
        query = urllib.parse.parse_qsl(parts.query)
        if service := challenge.params.get("service"):
            query.append(("service", service))
        query.append(("scope", scope))
        target = f"{parts.path or '/'}?{urllib.parse.urlencode(query)}"
        headers = {"Authorization": _basic(self.credentials)} if self.credentials else {}
        try:
            with self._open(parts.scheme, parts.netloc, "GET", target, headers) as response:
                body = response.read(MAX_TOKEN_RESPONSE)
                status = response.status
        except OSError as exc:
            raise self.fail(f"its token service {realm}: {exc}") from None
        if status != 200:
            hint = None if self.credentials else f"log in with `podman login {self.host}`"
            raise self.fail(f"its token service {realm} answered {status} for {scope}", hint)
        return _token_of(body, realm, self)

    def _network_error(self, exc: OSError) -> ImageError:
        if isinstance(exc, ssl.SSLCertVerificationError):
            return self.fail(
                f"its certificate is not trusted: {exc.verify_message}",
                hint=f"put its authority's certificate in {certs_dirs(self.host)[0]}/ca.crt, "
                "or pass --tls-verify=false for a registry you trust on your own network",
            )
        if isinstance(exc, ssl.SSLError):
            return self.fail(
                f"TLS failed: {exc.reason or exc}",
                hint="a registry that speaks plain HTTP needs --tls-verify=false",
            )
        if isinstance(exc, socket.timeout | TimeoutError):
            return self.fail(f"no answer within {TIMEOUT:.0f} s")
        return self.fail(exc.strerror or str(exc))


def _basic(credentials: Credentials | None) -> str:
    assert credentials is not None
    pair = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(pair).decode()


def _token_of(body: bytes, realm: str, transport: Transport) -> str:
    try:
        document = json.loads(body)
    except ValueError:
        raise transport.fail(f"its token service {realm} answered no JSON") from None
    token = document.get("token") or document.get("access_token")
    if not isinstance(token, str) or not token:
        raise transport.fail(f"its token service {realm} answered no token")
    return token
