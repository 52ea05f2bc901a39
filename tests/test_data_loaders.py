"""Each loader on a tiny copy in its dataset's native format, Hub-schema conversion, and offline behaviour."""

from __future__ import annotations

import time
import warnings

import datasets
import numpy as np
import pytest
from fixtures import data_native as nat

from consistentzoo.data import (
    DatasetUnavailableError,
    LabelOutOfRangeError,
    UnknownDatasetError,
    class_names,
    get_spec,
    list_datasets,
    load,
)


@pytest.fixture(autouse=True)
def _quiet_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _load(tmp_path, name, split, source, **kw):
    return load(name, split, source, cache_dir=tmp_path / "cache", **kw)


def test_registry_lists_papers_datasets() -> None:
    want = {
        "coco",
        "cub200",
        "stanford_cars",
        "fgvc_aircraft",
        "flowers102",
        "imagenet_1k",
        "unrel",
        "caltech101",
        "cifar100",
        "imagefolder",
        "parquet",
    }
    assert want <= set(list_datasets())
    assert get_spec("imagenet-1k").name == "imagenet_1k"
    with pytest.raises(UnknownDatasetError, match="Valid choices.*cub200"):
        get_spec("cub2000")


def test_cub200(tmp_path) -> None:
    nat.write_cub(tmp_path / "cub")
    tr = _load(tmp_path, "cub200", "train", tmp_path / "cub")
    te = _load(tmp_path, "cub200", "test", tmp_path / "cub")
    assert (len(tr), len(te)) == (3, 3)
    assert class_names(tr)[0] == "001.Black_footed_Albatross"
    r = tr[1]
    assert r["label"] == 1 and r["box_labels"] == [1]
    assert r["boxes"] == [[4.0, 3.0, 24.0, 18.0]]  # x y w h = 4 3 20 15
    m = np.asarray(r["mask"][0]) >= 128
    assert m.shape == (30, 40) and m[3:18, 4:24].all() and m.sum() == 15 * 20


def test_stanford_cars(tmp_path) -> None:
    nat.write_cars(tmp_path / "cars")
    ds = _load(tmp_path, "stanford_cars", "test", tmp_path / "cars")
    assert len(ds) == 4 and class_names(ds) == ["AM General Hummer SUV 2000", "Acura RL Sedan 2012"]
    assert [r["label"] for r in ds] == [0, 1, 0, 1]
    assert ds[2]["boxes"] == [[6.0, 5.0, 30.0, 35.0]]  # 1-based inclusive (7, 6, 30, 35)


def test_fgvc_aircraft_variant_and_family(tmp_path) -> None:
    root = nat.write_aircraft(tmp_path / "air")
    ds = _load(tmp_path, "fgvc_aircraft", "test", root)
    assert class_names(ds) == ["707-320", "A300B4"] and [r["label"] for r in ds] == [0, 1]
    assert ds[0]["id"] == "0056978" and ds[0]["boxes"] == [[4.0, 3.0, 50.0, 30.0]]
    fam = _load(tmp_path, "fgvc_aircraft", "train", root, level="family")
    assert class_names(fam) == ["Boeing 707", "A300"]
    with pytest.raises(UnknownDatasetError, match="variant"):
        _load(tmp_path, "fgvc_aircraft", "train", root, level="model")


def test_flowers102(tmp_path) -> None:
    nat.write_flowers(tmp_path / "fl")
    ds = _load(tmp_path, "flowers102", "val", tmp_path / "fl")
    assert [r["id"] for r in ds] == ["image_00003", "image_00004"] and [r["label"] for r in ds] == [2, 0]
    assert len(class_names(ds)) == 102 and ds[0]["boxes"] == []


