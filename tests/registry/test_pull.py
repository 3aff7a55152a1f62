"""`sdpod image pull` and friends against real registries on loopback (see conftest.py).

Each test runs the installed `sdpod` as a separate process, as root, with a store of its
own (`--root`) and its own registries.conf and credentials file (through the variables
podman and skopeo read too), and checks the store on disk, never sdpod's word alone.
"""

from __future__ import annotations

import base64
import json
import os
import pty
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from registry.conftest import PASSWORD, USER, Registries
from support.imagetest import view
from support.registry import free_port, wait_until
from support.trees import tree

from sdpod.images.layout import ImageLayout
from sdpod.images.store import ImageStore, StoredImage

pytestmark = pytest.mark.registry

REPO = Path(__file__).resolve().parents[2]
# This checkout's code, run as its own process: other engineers' installs of /opt/sdpod
# do not change what these tests exercise.
SDPOD = [sys.executable, "-c", "import sys; from sdpod.cli.main import main; main()"]
TIMEOUT = 120.0
BIG_BLOBS = 8  # manifest, config and six layers


class Client:
    """The sdpod CLI with a store, registries.conf and auth file under one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.root = directory / "store"
        self.env = {
            **os.environ,
            "CONTAINERS_REGISTRIES_CONF": str(directory / "registries.conf"),
            "REGISTRY_AUTH_FILE": str(directory / "auth.json"),
            "XDG_CONFIG_HOME": str(directory / "config"),
            "PYTHONPATH": str(REPO),
        }
        self.env.pop("XDG_RUNTIME_DIR", None)

    def argv(self, *args: str) -> list[str]:
        return [*SDPOD, "image", "--root", str(self.root), *args]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args), env=self.env, capture_output=True, text=True, timeout=TIMEOUT
        )

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.returncode == 0, f"{args}: exit {result.returncode}\n{result.stderr}"
        return result.stdout

    def pull(self, reference: str, *extra: str) -> str:
        return self.ok("pull", "--tls-verify=false", *extra, reference).strip().splitlines()[-1]

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args),
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def store(self) -> ImageStore:
        return ImageStore(self.root)

    def login(self, host: str) -> None:
        encoded = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        (self.directory / "auth.json").write_text(json.dumps({"auths": {host: {"auth": encoded}}}))

    def assert_clean(self) -> None:
        """The store verifies, and no temporary file or staging directory is left."""
        self.ok("verify")
        blobs = self.root / "blobs/sha256"
        assert [p.name for p in blobs.iterdir() if p.name.startswith(".")] == []
        assert list((self.root / "tmp").iterdir()) == []


@pytest.fixture
def client(tmp_path: Path) -> Client:
    return Client(tmp_path)


def local_tree(tmp_path: Path, layout: Path, tag: str) -> dict[str, tuple[object, ...]]:
    from sdpod.config.model import LayoutImage

    stored = ImageStore(tmp_path / "local").import_layout(LayoutImage(layout, tag))
    return tree(view(stored, tmp_path), owners=True)


def test_pull_stores_the_image_as_a_local_import_would(
    registries: Registries, client: Client, tmp_path: Path
) -> None:
    reference = f"{registries.open.host}/test/busybox:1"

    image_id = client.pull(reference)

    stored = client.store().get(image_id)
    assert stored is not None
    assert tree(view(stored, tmp_path), owners=True) == local_tree(
        tmp_path, registries.images["busybox"], "1"
    )
    assert client.store().names() == {reference: image_id}
    assert image_id == ImageLayout(registries.images["busybox"]).resolve("1").id
    listing = client.ok("ls").splitlines()
    assert listing[0].split() == ["REPOSITORY", "TAG", "ID", "CREATED", "SIZE"]
    assert listing[1].split()[:3] == [reference.rsplit(":", 1)[0], "1", image_id[7:19]]
    client.assert_clean()


def test_plain_http_needs_tls_verify_false(registries: Registries, client: Client) -> None:
    result = client.run("pull", f"{registries.open.host}/test/busybox:1")

    assert result.returncode == 1
    assert f"error: failed to reach registry {registries.open.host}: TLS failed" in result.stderr
    assert "--tls-verify=false" in result.stderr


def test_a_missing_tag_is_named(registries: Registries, client: Client) -> None:
    result = client.run("pull", "--tls-verify=false", f"{registries.open.host}/test/busybox:9")

    assert result.returncode == 1
    assert "failed to fetch manifest 9 of" in result.stderr
    assert "MANIFEST_UNKNOWN" in result.stderr


def test_docker_schema_2_manifests_are_pulled(registries: Registries, client: Client) -> None:
    image_id = client.pull(f"{registries.open.host}/test/v2s2:1")

    (found,) = json.loads(client.ok("inspect", image_id))
    assert found["manifest"]["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    stored = client.store().get(image_id)
    assert stored is not None and (view(stored, client.directory) / "bin/busybox").is_file()


@pytest.mark.parametrize(("platform", "expected"), [(None, "amd64"), ("linux/arm64", "arm64")])
def test_an_index_gives_the_platform_asked_for(
    registries: Registries, client: Client, platform: str | None, expected: str
) -> None:
    if platform is None and os.uname().machine != "x86_64":
        pytest.skip("the test index holds amd64 and arm64; this check is written for amd64")
    extra = ("--platform", platform) if platform else ()

    image_id = client.pull(f"{registries.open.host}/test/multi:1", *extra)

    stored = client.store().get(image_id)
    assert stored is not None
    assert (view(stored, client.directory) / "etc/which").read_text() == expected
    assert stored.config.architecture == expected


def test_zstd_layers_are_pulled_and_unpacked(registries: Registries, client: Client) -> None:
    image_id = client.pull(f"{registries.open.host}/test/zstd:1")

    (found,) = json.loads(client.ok("inspect", image_id))
    assert [layer["mediaType"] for layer in found["layers"]] == [
        "application/vnd.oci.image.layer.v1.tar+zstd"
    ]
    stored = client.store().get(image_id)
    assert (
        stored is not None and (view(stored, client.directory) / "etc/which").read_text() == "zstd"
    )


def test_basic_auth_uses_the_credentials_file(registries: Registries, client: Client) -> None:
    reference = f"{registries.basic.host}/test/busybox:1"
    refused = client.run("pull", "--tls-verify=false", reference)
    assert refused.returncode == 1
    assert "asks for a user name and password, and none is stored" in refused.stderr

    client.login(registries.basic.host)

    image_id = client.pull(reference)
    assert client.store().get(image_id) is not None


def test_bearer_tokens_come_from_the_token_service(registries: Registries, client: Client) -> None:
    reference = f"{registries.token.host}/test/busybox:1"
    refused_before = registries.tokens.refused
    refused = client.run("pull", "--tls-verify=false", reference)
    assert refused.returncode == 1
    assert "token service" in refused.stderr and "answered 401" in refused.stderr
    assert registries.tokens.refused > refused_before

    client.login(registries.token.host)

    image_id = client.pull(reference)
    assert client.store().get(image_id) is not None
    assert "repository:test/busybox:pull" in registries.tokens.issued


def test_registries_conf_mirror_and_alias(registries: Registries, client: Client) -> None:
    dead = f"127.0.0.1:{free_port()}"
    (client.directory / "registries.conf").write_text(
        "[[registry]]\n"
        'prefix = "example.invalid/team"\n'
        f'location = "{registries.open.host}/test"\n'
        "insecure = true\n"
        "[[registry.mirror]]\n"
        f'location = "{dead}/nothing"\n'
        "insecure = true\n"
        "[aliases]\n"
        '"bb" = "example.invalid/team/busybox"\n'
    )

    result = client.run("pull", "bb:1")

    assert result.returncode == 0, result.stderr
    assert f"mirror {dead} failed" in result.stderr
    assert list(client.store().names()) == ["example.invalid/team/busybox:1"]


def blob_count(root: Path) -> int:
    blobs = root / "blobs/sha256"
    if not blobs.is_dir():
        return 0
    return sum(1 for p in blobs.iterdir() if not p.name.startswith("."))


@pytest.mark.parametrize("after", range(BIG_BLOBS + 1))
def test_a_killed_pull_leaves_nothing_a_later_pull_trusts(
    registries: Registries, client: Client, after: int
) -> None:
    reference = f"{registries.open.host}/test/big:1"
    process = client.popen("pull", "--tls-verify=false", "--quiet", reference)
    wait_until(
        lambda: blob_count(client.root) >= after or process.poll() is not None,
        TIMEOUT,
        f"{after} blobs",
        interval=0.002,
    )
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=TIMEOUT)
    if after < BIG_BLOBS:
        # It was still fetching: the kill, not the pull's end, stopped it. With all
        # blobs stored it may be unpacking, or may just have finished.
        assert process.returncode == -signal.SIGKILL

    image_id = client.pull(reference, "--quiet")

    stored = client.store().get(image_id)
    assert stored is not None
    merged = view(stored, client.directory)
    assert sorted(p.name for p in merged.iterdir()) == [f"blob{i}" for i in range(6)]
    client.assert_clean()


def test_two_pulls_at_once_share_the_store(registries: Registries, client: Client) -> None:
    reference = f"{registries.open.host}/test/big:1"
    processes = [client.popen("pull", "--tls-verify=false", "-q", reference) for _ in range(2)]

    outputs = [p.communicate(timeout=TIMEOUT) for p in processes]

    assert [p.returncode for p in processes] == [0, 0], [err for _, err in outputs]
    assert outputs[0][0] == outputs[1][0]
    assert len(client.store().image_ids()) == 1
    client.assert_clean()


def fake_container(root: Path, name: str, image: StoredImage) -> Path:
    """A container's bundle as the runtime writes it, reduced to what marks image use."""
    directory = root / "containers" / name
    directory.mkdir(parents=True)
    overlay = {"lowers": [str(lower) for lower in image.lowers], "upper": "u", "work": "w"}
    annotations = {
        "io.sdpod.rootfs.overlay": json.dumps(overlay),
        "io.sdpod.image": "x",
        "io.sdpod.image.id": image.id,
    }
    (directory / "config.json").write_text(json.dumps({"annotations": annotations}))
    return directory


