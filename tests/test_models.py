"""Zoo models through timm, torch.hub and our factory; weights saved, resolved and refused."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest
import timm
import torch

import consistentzoo
from consistentzoo.models import (
    CheckpointMismatchError,
    HubLocation,
    UnknownModelError,
    WeightsIntegrityError,
    WeightsUnavailableError,
    get_weights,
    resolve_weights_file,
    save_pretrained,
)
from consistentzoo.models.metadata import REPO_ROOT
from consistentzoo.models.weights import sha256sum


def test_timm_creates_every_zoo_name() -> None:
    for name in consistentzoo.list_models():
        with torch.device("meta"):
            model = timm.create_model(name, num_classes=10)
        assert model.num_classes == 10, name
        assert (model.global_pool.pool_type == "max") == ("_gmp_" in name) if name.startswith("resnet") else True


def test_timm_names_not_overwritten() -> None:
    assert type(timm.create_model("resnet18")).__name__ == "ResNet"
    assert consistentzoo.list_models("resnet50_*") == sorted(
        f"resnet50{p}_{o}" for p in ("", "_gmp") for o in ("ce", "gc", "cgc", "ssim", "guided")
    )


def test_alexnet_interface_at_224_and_448() -> None:
    model = timm.create_model("alexnet_gc", num_classes=7).eval()
    assert model(torch.randn(2, 3, 448, 448)).shape == (2, 7)
    feats = model.forward_features(torch.randn(1, 3, 224, 224))
    assert feats.shape == (1, 256, 6, 6)
    assert model.forward_features(torch.randn(1, 3, 448, 448)).shape == (1, 256, 13, 13)
    assert model.get_classifier() is model.classifier[6]
    model.reset_classifier(3)
    assert model(torch.randn(1, 3, 224, 224)).shape == (1, 3)
    assert model.pretrained_cfg["classifier"] == "classifier.6"
    assert [f["module"] for f in model.feature_info][-1] == "features.12"


def test_alexnet_loads_torchvision_state_dict() -> None:
    import torchvision

    tv = torchvision.models.alexnet(num_classes=5).eval()
    ours = consistentzoo.create_model("alexnet_ce", num_classes=5).eval()
    ours.load_state_dict(tv.state_dict())
    x = torch.randn(2, 3, 224, 224)
    torch.testing.assert_close(ours(x), tv(x))


def test_alexnet_features_only() -> None:
    model = timm.create_model("alexnet_ce", features_only=True, out_indices=(1, 4))
    shapes = [f.shape[1:] for f in model(torch.randn(1, 3, 224, 224))]
    assert shapes == [(192, 27, 27), (256, 6, 6)]


def test_gmp_pooling_survives_classifier_reset() -> None:
    model = consistentzoo.create_model("resnet18_gmp_gc", num_classes=10)
    model.reset_classifier(4)
    assert model.global_pool.pool_type == "max" and model.num_classes == 4
    model.reset_classifier(4, global_pool="avg")  # explicit change still possible
    assert model.global_pool.pool_type == "avg"


def test_unknown_names_list_close_matches() -> None:
    with pytest.raises(UnknownModelError, match="resnet50_cgc"):
        consistentzoo.create_model("resnet50_cgcc")
    with pytest.raises(KeyError, match="resnet50_cgc.in1k"):
        consistentzoo.create_model("resnet50_cgc.in2k")


def test_unpublished_tag_names_the_recipe() -> None:
    # resnet18_cgc.in1k: no Hub copy and no upstream release (resnet50_cgc.in1k has one, see test_models_upstream.py)
    with pytest.raises(WeightsUnavailableError, match="train_cgc.py --config recipes/configs/resnet18_cgc.in1k"):
        consistentzoo.create_model("resnet18_cgc.in1k", pretrained=True)
    with pytest.raises(WeightsUnavailableError, match="no weight tags"):
        consistentzoo.create_model("resnet50_gmp_cgc", pretrained=True)


@pytest.fixture
def saved(tmp_path):
    model = consistentzoo.create_model("resnet18_gmp_gc", num_classes=3).eval()
    save_pretrained(model, tmp_path / "out", half=False)
    return model, tmp_path / "out"


def test_save_and_load_folder(saved) -> None:
    model, folder = saved
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["architecture"] == "resnet18" and cfg["model_args"]["global_pool"] == "max"
    assert cfg["consistentzoo"]["zoo_name"] == "resnet18_gmp_gc"
    x = torch.randn(2, 3, 64, 64)
    for loaded in (
        consistentzoo.create_model("resnet18_gmp_gc", pretrained=folder),
        timm.create_model(f"local-dir:{folder}", pretrained=True),  # stock timm, from the same folder
    ):
        assert loaded.global_pool.pool_type == "max"
        torch.testing.assert_close(loaded.eval()(x), model(x))


def test_alexnet_folder_loads_with_timm_local_dir(tmp_path) -> None:
    model = consistentzoo.create_model("alexnet_gc", num_classes=4).eval()
    save_pretrained(model, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["architecture"] == "alexnet"
    x = torch.randn(1, 3, 224, 224)
    torch.testing.assert_close(timm.create_model(f"local-dir:{tmp_path}", pretrained=True).eval()(x), model(x))


def test_num_classes_mismatch_is_named(saved) -> None:
    model, folder = saved
    with pytest.raises(CheckpointMismatchError, match="3 classes but the model was built with num_classes=10"):
        consistentzoo.create_model("resnet18_gmp_gc", pretrained=folder, num_classes=10)
    fresh = consistentzoo.create_model("resnet18_gmp_gc", pretrained=folder, num_classes=10, reset_head=True)
    torch.testing.assert_close(fresh.conv1.weight, model.conv1.weight)
    with pytest.raises(CheckpointMismatchError, match="resnet18"):
        consistentzoo.create_model("resnet50_gc", pretrained=folder)


def test_half_precision_weights_load_as_float(tmp_path) -> None:
    model = consistentzoo.create_model("resnet18_ce", num_classes=2).eval()
    save_pretrained(model, tmp_path, half=True)
    loaded = consistentzoo.create_model("resnet18_ce", pretrained=tmp_path)
    assert loaded.fc.weight.dtype == torch.float32
    torch.testing.assert_close(loaded.fc.weight, model.fc.weight.half().float())


def test_truncated_weights_are_refused(saved) -> None:
    _, folder = saved
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsIntegrityError, match="not a readable safetensors"):
        consistentzoo.create_model("resnet18_gmp_gc", pretrained=folder)


def test_tag_resolution_from_env_folder_verifies_sha256(saved, tmp_path, monkeypatch) -> None:
    model, folder = saved
    rec = get_weights("resnet18_gmp_gc.coco")
    digest = sha256sum(folder / "model.safetensors")
    published = dataclasses.replace(rec, hub=HubLocation("org/none", "0" * 40, digest))
    root = tmp_path / "weights"
    (root / rec.name).mkdir(parents=True)
    (root / rec.name / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    monkeypatch.setenv("CONSISTENTZOO_WEIGHTS", str(root))
    assert resolve_weights_file(published) == root / rec.name / "model.safetensors"
    tampered = dataclasses.replace(rec, hub=HubLocation("org/none", "0" * 40, "f" * 64))
    with pytest.raises(WeightsIntegrityError, match="sha256"):
        resolve_weights_file(tampered)


def test_unreachable_hub_says_so_quickly(tmp_path) -> None:
    code = (
        "import dataclasses, consistentzoo\n"
        "from consistentzoo.models import HubLocation, get_weights, resolve_weights_file\n"
        "rec = dataclasses.replace(get_weights('resnet18_gc.in1k'), hub=HubLocation('org/x', 'a' * 40, 'b' * 64))\n"
        "resolve_weights_file(rec)\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path))
    env.pop("CONSISTENTZOO_WEIGHTS", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "WeightsUnavailableError: could not get resnet18_gc.in1k from the Hub" in out.stderr
    assert "CONSISTENTZOO_WEIGHTS" in out.stderr


def _hub_entrypoints() -> list[str]:
    """``torch.hub.list('.', source='local')`` where torch has it; torch 2.14's ``list`` reads GitHub only."""
    import inspect

    if "source" in inspect.signature(torch.hub.list).parameters:
        return torch.hub.list(str(REPO_ROOT), source="local")
    module = torch.hub._import_module("hubconf", str(REPO_ROOT / "hubconf.py"))
    return [f for f in dir(module) if callable(getattr(module, f)) and not f.startswith("_")]


