"""The full round trip against a Hub-protocol server on 127.0.0.1, with the real huggingface_hub client.

create repo -> push (one commit) -> list -> download -> load (consistentzoo folder, ``pretrained=True``, stock timm
``hf-hub:``) -> card parsed back; then the same loads offline from the cache (``HF_HUB_OFFLINE=1``).
``HF_ENDPOINT``/``HF_HUB_OFFLINE``/``HF_HOME`` are read when huggingface_hub is imported, so the loads that go through
them (``pretrained=True``, timm's ``hf-hub:``) run in child processes started with those variables set.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from hub_server import HubServer
from huggingface_hub import HfApi, ModelCard
from PIL import Image

import consistentzoo
from consistentzoo.hub import CARD_IMAGE_NAME, HUB_RECORD_NAME, pull, push
from consistentzoo.models import get_weights, save_pretrained
from consistentzoo.models.weights import sha256sum

TOKEN = "hf_test_write"
REPO = "zoo/resnet18_gmp_ce.tiny"
TAG = "resnet18_gmp_ce.in1k"


@pytest.fixture(scope="module")
def hub():
    with HubServer() as server:
        yield server


@pytest.fixture(scope="module")
def record():
    """The tag's record with 3 classes: not registered (the child process swaps it in for itself)."""
    return dataclasses.replace(get_weights(TAG), num_classes=3, label_names=("cat", "dog", "fish"), measured={})


