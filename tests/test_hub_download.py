"""Downloads: through olah (a third-party Hub mirror serving a local git repository), and under faults.

- olah in offline mode serves ``mirrors/models/zoo/tiny`` (a plain git repository) on a free 127.0.0.1 port;
- a download cut off mid-file is retried by the client (resumed or restarted) and ends verified;
- a short answer (consistent but too few bytes) is refused and leaves nothing in the cache;
- a download killed mid-file leaves only a ``.incomplete`` temporary that no later lookup returns;
- bytes that do not match the sha256 are refused and evicted from the cache.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
import timm
import torch
from hub_server import HubServer, git_blob_oid, hub_environment
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import LocalEntryNotFoundError

from consistentzoo.hub import pull, push
from consistentzoo.models import WeightsIntegrityError, WeightsUnavailableError, load_state_dict
from consistentzoo.models.weights import sha256sum

TOKEN = "hf_test_write"
REPO = "zoo/tiny"
WEIGHTS = "model.safetensors"


@pytest.fixture(scope="module")
def hub(folder: Path):
    with HubServer() as server:
        push(folder, REPO, token=TOKEN, endpoint=server.url)
        yield server


@pytest.fixture(autouse=True)
def _clean(hub: HubServer):
    hub.clear()
    yield
    hub.clear()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def olah(folder: Path, tmp_path_factory: pytest.TempPathFactory):
    """olah (offline mode) serving a git repository that holds the tiny model; yields (url, commit)."""
    if shutil.which("git") is None:
        pytest.skip("olah's mirror mode reads git repositories; git is not installed")
    root = tmp_path_factory.mktemp("olah")
    repo = root / "mirrors" / "models" / "zoo" / "tiny"
    repo.mkdir(parents=True)
    for name in ("model.safetensors", "config.json"):
        shutil.copy(folder / name, repo / name)
    git = ["git", "-C", str(repo), "-c", "user.name=zoo", "-c", "user.email=zoo@localhost"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "tiny model"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    port = _free_port()
    config = root / "olah.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [basic]
            host = "127.0.0.1"
            port = {port}
            repos-path = "{root / "cache"}"
            mirrors-path = ["{root / "mirrors"}"]

            [accessibility]
            offline = true
            """
        )
    )
    log = open(root / "olah.log", "w")  # noqa: SIM115 - closed after the server stops
    url = f"http://127.0.0.1:{port}"
    environment = hub_environment(url, root / "hf")  # whatever the user exported (HF_HUB_OFFLINE=1, ...)
    env = {**os.environ, **environment.__enter__()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "olah.server", "-c", str(config), "--log-path", str(root / "logs")],
        stdout=log, stderr=subprocess.STDOUT, cwd=root, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"olah exited with {proc.returncode}: {(root / 'olah.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/api/models/{REPO}/revision/main", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:  # not listening yet
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"olah did not answer within 60 s: {(root / 'olah.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield url, commit
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        environment.__exit__(None, None, None)


def test_download_through_olah(olah: tuple[str, str], folder: Path, tmp_path: Path) -> None:
    url, commit = olah
    api = HfApi(endpoint=url)
    assert sorted(api.list_repo_files(REPO)) == ["config.json", "model.safetensors"]
    assert api.model_info(REPO, revision="main").sha == commit
    sha = sha256sum(folder / "model.safetensors")
    got = pull(REPO, commit, sha256=sha, endpoint=url, cache_dir=tmp_path / "cache")
    # the mirror's git repository holds the weights as a regular file: verified by the git blob id olah reports
    verified = json.loads((got / "hub.json").read_text())["verified"]
    assert verified == {n: f"git-sha1:{git_blob_oid((folder / n).read_bytes())}" for n in ("config.json", WEIGHTS)}
    model = timm.create_model("test_resnet", num_classes=3)
    model.load_state_dict(load_state_dict(got / "model.safetensors", expected_sha256=sha))
    x = torch.rand(1, 3, 32, 32)
    reference = timm.create_model("test_resnet", num_classes=3)
    reference.load_state_dict(load_state_dict(folder / "model.safetensors"))
    torch.testing.assert_close(model.eval()(x), reference.eval()(x))
    # a wrong pin through the mirror is refused and evicted like any other
    with pytest.raises(WeightsIntegrityError, match="was removed"):
        pull(REPO, commit, sha256="f" * 64, endpoint=url, cache_dir=tmp_path / "cache")
    assert not (got / "model.safetensors").exists()