def test_torch_hub_local() -> None:
    assert sorted(_hub_entrypoints()) == consistentzoo.list_models()
    model = torch.hub.load(str(REPO_ROOT), "resnet50_cgc", source="local", pretrained=False)
    assert model.pretrained_cfg["architecture"] == "resnet50_cgc"
    module = torch.hub._import_module("hubconf", str(REPO_ROOT / "hubconf.py"))
    assert "74.6" in module.resnet50_cgc.__doc__  # the paper's headline top-1, as torch.hub.help prints it
    small = torch.hub.load(str(REPO_ROOT), "alexnet_gc", source="local", num_classes=7)
    assert small(torch.randn(2, 3, 448, 448)).shape == (2, 7)


def test_cli_list_and_info(capsys) -> None:
    from consistentzoo.cli import main

    assert main(["list", "alexnet_*"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [f"alexnet_{o}" for o in ("ce", "cgc", "gc", "guided", "ssim")]
    marks = {line.split()[0]: line for line in lines}
    assert all(marks[f"alexnet_{o}"].endswith("no weights yet") for o in ("cgc", "guided", "ssim"))
    assert "alexnet_ce.in1k" in marks["alexnet_ce"] and "alexnet_gc.in1k" in marks["alexnet_gc"]  # upstream releases
    assert main(["info", "resnet18_gmp_gc.coco"]) == 0
    out = capsys.readouterr().out
    assert "recipes/configs/resnet18_gmp_gc.coco.yaml" in out and "global_pool" in out
    assert main(["info", "resnet18_gmp_gcc"]) == 2
    assert "Did you mean" in capsys.readouterr().err


COMMITTED = [w for w in consistentzoo.list_weights() if w.local_dir]


@pytest.mark.skipif(not COMMITTED, reason="no weights are committed to the repository yet")
@pytest.mark.parametrize("rec", COMMITTED, ids=[w.name for w in COMMITTED])
def test_committed_weights_load_through_torch_hub(rec) -> None:
    """The weights in the repository (fp16 safetensors, sha256 recorded) load by tag, as a fresh clone's user would."""
    assert sha256sum(REPO_ROOT / rec.local_dir / "model.safetensors") == rec.sha256
    model = torch.hub.load(str(REPO_ROOT), rec.zoo_name, source="local", pretrained=True, pretrained_cfg=rec.tag)
    assert model.pretrained_cfg["tag"] == rec.tag and model.num_classes == rec.num_classes
    same = consistentzoo.create_model(rec.zoo_name, pretrained=REPO_ROOT / rec.local_dir)
    for a, b in zip(model.state_dict().values(), same.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    assert model.eval()(torch.randn(2, *rec.input_size)).shape == (2, rec.num_classes)
    assert rec.name in consistentzoo.list_models(pretrained=True)


def test_cifar_stem_tag_round_trips_through_a_folder(tmp_path) -> None:
    """A tag's architecture arguments (the CIFAR stem) are saved, and a bare name stays the plain architecture."""
    model = consistentzoo.create_model("resnet18_guided.cifar100").eval()
    assert model.conv1.kernel_size == (3, 3)
    assert consistentzoo.create_model("resnet18_guided", num_classes=3).conv1.kernel_size == (7, 7)
    save_pretrained(model, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_args"]["stem"] == "cifar"
    loaded = consistentzoo.create_model("resnet18_guided", pretrained=tmp_path).eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded(x), model(x))