def test_imagenet_val_boxes_from_xml_and_csv(tmp_path) -> None:
    root = nat.write_imagenet(tmp_path / "in")
    xml = _load(tmp_path, "imagenet-1k", "val", root)
    csv = _load(tmp_path, "imagenet_1k", "validation", root, boxes=root / "LOC_val_solution.csv")
    assert class_names(xml) == ["n01440764", "n01751748", "n09193705"]
    for ds in (xml, csv):
        rows = {r["id"]: r for r in ds}
        assert rows["ILSVRC2012_val_00000001"]["label"] == 1
        assert rows["ILSVRC2012_val_00000001"]["boxes"] == [[10.0, 5.0, 40.0, 25.0]]
        assert rows["ILSVRC2012_val_00000002"]["box_labels"] == [2, 2]
    train = _load(tmp_path, "imagenet_1k", "train", root)
    assert sorted(r["label"] for r in train) == [0, 1, 2]


def test_unrel_multilabel_and_categories(tmp_path) -> None:
    root = nat.write_unrel(tmp_path / "unrel")
    ds = _load(tmp_path, "unrel", "test", root)
    names = class_names(ds)
    assert names == ["car", "dog", "giraffe", "person"]
    r = ds[0]
    assert r["boxes"] == [[2.0, 3.0, 20.0, 28.0], [15.0, 5.0, 38.0, 29.0]]
    assert r["box_labels"] == [3, 2] and r["labels"] == [0, 0, 1, 1]
    sub = _load(tmp_path, "unrel", "test", root, categories=["person", "dog"])
    assert len(sub) == 3 and sub[1]["box_labels"] == [0] and sub[1]["labels"] == [1, 0]
    with pytest.raises(UnknownDatasetError, match="UnRel category"):
        _load(tmp_path, "unrel", "test", root, categories=["unicorn"])


def test_caltech101_split_and_boxes(tmp_path) -> None:
    nat.write_caltech(tmp_path / "c")
    tr = _load(tmp_path, "caltech101", "train", tmp_path / "c", train_per_class=1, seed=3)
    te = _load(tmp_path, "caltech101", "test", tmp_path / "c", train_per_class=1, seed=3)
    assert class_names(tr) == ["Faces", "accordion", "airplanes"]
    assert (len(tr), len(te)) == (3, 6) and not {r["id"] for r in tr} & {r["id"] for r in te}
    assert tr[0]["boxes"] == [[3.0, 2.0, 36.0, 25.0]]  # box_coord = top 3, bottom 25, left 4, right 36


def test_cifar100_fine_and_coarse(tmp_path) -> None:
    nat.write_cifar(tmp_path / "cif")
    ds = _load(tmp_path, "cifar100", "train", tmp_path / "cif")
    assert len(ds) == 6 and ds[1]["label"] == 7 and class_names(ds)[7] == "fine7"
    assert ds[0]["image"].size == (32, 32) and ds[0]["id"] == "img_train_0.png"
    coarse = _load(tmp_path, "cifar100", "test", tmp_path / "cif", label_type="coarse")
    assert len(class_names(coarse)) == 20 and coarse[3]["label"] == 3


def test_imagefolder_and_parquet_roundtrip(tmp_path) -> None:
    for c in ("cat", "dog"):
        for i in range(2):
            nat.image(tmp_path / "f" / "train" / c / f"{i}.png", (20, 10), seed=i, fmt="PNG")
    ds = _load(tmp_path, "imagefolder", "train", tmp_path / "f")
    assert class_names(ds) == ["cat", "dog"] and [r["label"] for r in ds] == [0, 0, 1, 1]
    embedded = ds.cast_column("image", datasets.Image(mode="RGB"))
    embedded.to_parquet(tmp_path / "export.parquet")
    back = load("parquet", "train", tmp_path / "export.parquet")
    assert back["label"] == ds["label"] and back.column_names == ds.column_names


def _img_bytes(size=(20, 10)):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size).save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": None}


def test_hub_cifar100_columns_convert() -> None:
    feats = datasets.Features(
        {
            "img": datasets.Image(),
            "fine_label": datasets.ClassLabel(names=[f"f{i}" for i in range(100)]),
            "coarse_label": datasets.ClassLabel(names=[f"c{i}" for i in range(20)]),
        }
    )
    hub = datasets.Dataset.from_dict(
        {"img": [_img_bytes()] * 2, "fine_label": [5, 99], "coarse_label": [1, 2]}, features=feats
    )
    ds = get_spec("cifar100").from_hub(hub, "train")
    assert ds.column_names == ["id", "image", "label", "boxes", "box_labels"]
    assert ds["label"] == [5, 99] and ds[0]["image"].size == (20, 10) and ds[0]["boxes"] == []


