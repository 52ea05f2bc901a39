"""What the Hub round trip verifies (issue 17, "Integrity" and "The test suite itself").

- ``pull(repo)`` without a recorded sha256 and a file with one flipped byte: refused against the hash the Hub reports
  (LFS sha256 for the weights, git blob id for regular files), removed from the cache, and the verified hashes are
  recorded in ``hub.json``; an offline pull checks the cached files against that record;
- ``push`` of a folder whose ``model.safetensors`` is cut to 1000 bytes, whose ``config.json`` names another class
  count, or whose weights are NaN: refused before any request;
- with ``HF_HUB_OFFLINE=1``, an odd ``HF_HOME`` and a stray ``HF_TOKEN`` exported, a test that starts a server still
  passes: the server sets the environment it needs (and restores the user's afterwards).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from hub_server import HubServer
from huggingface_hub import constants
from safetensors.torch import load_file, save_file

from consistentzoo.hub import InvalidWeightsError, pull, push
from consistentzoo.models import WeightsIntegrityError
from consistentzoo.models.weights import sha256sum

TOKEN = "hf_test_write"
REPO = "zoo/integrity"


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


def _cached(cache: Path, rev: str, name: str) -> Path:
    return cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / rev / name


def test_server_reports_lfs_hashes_as_the_hub_does(hub: HubServer, folder: Path) -> None:
    from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_url

    rev, sha = hub.head(REPO).oid, sha256sum(folder / "model.safetensors")
    meta = get_hf_file_metadata(hf_hub_url(REPO, "model.safetensors", revision=rev, endpoint=hub.url))
    assert meta.etag == sha and meta.size == (folder / "model.safetensors").stat().st_size
    (info,) = HfApi(endpoint=hub.url).get_paths_info(REPO, ["model.safetensors"], revision=rev)
    assert info.lfs is not None and info.lfs.sha256 == sha


@pytest.mark.parametrize(("name", "at"), [("model.safetensors", 100_000), ("config.json", 20)])
def test_pull_without_sha256_refuses_a_flipped_byte(hub: HubServer, folder: Path, tmp_path: Path, name: str, at: int):
    """One byte flipped in the weights' tensor data (which would load silently) or in config.json."""
    rev = hub.head(REPO).oid
    hub.corrupt(rf"{name}$", at=at)
    with pytest.raises(WeightsIntegrityError, match=rf"{name} has .*not the hash the Hub reports .*was removed"):
        pull(REPO, rev, endpoint=hub.url, cache_dir=tmp_path)
    assert not _cached(tmp_path, rev, name).exists()
    hub.clear()
    got = pull(REPO, rev, endpoint=hub.url, cache_dir=tmp_path)
    record = json.loads((got / "hub.json").read_text())
    assert record["revision"] == rev and record["sha256"] == sha256sum(folder / "model.safetensors")
    assert record["verified"]["model.safetensors"] == f"sha256:{record['sha256']}"
    assert set(record["verified"]) == {".gitattributes", "config.json", "model.safetensors"}


def test_offline_pull_checks_the_cache_against_the_record(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rev = hub.head(REPO).oid
    got = pull(REPO, rev, endpoint=hub.url, cache_dir=tmp_path)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    before = len(hub.requests)
    assert pull(REPO, rev, endpoint=hub.url, cache_dir=tmp_path) == got  # from the cache, verified
    blob = (got / "model.safetensors").resolve()
    data = bytearray(blob.read_bytes())
    data[100_000] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(WeightsIntegrityError, match="model.safetensors has sha256"):
        pull(REPO, rev, endpoint=hub.url, cache_dir=tmp_path)
    assert hub.requests[before:] == []  # offline: not one request


def _copy(folder: Path, dest: Path) -> Path:
    shutil.copytree(folder, dest, ignore=shutil.ignore_patterns("hub.json"))
    return dest


def test_push_refuses_truncated_weights_before_any_request(hub: HubServer, folder: Path, tmp_path: Path) -> None:
    bad = _copy(folder, tmp_path / "cut")
    (bad / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes()[:1000])
    start = len(hub.requests)
    with pytest.raises(InvalidWeightsError, match="model.safetensors does not load as the test_resnet.*nothing was"):
        push(bad, "zoo/cut", token=TOKEN, endpoint=hub.url)
    assert hub.requests[start:] == []
    assert not (bad / "hub.json").exists()


def test_push_refuses_weights_that_do_not_fit_their_config(hub: HubServer, folder: Path, tmp_path: Path) -> None:
    bad = _copy(folder, tmp_path / "classes")
    cfg = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**cfg, "num_classes": 5}))
    start = len(hub.requests)
    with pytest.raises(InvalidWeightsError, match="num_classes=5 but model_args.num_classes=3.*nothing was uploaded"):
        push(bad, "zoo/classes", token=TOKEN, endpoint=hub.url)
    assert hub.requests[start:] == []


def test_push_refuses_nan_weights(hub: HubServer, folder: Path, tmp_path: Path) -> None:
    """The finite check lives in consistentzoo.models.load_state_dict; push goes through it."""
    bad = _copy(folder, tmp_path / "nan")
    state = load_file(bad / "model.safetensors")
    state["fc.bias"][0] = float("nan")
    save_file(state, bad / "model.safetensors", metadata={"format": "pt"})
    start = len(hub.requests)
    with pytest.raises(InvalidWeightsError, match="fc.bias"):
        push(bad, "zoo/nan", token=TOKEN, endpoint=hub.url)
    assert hub.requests[start:] == []


def test_a_server_sets_the_environment_it_needs(folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_HUB_OFFLINE=1, an odd HF_HOME and a stray HF_TOKEN exported (read at import into the constants, too)."""
    odd = str(tmp_path / "odd home")
    for key, value in {"HF_HUB_OFFLINE": "1", "HF_HOME": odd, "HF_TOKEN": "hf_not_ours"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HOME", odd)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(Path(odd) / "hub"))
    with HubServer() as server:
        result = push(folder, "zoo/env", token=TOKEN, endpoint=server.url)
        got = pull("zoo/env", result.revision)  # default endpoint and cache: the server's environment
        assert sha256sum(got / "model.safetensors") == result.sha256
        assert not Path(odd).exists()  # nothing of the user's HF_HOME was touched
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["HF_TOKEN"] == "hf_not_ours"
    assert constants.HF_HUB_OFFLINE is True and constants.HF_HOME == odd  # the user's environment is back
