"""Zoo weights through timm's own pretrained loading (issue 16 parts 1-3), and weights files checked as data (issue 17).

Expected values come from stock timm: ``timm.create_model("resnet18", pretrained=True,
pretrained_cfg_overlay=dict(file=F, num_classes=10), ...)`` loading the same safetensors file ``F``.
Every situation is tried through the four ways a user reaches a zoo tag: ``consistentzoo.create_model``,
``timm.create_model``, ``torch.hub.load(<repo>, ..., source="local")`` and a weights folder.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

import consistentzoo
from consistentzoo.models import (
    CheckpointMismatchError,
    WeightsIntegrityError,
    get_weights,
    list_weights,
    save_pretrained,
)
from consistentzoo.models.errors import WeightsConfigError
from consistentzoo.models.metadata import REPO_ROOT

TAG = "resnet18_cgc.fashion_scenes"
FOLDER = REPO_ROOT / "weights" / TAG
FILE = FOLDER / "model.safetensors"
OTHER = REPO_ROOT / "weights" / "resnet18_ce.fashion_scenes" / "model.safetensors"

pytestmark = pytest.mark.skipif(not FILE.is_file(), reason=f"the committed weights {FILE} are absent")


def _hub(**kw):
    return torch.hub.load(
        str(REPO_ROOT), "resnet18_cgc", source="local", pretrained=True, pretrained_cfg="fashion_scenes", **kw
    )


ROUTES: dict[str, Callable[..., torch.nn.Module]] = {
    "consistentzoo": lambda **kw: consistentzoo.create_model(TAG, pretrained=True, **kw),
    "timm": lambda **kw: timm.create_model(TAG, pretrained=True, **kw),
    "torch.hub": _hub,
    "folder": lambda **kw: consistentzoo.create_model("resnet18_cgc", pretrained=FOLDER, **kw),
}


# the tag's architecture arguments (half-width stages), which stock timm's resnet18 takes as they are
ARCH = {k: v for k, v in get_weights(TAG).model_args.items() if k != "global_pool"}


def stock(file: Path = FILE, **kw) -> torch.nn.Module:
    """Stock timm's resnet18 (with the tag's architecture arguments) with ``file`` as its pretrained weights."""
    return timm.create_model(
        "resnet18", pretrained=True, pretrained_cfg_overlay=dict(file=str(file), num_classes=10), **ARCH, **kw
    )


def assert_same(a: torch.nn.Module, b: torch.nn.Module, x: torch.Tensor) -> None:
    a.eval(), b.eval()
    with torch.no_grad():
        out_a, out_b = a(x), b(x)
    if isinstance(out_a, torch.Tensor):
        out_a, out_b = [out_a], [out_b]
    assert len(out_a) == len(out_b)
    for u, v in zip(out_a, out_b, strict=True):
        torch.testing.assert_close(u, v)


@pytest.mark.parametrize("route", ROUTES)
def test_features_only_carries_the_weights(route) -> None:
    """Was: AttributeError 'FeatureListNet' object has no attribute 'get_classifier'."""
    model = ROUTES[route](features_only=True)
    x = torch.randn(1, 3, 64, 64)
    assert_same(model, stock(features_only=True), x)
    assert len(model(x)) == 5
    assert not torch.equal(model(x)[-1], timm.create_model("resnet18", features_only=True, **ARCH).eval()(x)[-1])


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("in_chans", [1, 4])
def test_in_chans_adapts_the_input_conv_as_timm(route, in_chans) -> None:
    """Was: a raw size-mismatch RuntimeError on conv1.weight."""
    model = ROUTES[route](in_chans=in_chans)
    assert model.conv1.weight.shape[1] == in_chans
    assert_same(model, stock(in_chans=in_chans), torch.randn(2, in_chans, 64, 64))
    if in_chans == 1:  # timm's rule for one channel: the RGB filters summed (in fp32, stored back in the file's fp16)
        rgb = load_file(FILE)["conv1.weight"]
        torch.testing.assert_close(model.conv1.weight, rgb.float().sum(dim=1, keepdim=True).half().float())


def test_overlay_file_replaces_the_tags_weights() -> None:
    """Was: the tag's weights loaded and OTHER was silently ignored; the bare name raised about the in1k tag."""
    x = torch.randn(2, 3, 64, 64)
    expected = stock(OTHER)
    assert_same(timm.create_model(TAG, pretrained=True, pretrained_cfg_overlay=dict(file=str(OTHER))), expected, x)
    assert_same(
        consistentzoo.create_model(TAG, pretrained=True, pretrained_cfg_overlay=dict(file=str(OTHER))), expected, x
    )
    bare = dict(file=str(OTHER), num_classes=10)  # a bare name needs the file's architecture arguments, as in timm
    assert_same(timm.create_model("resnet18_gc", pretrained=True, pretrained_cfg_overlay=bare, **ARCH), expected, x)
    hub = torch.hub.load(
        str(REPO_ROOT), "resnet18_gc", source="local", pretrained=True, pretrained_cfg_overlay=bare, **ARCH
    )
    assert_same(hub, expected, x)
    assert not torch.equal(stock(FILE).fc.weight, expected.fc.weight)  # the two files differ


