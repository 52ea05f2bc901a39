"""Fashion-MNIST scenes: determinism, exact labels/boxes/masks, the context rates, schema, and the idx source."""

from __future__ import annotations

import gzip
import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from consistentzoo.data import DatasetUnavailableError, MissingAnnotationError, UnknownDatasetError, load
from consistentzoo.data import fashion_scenes as fs
from consistentzoo.data.schema import make_features


@pytest.fixture(autouse=True)
def _quiet_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def _fake_items(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Bright blobs of random extent with noisy, partly faint pixels: items with soft edges, like Fashion-MNIST's."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:28, :28]
    items = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        cy, cx, ry, rx = rng.uniform(10, 18), rng.uniform(10, 18), rng.uniform(4, 10), rng.uniform(4, 10)
        d = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
        items[i] = np.clip(255 * (1.2 - d) * rng.uniform(0.5, 1.0, (28, 28)), 0, 255)
    return items, np.arange(n) % 10


@pytest.fixture(scope="module")
def fm_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fashion-mnist")
    for split, seed in (("train", 1), ("test", 2)):
        items, labels = _fake_items(60, seed)
        img_name, lab_name = fs.IDX_FILES[split]
        _write_idx(root / img_name, items)
        _write_idx(root / lab_name, labels)
    return root


def _load(root: Path, split: str, cache: Path, **kw):
    return load("fashion_scenes", split, root, cache_dir=cache, **kw)


def _png_bytes(ds) -> list[bytes]:
    return [r["bytes"] for r in ds.with_format("arrow")["image"].to_pylist()]


def test_same_seed_identical_bytes_other_seed_differs(fm_root, tmp_path) -> None:
    a = _load(fm_root, "train", tmp_path / "a", num_samples=12, seed=3)
    b = _load(fm_root, "train", tmp_path / "b", num_samples=12, seed=3)
    c = _load(fm_root, "train", tmp_path / "c", num_samples=12, seed=4)
    assert _png_bytes(a) == _png_bytes(b)
    assert a["boxes"] == b["boxes"] and a["id"] == b["id"]
    assert _png_bytes(a) != _png_bytes(c)
    # the cache key holds every parameter: another size is another file, not the cached one
    d = _load(fm_root, "train", tmp_path / "a", num_samples=12, seed=3, size=72)
    assert d[0]["image"].size == (72, 72)


def test_box_is_mask_extent_and_schema(fm_root, tmp_path) -> None:
    ds = _load(fm_root, "test", tmp_path, num_samples=15)
    want = make_features(fs.CLASS_NAMES, with_mask=True)
    assert list(ds.features)[: len(want)] == list(want)
    assert all(ds.features[k] == v for k, v in want.items())
    assert set(ds.features) - set(want) == {"background"}
    for r in ds:
        assert r["image"].size == (64, 64) and r["box_labels"] == [r["label"]] and len(r["mask"]) == 1
        m = np.asarray(r["mask"][0]) >= 128
        ys, xs = np.nonzero(m)
        assert r["boxes"] == [[xs.min(), ys.min(), xs.max() + 1.0, ys.max() + 1.0]]


def _bilinear(item: np.ndarray, side: int) -> np.ndarray:
    """Independent bilinear upscaling (pixel centres, edge clamp) -- what the triangle filter is when enlarging."""
    src, grid, a = (np.arange(side) + 0.5) * item.shape[0] / side - 0.5, np.arange(28), item / 255.0
    cols = np.stack([np.interp(src, grid, a[:, j]) for j in range(28)], 1)  # [side, 28]: rows resized
    return np.stack([np.interp(src, grid, cols[i]) for i in range(side)], 0)


def test_mask_and_pixels_match_a_recomputation_from_the_raw_item(fm_root) -> None:
    size = 96  # items 38..72 px: upscaled, so the independent bilinear resize applies
    items, labels = fs.read_fashion_mnist(fm_root, "train")
    p = fs.draw_params(labels, 10, size=size, seed=5)
    out = fs.render(p, items, size)
    tex = fs._textures(size)
    for k in range(10):
        s, x0, y0 = int(p.side[k]), int(p.x0[k]), int(p.y0[k])
        inten = np.zeros((size, size))
        inten[y0 : y0 + s, x0 : x0 + s] = _bilinear(items[p.index[k]], s)
        alpha = np.minimum(1.0, fs.ALPHA_GAIN * inten)
        mask = out["mask"][k]
        assert mask[alpha > fs.ALPHA_THRESHOLD + 1e-4].all() and not mask[alpha < fs.ALPHA_THRESHOLD - 1e-4].any()
        assert out["label"][k] == labels[p.index[k]]
        img = out["image"][k].astype(int)
        crop = tex[p.background[k], p.crop_y[k] : p.crop_y[k] + size, p.crop_x[k] : p.crop_x[k] + size]
        assert (img[alpha == 0] == crop[alpha == 0]).all()  # untouched background outside the item
        solid = alpha >= 1
        assert solid.sum() > 50 and (alpha == 0).sum() > 50
        fg = np.rint(255 * (0.35 + 0.65 * inten[solid]))
        assert np.abs(img[solid] - fg[:, None]).max() <= 1  # opaque item: no background leaks in


def test_context_rates() -> None:
    labels = np.arange(3000) % 10
    train = fs.draw_params(labels, 800, seed=0, stream=0, context=0.9)
    assert abs((train.background == train.label).mean() - 0.9) < 0.05
    test = fs.draw_params(labels, 800, seed=0, stream=1, context=fs.SPLITS["test"][2])
    assert abs((test.background == test.label).mean() - 0.1) < 0.04
    # uncorrelated: every style about equally often, for the even and the odd classes alike
    for part in (test.label % 2 == 0, test.label % 2 == 1):
        freq = np.bincount(test.background[part], minlength=10) / part.sum()
        assert np.abs(freq - 0.1).max() < 0.06
    # test and test_context are paired: same items and geometry, only the styles differ
    ctx = fs.draw_params(labels, 800, seed=0, stream=1, context=fs.SPLITS["test_context"][2])
    assert (ctx.index == test.index).all() and (ctx.x0 == test.x0).all() and (ctx.side == test.side).all()
    assert abs((ctx.background == ctx.label).mean() - 0.9) < 0.05


def test_split_defaults_and_rates_through_load(fm_root, tmp_path) -> None:
    tr = _load(fm_root, "train", tmp_path, num_samples=60)
    te = _load(fm_root, "test_context", tmp_path, num_samples=60, context=0.0)
    assert np.mean(np.array(tr["background"]) == np.array(tr["label"])) > 0.75
    assert (np.array(te["background"]) != np.array(te["label"])).all()
    assert fs.SPLITS == {
        "train": ("train", 12000, 0.9),
        "test": ("test", 2000, 0.1),
        "test_context": ("test", 2000, 0.9),
    }


def test_distractors_are_flagged_and_behind_the_item(fm_root, tmp_path) -> None:
    items, labels = fs.read_fashion_mnist(fm_root, "train")
    plain = fs.render(fs.draw_params(labels, 20, seed=1), items, 64)
    busy = fs.render(fs.draw_params(labels, 20, seed=1, distractors=2), items, 64)
    assert (plain["mask"] == busy["mask"]).all() and (plain["box"] == busy["box"]).all()
    assert not (plain["image"] == busy["image"]).all()
    ds = _load(fm_root, "train", tmp_path, num_samples=20, distractors=2)
    assert {"distractor_boxes", "distractor_labels"} <= set(ds.features)
    counts = [len(b) for b in ds["distractor_boxes"]]
    assert max(counts) <= 2 and sum(counts) > 0
    assert all(len(b) == len(lab) for b, lab in zip(ds["distractor_boxes"], ds["distractor_labels"], strict=True))
    assert all(r["box_labels"] == [r["label"]] for r in ds)


def test_bad_input(fm_root, tmp_path, monkeypatch) -> None:
    with pytest.raises(UnknownDatasetError, match="test_context"):
        _load(fm_root, "val", tmp_path)
    with pytest.raises(ValueError, match="64..128"):
        _load(fm_root, "train", tmp_path, size=32)
    with pytest.raises(ValueError, match="num_samples must be in 1..60"):
        _load(fm_root, "train", tmp_path, num_samples=61)
    with pytest.raises(ValueError, match="context"):
        _load(fm_root, "train", tmp_path, num_samples=5, context=1.5)
    with pytest.raises(MissingAnnotationError, match="apt-get install dataset-fashion-mnist"):
        _load(tmp_path, "train", tmp_path)
    monkeypatch.setattr(fs, "DEBIAN_DIR", tmp_path / "absent")
    with pytest.raises(DatasetUnavailableError, match="apt-get install dataset-fashion-mnist") as e:
        fs.load_fashion_scenes("train")
    assert fs.HUB_ID in str(e.value) and "source=" in str(e.value)


def test_save_examples(fm_root, tmp_path) -> None:
    path = fs.save_examples(tmp_path / "grid.png", "test", per_class=2, source=fm_root, num_samples=60, distractors=1)
    with Image.open(path) as im:
        assert im.size == (84 + 2 * (128 + 4), 10 * (128 + 4))


@pytest.mark.skipif(
    not fs.DEBIAN_DIR.is_dir(), reason=f"{fs.DEBIAN_DIR} absent (apt-get install dataset-fashion-mnist)"
)
def test_real_debian_files(tmp_path) -> None:
    items, labels = fs.read_fashion_mnist(fs.DEBIAN_DIR, "test")
    assert items.shape == (10000, 28, 28) and items.dtype == np.uint8
    assert (np.bincount(labels) == 1000).all()
    ds = fs.load_fashion_scenes("test", num_samples=8, cache_dir=tmp_path)
    assert len(ds) == 8 and ds[0]["id"].startswith("test/00000-fm")
    assert ds[0]["label"] == labels[int(ds[0]["id"].split("-fm")[1])]
    with Image.open(io.BytesIO(ds.with_format("arrow")["image"][0].as_py()["bytes"])) as im:
        assert im.size == (64, 64)