def _cached(cache: Path, rev: str) -> Path:
    return cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / rev / "model.safetensors"


def test_cut_off_download_is_retried_and_verified(hub: HubServer, folder: Path, tmp_path: Path) -> None:
    rev, sha = hub.head(REPO).oid, sha256sum(folder / "model.safetensors")
    hub.truncate(r"model\.safetensors$", keep=0.4, drop_connection=True)
    start = len(hub.requests)
    got = pull(REPO, rev, sha256=sha, endpoint=hub.url, cache_dir=tmp_path)
    assert sha256sum(got / "model.safetensors") == sha
    gets = [status for method, path, status in hub.requests[start:] if method == "GET" and "model.safetensors" in path]
    # the cut-off answer, then a second request: a Range request for the rest (206) when the client had written
    # part of the file, else the whole file again (huggingface_hub 2.4 buffers 10 MB chunks, so here: 200)
    assert gets[0] == 200 and gets[1:] in ([200], [206])


def test_short_download_is_refused_and_leaves_nothing(hub: HubServer, folder: Path, tmp_path: Path) -> None:
    rev, sha = hub.head(REPO).oid, sha256sum(folder / "model.safetensors")
    hub.truncate(r"model\.safetensors$", keep=0.5, drop_connection=False)
    with pytest.raises(WeightsUnavailableError, match="Consistency check failed"):
        pull(REPO, rev, sha256=sha, endpoint=hub.url, cache_dir=tmp_path)
    assert not _cached(tmp_path, rev).exists()
    with pytest.raises(LocalEntryNotFoundError):
        hf_hub_download(REPO, "model.safetensors", revision=rev, cache_dir=tmp_path, local_files_only=True)
    hub.clear()
    assert sha256sum(pull(REPO, rev, sha256=sha, endpoint=hub.url, cache_dir=tmp_path) / "model.safetensors") == sha


_KILLED_CHILD = """
import sys
from huggingface_hub import hf_hub_download
hf_hub_download(sys.argv[1], "model.safetensors", revision=sys.argv[2], endpoint=sys.argv[3], cache_dir=sys.argv[4])
"""


def test_killed_download_leaves_no_file_that_passes(hub: HubServer, folder: Path, tmp_path: Path) -> None:
    rev, sha = hub.head(REPO).oid, sha256sum(folder / "model.safetensors")
    hub.state.throttle_bps = 128 * 1024  # 1.5 MB at 128 kB/s: about 12 s; killed about a second in
    env = {**os.environ, "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_CHILD, REPO, rev, hub.url, str(tmp_path)], env=env)
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.rglob("*.incomplete")):  # the body is being received
            assert proc.poll() is None, "the download ended before it could be killed"
            assert time.monotonic() < deadline, "no partial download appeared"
            time.sleep(0.05)
        time.sleep(1.0)
        assert proc.poll() is None, "the download ended before it could be killed"
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode != 0
    assert not _cached(tmp_path, rev).exists()
    with pytest.raises(LocalEntryNotFoundError):
        hf_hub_download(REPO, "model.safetensors", revision=rev, cache_dir=tmp_path, local_files_only=True)
    hub.clear()
    got = pull(REPO, rev, sha256=sha, endpoint=hub.url, cache_dir=tmp_path)
    assert sha256sum(got / "model.safetensors") == sha


def test_sha256_mismatch_is_refused_and_evicted(hub: HubServer, folder: Path, tmp_path: Path) -> None:
    rev, sha = hub.head(REPO).oid, sha256sum(folder / "model.safetensors")
    hub.corrupt(r"model\.safetensors$")  # same size and headers, different bytes: only the sha256 can tell
    with pytest.raises(WeightsIntegrityError, match="was removed"):
        pull(REPO, rev, sha256=sha, endpoint=hub.url, cache_dir=tmp_path)
    assert not _cached(tmp_path, rev).exists()
    blob = sha256sum(folder / "model.safetensors")  # the client names blobs by their ETag: the sha256 for LFS files
    assert not (tmp_path / f"models--{REPO.replace('/', '--')}" / "blobs" / blob).exists()
    hub.clear()
    assert sha256sum(pull(REPO, rev, sha256=sha, endpoint=hub.url, cache_dir=tmp_path) / "model.safetensors") == sha


def test_unknown_revision_is_a_clear_error(hub: HubServer, tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailableError, match="could not get zoo/tiny@nope"):
        pull(REPO, "nope", endpoint=hub.url, cache_dir=tmp_path)