def test_overlay_file_that_does_not_exist_is_named(tmp_path) -> None:
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError, match=r"nope.safetensors\): the pretrained weights file does not exist"):
        timm.create_model(TAG, pretrained=True, pretrained_cfg_overlay=dict(file=str(missing)))


def test_checkpoint_path_loads_the_given_file() -> None:
    x = torch.randn(2, 3, 64, 64)
    expected = stock(OTHER)
    bare = dict(num_classes=10, checkpoint_path=str(OTHER), **ARCH)
    assert_same(timm.create_model("resnet18_gc", **bare), expected, x)
    assert_same(consistentzoo.create_model("resnet18_gc", **bare), expected, x)
    assert_same(timm.create_model(TAG, pretrained=True, checkpoint_path=str(OTHER)), expected, x)
    hub = torch.hub.load(str(REPO_ROOT), "resnet18_gc", source="local", **bare)
    assert_same(hub, expected, x)


def _prefixed_folder(tmp_path: Path, prefix: str) -> Path:
    folder = tmp_path / prefix.strip(".")
    folder.mkdir()
    (folder / "config.json").write_text((FOLDER / "config.json").read_text())
    save_file({prefix + k: v for k, v in load_file(FILE).items()}, folder / "model.safetensors")
    return folder


def test_uniform_module_prefix_is_stripped_as_timm_does(tmp_path) -> None:
    """Was: CheckpointMismatchError listing every key as missing and unexpected."""
    folder = _prefixed_folder(tmp_path, "module.")
    x = torch.randn(2, 3, 64, 64)
    assert_same(consistentzoo.create_model("resnet18_cgc", pretrained=folder), stock(), x)
    assert_same(timm.create_model(f"local-dir:{folder}", pretrained=True), stock(), x)
    overlay = dict(file=str(folder / "model.safetensors"))
    assert_same(timm.create_model(TAG, pretrained=True, pretrained_cfg_overlay=overlay), stock(), x)


def test_other_key_mismatches_name_their_cause(tmp_path) -> None:
    folder = _prefixed_folder(tmp_path, "encoder.")
    with pytest.raises(CheckpointMismatchError, match="every weights key starts with 'encoder.'"):
        consistentzoo.create_model("resnet18_cgc", pretrained=folder)
    state = load_file(FILE)
    del state["layer4.1.bn2.running_var"]
    state["extra.weight"] = torch.zeros(1)
    save_file(state, folder / "model.safetensors")
    with pytest.raises(CheckpointMismatchError, match=r"1 model key\(s\) missing .*layer4.1.bn2.running_var.*extra"):
        consistentzoo.create_model("resnet18_cgc", pretrained=folder)