def test_rm_and_prune_keep_what_a_container_uses(registries: Registries, client: Client) -> None:
    used = client.pull(f"{registries.open.host}/test/busybox:1")
    unused = client.pull(f"{registries.open.host}/test/zstd:1")
    stored = client.store().get(used)
    assert stored is not None
    bundle = fake_container(client.root, "web", stored)

    refused = client.run("rm", used)
    assert refused.returncode == 1
    assert f"failed to remove image {used}: container(s) web use it" in refused.stderr

    pruned = client.ok("prune")
    assert f"removed {unused}" in pruned and used not in pruned
    assert client.store().image_ids() == [used]
    client.assert_clean()

    shutil.rmtree(bundle)
    client.ok("rm", f"{registries.open.host}/test/busybox:1")
    assert client.store().image_ids() == []
    assert blob_count(client.root) == 0


def test_verify_names_a_damaged_blob(registries: Registries, client: Client) -> None:
    image_id = client.pull(f"{registries.open.host}/test/busybox:1")
    config = client.root / "blobs/sha256" / image_id.removeprefix("sha256:")
    config.write_bytes(config.read_bytes() + b" ")

    result = client.run("verify")

    assert result.returncode == 1
    assert f"bad: blob {config}: its content hashes to" in result.stderr


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_saved_layout_is_read_by_skopeo(registries: Registries, client: Client) -> None:
    reference = f"{registries.open.host}/test/v2s2:1"
    image_id = client.pull(reference)
    dest = client.directory / "saved"

    client.ok("save", reference, str(dest))
    found = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci:{dest}:1"], capture_output=True, text=True
    )

    assert found.returncode == 0, found.stderr
    manifest = json.loads(found.stdout)
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["config"]["digest"] == image_id