def test_hub_cub_and_aircraft_boxes_convert() -> None:
    names = ["a", "b"]
    cub = datasets.Dataset.from_dict(
        {"image": [_img_bytes()], "label": [1], "bbox": [[2.0, 1.0, 5.0, 4.0]]},
        features=datasets.Features(
            {
                "image": datasets.Image(),
                "label": datasets.ClassLabel(names=names),
                "bbox": datasets.List(datasets.Value("float32")),
            }
        ),
    )
    r = get_spec("cub200").from_hub(cub, "train")[0]
    assert r["boxes"] == [[2.0, 1.0, 7.0, 5.0]] and r["box_labels"] == [1]
    air = datasets.Dataset.from_dict(
        {"image": [_img_bytes()], "variant": [0], "bbox": [{"ymin": 1, "xmin": 2, "ymax": 30, "xmax": 8}]},
        features=datasets.Features(
            {
                "image": datasets.Image(),
                "variant": datasets.ClassLabel(names=names),
                "bbox": {k: datasets.Value("int64") for k in ("ymin", "xmin", "ymax", "xmax")},
            }
        ),
    )
    r = get_spec("fgvc_aircraft").from_hub(air, "train")[0]
    assert r["boxes"] == [[2.0, 1.0, 8.0, 10.0]]  # clipped to the 20x10 image


def test_hub_imagenet_boxes_join_on_file_name(tmp_path) -> None:
    root = nat.write_imagenet(tmp_path / "in")
    names = ["n01440764", "n01751748", "n09193705"]
    img = _img_bytes((48, 32))
    hub = datasets.Dataset.from_dict(
        {"image": [{**img, "path": "ILSVRC2012_val_00000002.JPEG"}], "label": [2]},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)}),
    )
    r = get_spec("imagenet_1k").from_hub(hub, "validation", boxes=root / "LOC_val_solution.csv")[0]
    assert r["boxes"] == [[0.0, 0.0, 30.0, 20.0], [20.0, 10.0, 48.0, 30.0]] and r["box_labels"] == [2, 2]


def test_offline_without_local_copy_fails_fast(monkeypatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    t = time.perf_counter()
    with pytest.raises(DatasetUnavailableError) as e:
        load("cub200", "train", hub_timeout=2.0)
    assert time.perf_counter() - t < 10
    msg = str(e.value)
    assert "cub200" in msg and "bentrevett/caltech-ucsd-birds-200-2011" in msg and "source=" in msg


def test_offline_mode_fails_fast(monkeypatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    t = time.perf_counter()
    with pytest.raises(DatasetUnavailableError, match="uoft-cs/cifar100.*source="):
        load("cifar100", "train", "uoft-cs/cifar100")
    assert time.perf_counter() - t < 10


def test_no_hub_copy_and_bad_source(tmp_path) -> None:
    with pytest.raises(DatasetUnavailableError, match="unrel.*source="):
        load("unrel", "test")
    with pytest.raises(FileNotFoundError, match="neither an existing local path"):
        load("cub200", "train", tmp_path / "nope" / "deeper")
    nat.write_cub(tmp_path / "cub")
    with pytest.raises(UnknownDatasetError, match="cub200 split"):
        load("cub200", "validation", tmp_path / "cub")


def test_label_out_of_range_is_an_error(tmp_path) -> None:
    nat.write_cub(tmp_path / "cub", with_segmentations=False)
    f = tmp_path / "cub" / "CUB_200_2011" / "image_class_labels.txt"
    f.write_text(f.read_text().replace("1 1\n", "1 4\n", 1))
    with pytest.raises(LabelOutOfRangeError, match="3 classes"):
        _load(tmp_path, "cub200", "train", tmp_path / "cub")