@pytest.mark.parametrize("route", ROUTES)
def test_num_classes_differing_from_the_tag(route) -> None:
    """Our API refuses a class count other than the weights' unless reset_head=True; timm.create_model keeps timm's
    contract (a new classifier; timm's own suite loads every pretrained tag with num_classes=5), with a warning. Either
    way the head is dropped by timm's rule: pretrained_cfg["num_classes"] against the model's."""
    message = "has 10 classes but the model was built with num_classes=5"
    if route == "timm":
        with pytest.warns(UserWarning, match=message):
            ROUTES[route](num_classes=5)
    else:
        with pytest.raises(CheckpointMismatchError, match=message):
            ROUTES[route](num_classes=5)
    model = ROUTES[route](num_classes=5, reset_head=True)
    expected = stock(num_classes=5)  # stock timm: classifier dropped, everything else loaded
    state, ref = model.state_dict(), expected.state_dict()
    assert state.keys() == ref.keys() and model.fc.out_features == 5
    for key in ref:
        if not key.startswith("fc."):
            torch.testing.assert_close(state[key], ref[key])
    headless = ROUTES[route](num_classes=0)  # timm's headless idiom needs no reset_head: there is no new head
    assert_same(headless, stock(num_classes=0), torch.randn(2, 3, 64, 64))


def test_bare_names_keep_their_first_tag_as_default() -> None:
    """A tag with a local file must not become the bare name's default (timm promotes the first tag with weights)."""
    for name in consistentzoo.list_models():
        first = list_weights(name)[0] if list_weights(name) else None
        cfg = timm.models.get_pretrained_cfg(name)
        assert (cfg.tag, cfg.num_classes) == ((first.tag, first.num_classes) if first else (None, 1000)), name
    assert consistentzoo.create_model("resnet18_ce").num_classes == 1000


def test_list_pretrained_lists_the_tags_whose_weights_exist() -> None:
    present = sorted(w.name for w in list_weights() if w.local_dir and (REPO_ROOT / w.local_dir).is_dir())
    assert timm.list_pretrained("resnet18_*") == [n for n in present if n.startswith("resnet18_")]
    assert TAG in present and "resnet18_gc.in1k" not in timm.list_pretrained("resnet18_*")


# ----- part 3: reset_classifier(0, "") as timm means it, against stock timm's resnet18


@pytest.mark.parametrize("name", ["resnet18_gc", "resnet18_gmp_gc"])
def test_reset_classifier_with_empty_pool_gives_unpooled_features(name) -> None:
    """Was: pooled (B, 512) with pool avg (max for GMP): '' was treated like None."""
    ours = consistentzoo.create_model(name, num_classes=10).eval()
    ref = timm.create_model("resnet18", num_classes=10).eval()
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, 64, 64)
    ours.reset_classifier(0, "")
    ref.reset_classifier(0, "")
    assert ours(x).shape == ref(x).shape == (2, 512, 2, 2)
    torch.testing.assert_close(ours(x), ref(x))
    torch.testing.assert_close(ours(x), ours.forward_features(x))


def test_reset_classifier_without_pool_keeps_gmp() -> None:
    model = consistentzoo.create_model("resnet18_gmp_gc", num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64)
    model.reset_classifier(0)
    torch.testing.assert_close(model(x), model.forward_features(x).amax(dim=(2, 3)))
    model.reset_classifier(3, "")
    assert model.global_pool.pool_type == ""


# ----- part 2: the model interface timm's test suite checks