def test_progress_is_plain_lines_off_a_terminal_and_nothing_when_quiet(
    registries: Registries, tmp_path: Path
) -> None:
    reference = f"{registries.open.host}/test/busybox:1"
    loud = Client(tmp_path / "loud")
    quiet = Client(tmp_path / "quiet")

    shown = loud.run("pull", "--tls-verify=false", reference)
    hushed = quiet.run("pull", "--tls-verify=false", "--quiet", reference)

    assert shown.returncode == hushed.returncode == 0
    lines = shown.stderr.splitlines()
    assert lines[0].startswith(f"{reference}: fetching 1 layer(s), ")
    assert any(line.startswith("layer ") and line.endswith(", verified") for line in lines)
    assert hushed.stderr == ""
    assert shown.stdout == hushed.stdout


def test_progress_draws_bars_on_a_terminal(registries: Registries, tmp_path: Path) -> None:
    client = Client(tmp_path)
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        client.argv("pull", "--tls-verify=false", f"{registries.open.host}/test/big:1"),
        env={**client.env, "COLUMNS": "100", "TERM": "xterm"},
        stdout=subprocess.PIPE,
        stderr=terminal,
    )
    os.close(terminal)
    drawn = read_all(controller)
    process.communicate(timeout=TIMEOUT)

    assert process.returncode == 0
    assert "total" in drawn  # the bar of all layers, which only the terminal display has
    assert drawn.count("\r") + drawn.count("\x1b[") > 0


