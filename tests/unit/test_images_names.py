"""References, registries.conf, credential files and authentication challenges: pure parsing."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from sdpod.errors import ImageError
from sdpod.images import auth, registries
from sdpod.images.platforms import parse_platform
from sdpod.images.reference import parse_reference
from sdpod.images.transport import parse_challenge


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36"),
        ("user/app", "docker.io/user/app:latest"),
        ("index.docker.io/library/alpine:3", "docker.io/library/alpine:3"),
        ("quay.io/org/app:v1", "quay.io/org/app:v1"),
        ("localhost/app", "localhost/app:latest"),
        ("127.0.0.1:5000/a/b:tag", "127.0.0.1:5000/a/b:tag"),
        ("registry:5000/a", "registry:5000/a:latest"),
        ("a@sha256:" + "0" * 64, "docker.io/library/a@sha256:" + "0" * 64),
        ("a:1@sha256:" + "f" * 64, "docker.io/library/a:1@sha256:" + "f" * 64),
    ],
)
def test_references_are_completed_as_docker_reads_them(text: str, expected: str) -> None:
    assert str(parse_reference(text)) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("Busybox", "repository 'library/Busybox'"),
        ("a:-bad", "tag '-bad'"),
        ("a@sha256:abc", "no digest"),
        ("host.example/a//b", "repository 'a//b'"),
        ("", "it is empty"),
    ],
)
def test_bad_references_say_what_is_wrong(text: str, why: str) -> None:
    with pytest.raises(ImageError, match="failed to parse image reference") as caught:
        parse_reference(text)
    assert why in str(caught.value)


def test_short_names_follow_aliases() -> None:
    aliases = {"web": "registry.example:5000/team/web"}
    assert str(parse_reference("web:2", aliases)) == "registry.example:5000/team/web:2"
    with pytest.raises(ImageError, match="names no registry"):
        parse_reference("x", {"x": "nowhere"})


def write_conf(tmp_path: Path, text: str) -> registries.RegistriesConf:
    path = tmp_path / "registries.conf"
    path.write_text(text)
    return registries.load(path)


def test_registries_conf_mirrors_come_first_and_rewrite_the_path(tmp_path: Path) -> None:
    conf = write_conf(
        tmp_path,
        """
[[registry]]
prefix = "example.com/team"
location = "internal.example:5000/mirror/team"
insecure = true
[[registry.mirror]]
location = "cache.example/team"

[aliases]
"app" = "example.com/team/app"
""",
    )
    reference = parse_reference("app:1", conf.aliases)

    endpoints = conf.endpoints(reference)

    assert endpoints == [
        registries.Endpoint("cache.example", "team/app", insecure=False, mirror=True),
        registries.Endpoint("internal.example:5000", "mirror/team/app", insecure=True),
    ]


def test_registries_conf_blocks_and_leaves_others_alone(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, '[[registry]]\nlocation = "bad.example"\nblocked = true\n')
    with pytest.raises(ImageError, match=r"blocks 'bad\.example'"):
        conf.endpoints(parse_reference("bad.example/x"))
    assert conf.endpoints(parse_reference("good.example/x"), insecure=True) == [
        registries.Endpoint("good.example", "x", insecure=True)
    ]


def test_registries_conf_errors_name_file_line_key_and_value(tmp_path: Path) -> None:
    text = '[[registry]]\nlocation = "a.example"\n\n[[registry.mirror]]\ninsecure = "yes"\n'
    with pytest.raises(ImageError) as caught:
        write_conf(tmp_path, text)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'registries.conf'}:")
    assert "registry[0].mirror[0].location: None is not valid" in message


def test_missing_registries_conf_means_no_configuration(tmp_path: Path) -> None:
    assert registries.load(tmp_path / "absent.conf") == registries.RegistriesConf()


def auth_file(path: Path, entries: dict[str, str]) -> None:
    encoded = {k: {"auth": base64.b64encode(v.encode()).decode()} for k, v in entries.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"auths": encoded}))


def test_credentials_come_from_the_first_file_and_longest_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    auth_file(tmp_path / "config/containers/auth.json", {"r.example": "a:1", "r.example/t": "b:2"})
    auth_file(tmp_path / ".docker/config.json", {"https://index.docker.io/v1/": "hub:3"})

    assert auth.credentials_for("r.example", "t/app") == auth.Credentials("b", "2")
    assert auth.credentials_for("r.example", "other") == auth.Credentials("a", "1")
    assert auth.credentials_for("docker.io", "library/x") == auth.Credentials("hub", "3")
    assert auth.credentials_for("none.example", "x") is None

    auth_file(tmp_path / "run/containers/auth.json", {"r.example": "c:3"})
    assert auth.credentials_for("r.example", "t/app") == auth.Credentials("c", "3")


def test_a_malformed_credential_is_reported_with_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "auth.json"
    path.write_text(json.dumps({"auths": {"r.example": {"auth": "not base64!"}}}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(path))
    with pytest.raises(ImageError, match=r"auth\.json: auths\.r\.example\.auth"):
        auth.credentials_for("r.example")


def test_challenges_are_parsed_with_quoted_commas() -> None:
    header = (
        'Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push"'
    )
    challenge = parse_challenge(header)
    assert challenge.scheme == "bearer"
    assert challenge.params == {
        "realm": "https://auth.example/token",
        "service": "reg",
        "scope": "repository:a/b:pull,push",
    }
    assert parse_challenge('Basic realm="x"').scheme == "basic"


def test_platforms_are_parsed_with_their_variants() -> None:
    assert parse_platform("linux/arm/v6").variants == ("v6",)
    assert parse_platform("linux/arm64").variants == ("", "v8")
    with pytest.raises(ImageError, match="OS/ARCHITECTURE"):
        parse_platform("arm64")
    with pytest.raises(ImageError, match="only linux"):
        parse_platform("windows/amd64")