def test_alexnet_num_features_is_the_feature_map_width() -> None:
    """Was: num_features 4096 while forward_features gives 256 channels."""
    model = consistentzoo.create_model("alexnet_gc", num_classes=10).eval()
    x = torch.randn(2, 3, 224, 224)
    feats = model.forward_features(x)
    assert feats.shape[1] == model.num_features == 256
    assert model.forward_head(feats, pre_logits=True).shape == (2, model.head_hidden_size) == (2, 4096)
    model.reset_classifier(0)
    assert model(x).shape == (2, 4096)
    model.reset_classifier(0, "")
    torch.testing.assert_close(model(x), feats)
    assert consistentzoo.create_model("alexnet_gc", num_classes=0, global_pool="")(x).shape == (2, 256, 6, 6)


@pytest.mark.parametrize("name", ["resnet18_gc", "resnet18_guided", "alexnet_gc"])
def test_torchscript(name) -> None:
    """Was: torch.jit.script failed on the zoo_architecture property reading the pretrained_cfg dict."""
    model = consistentzoo.create_model(name, num_classes=4).eval()
    scripted = torch.jit.script(model)
    x = torch.randn(1, 3, 96, 96)
    torch.testing.assert_close(scripted(x), model(x))
    assert model.zoo_architecture  # still a property in eager mode


def test_alexnet_fx_trace() -> None:
    """Was: 'module is not installed as a submodule' (a slice of the classifier)."""
    from torchvision.models.feature_extraction import create_feature_extractor

    model = consistentzoo.create_model("alexnet_gc", num_classes=4).eval()
    traced = torch.fx.symbolic_trace(model)
    x = torch.randn(1, 3, 224, 224)
    torch.testing.assert_close(traced(x), model(x))
    torch.testing.assert_close(torch.jit.script(traced)(x), model(x))  # FX code must script too (no str annotations)
    pre = create_feature_extractor(model, return_nodes={"classifier.5": "pre"})(x)["pre"]
    torch.testing.assert_close(pre, model.forward_head(model.forward_features(x), pre_logits=True))


def test_pool_size_of_every_tag_is_its_feature_grid() -> None:
    """timm's suite checks forward_features against pool_size; one tag per architecture, input size and stem."""
    kinds = {(w.architecture, w.input_size, tuple(sorted(w.model_args.items()))): w for w in list_weights()}
    assert len(kinds) >= 6
    for rec in kinds.values():
        with torch.device("meta"):
            model = consistentzoo.create_model(rec.name)
        feats = model.forward_features(torch.empty(1, *rec.input_size, device="meta"))
        assert tuple(feats.shape[-2:]) == model.pretrained_cfg["pool_size"], rec.name


# ----- issue 17: weights and configs are data, checked before use


def _folder_with(tmp_path: Path, state=None, config=None, text=None) -> Path:
    folder = tmp_path / "w"
    folder.mkdir(exist_ok=True)
    save_file(state if state is not None else load_file(FILE), folder / "model.safetensors")
    cfg = json.loads((FOLDER / "config.json").read_text())
    cfg.update(config or {})
    (folder / "config.json").write_text(text if text is not None else json.dumps(cfg, indent=2))
    return folder


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path, bad) -> None:
    state = load_file(FILE)
    state["layer2.0.conv1.weight"][0, 0, 0, 0] = bad
    folder = _folder_with(tmp_path, state)
    with pytest.raises(WeightsIntegrityError, match="'layer2.0.conv1.weight' holds 1 NaN or infinite"):
        consistentzoo.create_model("resnet18_cgc", pretrained=folder)
    with pytest.raises(WeightsIntegrityError, match="'layer2.0.conv1.weight'"):
        timm.create_model(TAG, pretrained=True, pretrained_cfg_overlay=dict(file=str(folder / "model.safetensors")))


def test_dtype_kind_mismatch_is_refused_naming_the_tensor(tmp_path) -> None:
    """Was: an int8 tensor where float is expected was cast silently."""
    state = load_file(FILE)
    state["fc.weight"] = state["fc.weight"].to(torch.int8)
    folder = _folder_with(tmp_path, state)
    with pytest.raises(WeightsIntegrityError, match=r"'fc.weight' is torch.int8 \(integer\) where the model has"):
        consistentzoo.create_model("resnet18_cgc", pretrained=folder)


