"""Whatever a file holds, loading it gives a project or a `ConfigError`, nothing else."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomlkit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdpod.config.load import load_project
from sdpod.config.model import Project
from sdpod.errors import ConfigError

FIXTURES = (Path(__file__).parent.parent / "fixtures" / "config").resolve()
SEEDS = [path.read_text(encoding="utf-8", errors="replace") for path in FIXTURES.glob("*.toml")]

KEYS = [
    "project",
    "container",
    "containers",
    "name",
    "image",
    "command",
    "env",
    "ports",
    "volumes",
    "resources",
    "health",
    "depends_on",
    "memory",
    "cpus",
    "env_file",
    "tmpfs",
    "secrets",
    "devices",
    "labels",
    "cap_add",
    "cap_drop",
    "sysctls",
    "userns",
    "uid_map",
    "network",
    "dns",
    "extra_hosts",
    "source",
    "target",
    "owner",
    "mode",
    "container_port",
]
WORDS = [
    "restart",
    "web",
    "db",
    "oci:web-image",
    "oci:web-image:latest",
    "oci:",
    "8080:80",
    "127.0.0.1:8080:80/udp",
    "[::1]:1:2",
    "./www:/www:ro",
    "www:x",
    "pgdata:/data:shift,ro",
    "web.env",
    "db-password",
    "/run:size=1M,mode=0700",
    "/dev/null:/dev/sink:r",
    "NET_ADMIN",
    "ALL",
    "net.core.somaxconn",
    "keep-id",
    "0:100000:65536",
    "container:web",
    "none",
    "nas:10.0.0.1",
    "0440",
    "${A}",
    "${B:-d}",
    "$${",
    "${",
    "always",
    "no",
    "",
    "\0",
    "..",
    "/",
    ":",
    "[",
    "]",
    '"',
    "'",
]

scalars = st.one_of(
    st.sampled_from(WORDS),
    st.text(max_size=12),
    st.integers(),
    st.booleans(),
    st.floats(allow_nan=False),
    st.dates(),
)
keys = st.one_of(st.sampled_from(KEYS + WORDS), st.text(min_size=1, max_size=8))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=12,
)


def mostly(
    valid: st.SearchStrategy[object], tricky: st.SearchStrategy[object]
) -> st.SearchStrategy[object]:
    """Draw from `valid` four times in five, so that whole files are often valid."""
    return st.integers(0, 4).flatmap(lambda pick: tricky if pick == 0 else valid)


# Values close to valid ones, so that generated files get past the first checks and
# reach the later ones (substitution, the cross-container checks, building the model).
PLAUSIBLE = {
    "name": mostly(st.sampled_from(["web", "db"]), st.sampled_from(["Web", "", "a" * 64, "${A}"])),
    "image": mostly(
        st.sampled_from(["oci:web-image", "oci:web-image:1", "oci:${WWW:-web-image}"]),
        st.sampled_from(["oci:www", "busybox", "oci:", "oci:${A}"]),
    ),
    "command": mostly(
        st.lists(st.sampled_from(["sh", "-c", "${A:-x}", "$${A}"]), min_size=1, max_size=3),
        st.sampled_from(["httpd -f", "'", "", []]),
    ),
    "env": st.dictionaries(
        mostly(st.sampled_from(["A", "B"]), st.sampled_from(["B=", ""])),
        mostly(st.text(max_size=4), st.sampled_from(["${B}", "\0"])),
    ),
    "ports": st.lists(
        mostly(
            st.sampled_from(
                ["8080:80", "127.0.0.1:8080:80", "[::]:8081:80/udp", "${WEB_PORT:-1}:2"]
            ),
            st.sampled_from(["0:1", "${A}:80", "80"]),
        ),
        max_size=3,
    ),
    "volumes": st.lists(
        mostly(
            st.sampled_from(["./www:/www", "www:/w:ro", "/:/host:rw"]),
            st.sampled_from(["./nope:/x", "a:b:c:d", "www:w"]),
        ),
        max_size=3,
    ),
    "restart": mostly(st.sampled_from(["always", "no", "on-failure"]), st.just("never")),
    "restart_delay": mostly(st.sampled_from(["1s", "500ms", 0, 2.5]), st.sampled_from(["1d", -1])),
    "stop_signal": mostly(st.sampled_from(["SIGTERM", "QUIT", 9]), st.sampled_from(["x", 0])),
    "stop_timeout": mostly(st.sampled_from(["1m30s", 10]), st.sampled_from([0, "25h"])),
    "resources": st.fixed_dictionaries(
        {},
        optional={
            "memory": mostly(st.sampled_from(["512M", "1.5G", 4096]), st.sampled_from(["1MB", 0])),
            "cpus": mostly(st.sampled_from([0.5, 2]), st.sampled_from([0, "1"])),
            "pids": mostly(st.just(64), st.just(0)),
            "io_weight": mostly(st.just(100), st.just(10001)),
        },
    ),
    "health": st.fixed_dictionaries(
        {},
        optional={
            "command": mostly(st.sampled_from(["true", ["true"]]), st.sampled_from(["", []])),
            "interval": mostly(st.just("10s"), st.just(0)),
            "retries": mostly(st.just(2), st.just(0)),
            "on_unhealthy": mostly(st.just("stop"), st.just("kill")),
        },
    ),
    "ready": mostly(st.sampled_from(["started", "notify", "healthy"]), st.just("soon")),
    "depends_on": mostly(
        st.lists(st.sampled_from(["web", "db"]), max_size=2)
        | st.dictionaries(st.sampled_from(["web", "db"]), st.sampled_from(["started", "healthy"])),
        st.sampled_from(["db", ["X"], {"db": "ready"}]),
    ),
    "description": mostly(st.just("The web server"), st.sampled_from(["", "a\nb"])),
    "documentation": st.lists(
        mostly(st.just("https://example.org/"), st.sampled_from(["ftp://x", "man:"])), max_size=2
    ),
}
OPTIONAL = {key: value for key, value in PLAUSIBLE.items() if key not in ("name", "image")}
named_tables = st.fixed_dictionaries(
    {"name": PLAUSIBLE["name"], "image": PLAUSIBLE["image"]}, optional=OPTIONAL
)
keyed_tables = st.fixed_dictionaries({"image": PLAUSIBLE["image"]}, optional=OPTIONAL)
noisy_tables = st.fixed_dictionaries(
    {}, optional={key: value | values for key, value in PLAUSIBLE.items()}
)
projects = st.fixed_dictionaries(
    {}, optional={"name": mostly(st.sampled_from(["shop", "my-shop"]), st.just("Shop"))}
)
documents = st.one_of(
    st.dictionaries(keys, values, max_size=4),
    st.fixed_dictionaries({"container": named_tables | noisy_tables}),
    st.fixed_dictionaries(
        {"containers": st.dictionaries(st.sampled_from(["web", "db", "Web"]), keyed_tables)},
        optional={"project": projects | values},
    ),
)
environs = st.dictionaries(st.sampled_from(["A", "B", "WEB_PORT", "WWW"]), st.text(max_size=6))


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    """A copy of the fixture directory, so that relative paths in documents can resolve."""
    with tempfile.TemporaryDirectory() as directory:
        copy = Path(directory) / "config"
        shutil.copytree(FIXTURES, copy)
        yield copy


def _load(workdir: Path, text: str, environ: dict[str, str]) -> None:
    path = workdir / "generated.toml"
    path.write_text(text, encoding="utf-8")
    try:
        assert isinstance(load_project(path, environ), Project)
    except ConfigError as error:
        assert error.problems
        assert all(isinstance(problem, str) and problem for problem in error.problems)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=documents, environ=environs)
def test_structured_documents(
    workdir: Path, document: dict[str, object], environ: dict[str, str]
) -> None:
    _load(workdir, tomlkit.dumps(document), environ)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """A fixture's text with a few slices deleted, replaced or repeated."""
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        start = draw(st.integers(0, len(text)))
        end = draw(st.integers(start, min(len(text), start + 12)))
        action = draw(st.sampled_from(["delete", "insert", "repeat"]))
        if action == "delete":
            text = text[:start] + text[end:]
        elif action == "insert":
            text = text[:start] + draw(st.sampled_from(WORDS) | st.text(max_size=6)) + text[end:]
        else:
            text = text[:end] + text[start:end] + text[end:]
    return text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=mutated(), environ=environs)
def test_mutated_fixtures(workdir: Path, text: str, environ: dict[str, str]) -> None:
    _load(workdir, text, environ)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=80))
def test_arbitrary_text(workdir: Path, text: str) -> None:
    _load(workdir, text, {})