@pytest.fixture(scope="module")
def pushed(hub: HubServer, record, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A GMP ResNet-18 (3 classes, fp16 weights) pushed with a metrics JSON, a training config and a figure."""
    folder = tmp_path_factory.mktemp("weights")
    model = consistentzoo.create_model("resnet18_gmp_ce", num_classes=3).eval()
    save_pretrained(model, folder, half=True)
    (folder / "config.yaml").write_text("model: resnet18_gmp_ce\nobjective: ce\nepochs: 1\n")
    rows = [{"model": "resnet18_gmp_ce", "tag": "in1k", "dataset": "imagenet-1k", "split": "validation",
             "method": "gradcam", "metric": "pointing_game", "value": 0.75, "std": 0.01, "n": 8}]  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps({"schema_version": 1, "results": rows}))
    Image.new("RGB", (16, 8), (0, 128, 255)).save(folder / CARD_IMAGE_NAME)
    x = torch.rand(2, 3, 64, 64)
    expected = consistentzoo.create_model("resnet18_gmp_ce", pretrained=folder).eval()(x)
    io_dir = tmp_path_factory.mktemp("io")
    torch.save({"x": x, "y": expected.detach()}, io_dir / "io.pt")

    result = push(folder, REPO, token=TOKEN, endpoint=hub.url, tag=record)
    return {"folder": folder, "result": result, "io": io_dir / "io.pt", "x": x, "y": expected.detach()}


def test_push_is_one_commit_with_every_file_and_records_its_revision(hub: HubServer, pushed: dict) -> None:
    result = pushed["result"]
    head = hub.head(REPO)
    assert result.revision == head.oid and head.parent is not None  # created repo's first commit, then ours
    assert len(hub.state.repos[("model", REPO)].commits) == 2
    assert result.sha256 == sha256sum(pushed["folder"] / "model.safetensors")
    expected = {"model.safetensors", "config.json", "config.yaml", "metrics.json", "README.md", CARD_IMAGE_NAME}
    assert set(result.files) == expected
    assert json.loads((pushed["folder"] / HUB_RECORD_NAME).read_text())["revision"] == result.revision

    api = HfApi(endpoint=hub.url, token=TOKEN)
    assert set(api.list_repo_files(REPO)) == expected | {".gitattributes"}
    assert api.model_info(REPO, revision=result.revision).sha == result.revision
    commits = [r for r in hub.requests if r[0] == "POST" and "/commit/" in r[1]]
    assert len(commits) == 1


def test_download_load_and_card(hub: HubServer, pushed: dict, tmp_path: Path) -> None:
    result = pushed["result"]
    folder = pull(REPO, result.revision, sha256=result.sha256, endpoint=hub.url, cache_dir=tmp_path / "cache")
    model = consistentzoo.create_model("resnet18_gmp_ce", pretrained=folder).eval()
    assert model.global_pool.pool_type == "max"
    torch.testing.assert_close(model(pushed["x"]), pushed["y"])
    assert (folder / "config.yaml").is_file() and (folder / CARD_IMAGE_NAME).is_file()

    card = ModelCard.load(folder / "README.md")
    (res,) = card.data.eval_results
    assert (res.metric_type, res.metric_value, res.dataset_split) == ("pg", 0.75, "validation")
    assert card.data.model_name == TAG and card.data.library_name == "timm"
    assert f"hf-hub:{REPO}" in card.text and result.sha256 in card.text and f"]({CARD_IMAGE_NAME})" in card.text


_CHILD = textwrap.dedent(
    """
    import dataclasses, json, sys
    import torch

    args = json.loads(sys.argv[1])
    io = torch.load(args["io"], weights_only=True)
    import timm

    # stock timm, before consistentzoo is imported: config.json alone must rebuild the GMP ResNet
    m = timm.create_model(f"hf-hub:{args['repo']}@{args['revision']}", pretrained=True).eval()
    assert "consistentzoo" not in sys.modules
    out = {"timm_pool": m.global_pool.pool_type, "timm_err": float((m(io["x"]) - io["y"]).abs().max())}

    import consistentzoo
    from consistentzoo.models import HubLocation, WeightsIntegrityError, get_weights, metadata

    def use(sha):  # the test's record replaces the tag's in this child process only
        rec = dataclasses.replace(get_weights(args["tag"]), num_classes=3,
                                  hub=HubLocation(args["repo"], args["revision"], sha))
        metadata._WEIGHTS[rec.name] = rec
        return rec

    if args["wrong_sha"]:
        rec = use("0" * 64)
        from consistentzoo.models import resolve_weights_file
        try:
            resolve_weights_file(rec)
            out["wrong_sha"] = "accepted"
        except WeightsIntegrityError as e:
            from huggingface_hub import try_to_load_from_cache
            out["wrong_sha"] = "refused"
            out["evicted"] = not isinstance(try_to_load_from_cache(
                args["repo"], "model.safetensors", revision=args["revision"]), str)
    use(args["sha256"])
    m = consistentzoo.create_model(args["tag"], pretrained=True, num_classes=3).eval()
    out["zoo_pool"] = m.global_pool.pool_type
    out["zoo_err"] = float((m(io["x"]) - io["y"]).abs().max())
    print(json.dumps(out))
    """
)


def _child(env: dict[str, str], args: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(args)], env=env, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_pretrained_true_and_stock_timm_online_then_offline(hub: HubServer, pushed: dict, tmp_path: Path) -> None:
    result = pushed["result"]
    args = {"repo": REPO, "revision": result.revision, "sha256": result.sha256, "tag": TAG, "io": str(pushed["io"])}
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT=hub.url, HF_HUB_DISABLE_TELEMETRY="1")

    online = _child(env, {**args, "wrong_sha": True})
    assert online["timm_pool"] == "max" and online["zoo_pool"] == "max"
    assert online["timm_err"] < 1e-5 and online["zoo_err"] < 1e-5
    assert online["wrong_sha"] == "refused" and online["evicted"]

    # offline: the same loads from the cache, and not one request reaches the server
    before = len(hub.requests)
    offline = _child({**env, "HF_HUB_OFFLINE": "1"}, {**args, "wrong_sha": False})
    assert offline["timm_pool"] == "max" and offline["timm_err"] < 1e-5 and offline["zoo_err"] < 1e-5
    assert len(hub.requests) == before