def test_config_model_args_are_only_model_arguments(tmp_path) -> None:
    """Was: model_args {"checkpoint_path": ...} made create_model open that file."""
    bait = tmp_path / "bait.pth"
    folder = _folder_with(tmp_path, config={"model_args": {"checkpoint_path": str(bait)}})
    with pytest.raises(
        WeightsConfigError,
        match="'checkpoint_path' is not a model argument of resnet18; valid keys:.*global_pool.*in_chans",
    ):
        consistentzoo.create_model("resnet18_cgc", pretrained=folder)


def test_config_num_classes_of_the_wrong_type_names_the_key(tmp_path) -> None:
    folder = _folder_with(tmp_path, config={"num_classes": "ten"})
    with pytest.raises(WeightsConfigError, match="'num_classes' must be an integer >= 0, got 'ten'"):
        consistentzoo.create_model("resnet18_cgc", pretrained=folder)


def test_malformed_config_names_the_file_and_line(tmp_path) -> None:
    folder = _folder_with(tmp_path, text='{\n  "architecture": "resnet18",\n  "num_classes": 10,,\n}')
    with pytest.raises(WeightsConfigError, match=r"w/config.json, line 3 column 21: not valid JSON"):
        consistentzoo.create_model("resnet18_cgc", pretrained=folder)


def test_config_class_count_contradicting_the_weights_names_both(tmp_path) -> None:
    """Was: 'has 10 classes but the model was built with 10'."""
    folder = _folder_with(tmp_path, config={"num_classes": 3, "model_args": {"num_classes": 3}})
    with pytest.raises(CheckpointMismatchError, match=r"the weights have 10 classes .* config says num_classes=3"):
        consistentzoo.create_model("resnet18_cgc", pretrained=folder)


def test_config_architecture_contradicting_the_weights_names_both(tmp_path) -> None:
    resnet18 = consistentzoo.create_model("resnet18_cgc", num_classes=10).state_dict()  # timm's widths: recognisable
    folder = _folder_with(tmp_path, state=resnet18, config={"architecture": "resnet50", "model_args": {}})
    with pytest.raises(
        CheckpointMismatchError,
        match=r"fit ZooResNet \(resnet50_cgc\): 198 model key\(s\) missing .* \(the weights are a resnet18.s\)",
    ):
        consistentzoo.create_model("resnet50_cgc", pretrained=folder)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_saved_files_follow_the_umask(tmp_path, umask) -> None:
    """Was: mkstemp made every written file 0600."""
    model = consistentzoo.create_model("resnet18_ce", num_classes=2)
    old = os.umask(umask)
    try:
        save_pretrained(model, tmp_path)
    finally:
        os.umask(old)
    for name in ("model.safetensors", "config.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]  # no temporary left


def test_save_pretrained_writes_only_model_arguments(tmp_path) -> None:
    model = consistentzoo.create_model(TAG, pretrained=True, num_classes=3, reset_head=True)
    save_pretrained(model, tmp_path)
    args = json.loads((tmp_path / "config.json").read_text())["model_args"]
    assert set(args) <= {"global_pool", "in_chans", "num_classes", "channels"}
    assert args["channels"] == [32, 64, 128, 256]  # the tag's half width, from its record
    assert get_weights(TAG).num_classes == 10
    consistentzoo.create_model("resnet18_cgc", pretrained=tmp_path)  # and it loads back


def test_cifar_stem_feature_info_reports_the_real_reductions() -> None:
    model = consistentzoo.create_model("resnet18_guided.cifar100", features_only=True)
    x = torch.randn(1, 3, 32, 32)
    assert [32 // r for r in model.feature_info.reduction()] == [f.shape[-1] for f in model(x)] == [32, 32, 16, 8, 4]