def read_all(fd: int) -> str:
    chunks: list[bytes] = []
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the other side is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode(errors="replace")


def test_ensure_pulls_only_as_its_policy_says(
    registries: Registries, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sdpod.errors import ImageError
    from sdpod.images.pull import PullOptions, PullPolicy

    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(tmp_path / "absent.conf"))
    store = ImageStore(tmp_path / "store")
    reference = f"{registries.open.host}/test/busybox:1"
    options = PullOptions(tls_verify=False)
    with pytest.raises(ImageError, match="not stored and the pull policy is 'never'"):
        store.ensure(reference, PullPolicy.NEVER, options=options)

    pulled = store.ensure(reference, PullPolicy.MISSING, options=options)

    # Stored, its name now answers without a registry: one that is not there at all.
    dead = f"127.0.0.1:{free_port()}/test/busybox:1"
    with store.locked():
        from sdpod.images import names

        names.set_names(store.root, pulled.id, [dead])
    assert store.ensure(dead, PullPolicy.MISSING, options=options) == pulled
    assert store.ensure(dead, PullPolicy.NEVER, options=options) == pulled
    with pytest.raises(ImageError, match=f"failed to reach registry {dead.split('/')[0]}"):
        store.ensure(dead, PullPolicy.ALWAYS, options=options)
    assert store.ensure(reference, PullPolicy.ALWAYS, options=options) == pulled


def test_https_is_verified_against_certs_d(registries: Registries, client: Client) -> None:
    reference = f"{registries.tls.host}/test/busybox:1"
    certs = client.directory / "config/containers/certs.d" / registries.tls.host

    untrusted = client.run("pull", reference)
    assert untrusted.returncode == 1
    assert "its certificate is not trusted" in untrusted.stderr
    assert f"hint: put its authority's certificate in {certs}/ca.crt" in untrusted.stderr

    certs.mkdir(parents=True)
    shutil.copyfile(registries.ca, certs / "ca.crt")

    image_id = client.ok("pull", reference).strip()
    assert client.store().get(image_id) is not None


def test_import_and_save_through_the_cli(registries: Registries, client: Client) -> None:
    layout = registries.images["multi"]
    image_id = client.ok("import", "--platform", "linux/arm64", f"{layout}:1").strip()
    stored = client.store().get(image_id)
    assert (
        stored is not None and (view(stored, client.directory) / "etc/which").read_text() == "arm64"
    )
    archive = client.directory / "multi.tar"

    client.ok("save", "--format", "oci-archive", "--tag", "arm", image_id, str(archive))
    again = Client(client.directory / "again")
    imported = again.ok(
        "import", "--platform", "linux/arm64", "--name", "example.org/multi:arm", f"{archive}:arm"
    )
    assert imported.strip() == image_id
    assert again.store().names() == {"example.org/multi:arm": image_id}
    unpacked = client.directory / "unpacked"
    client.ok("unpack", image_id, str(unpacked))
    assert tree(unpacked / "rootfs") == tree(view(stored, client.directory))
