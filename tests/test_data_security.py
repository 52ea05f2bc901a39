"""No dataset file runs code or reads outside its folder; a wrongly typed parquet column is a clear error.

Issue-17 cases covered here:

- "Code execution": ``load("cifar100", "train", source=d)`` unpickled CIFAR's ``meta`` / ``train`` freely, so a
  pickle whose ``__reduce__`` runs a shell command ran it. Now an allow-list unpickler refuses it before the call
  (the marker file never appears) and the official format -- Python 2 pickles naming ``numpy.core.multiarray``
  as well as Python 3 ones naming ``numpy._core`` -- still loads.
- "A COCO ``file_name`` that is an absolute path (or ``..``) outside the dataset root is read": refused, naming
  the file and the image id. Same for the other annotation-listed paths (CUB ``images.txt``, UnRel, Aircraft).
- "a parquet with the schema's column names but a plain image column -> AttributeError: 'dict' object has no
  attribute 'mode'": a clear error naming the column and the expected type.
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from fixtures import data_native as nat

from consistentzoo.data import AnnotationFormatError, load
from consistentzoo.data.errors import UnsafePathError, UnsafePickleError
from consistentzoo.data.pickles import load_restricted

# --- CIFAR pickles -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["meta", "train"])
def test_cifar_payload_refused_and_never_run(tmp_path, target) -> None:
    marker = tmp_path / "pwned"
    root = nat.write_cifar_payload(tmp_path / "c", marker, target)
    with pytest.raises(UnsafePickleError) as err:
        load("cifar100", "train", source=root, cache_dir=tmp_path / "cache")
    msg = str(err.value)
    assert "system" in msg and str(root / "cifar-100-python" / target) in msg and "\n" not in msg
    assert not marker.exists()
    # The same file unpickled freely does run the command: the test's payload is real.
    pickle.loads((root / "cifar-100-python" / target).read_bytes())
    assert marker.exists()


@pytest.mark.parametrize("call", ["builtins eval", "subprocess Popen", "numpy load", "numpy.testing assert_"])
def test_any_name_outside_the_allow_list_refused(tmp_path, call) -> None:
    module, name = call.split()
    path = tmp_path / "p.pkl"
    # protocol 0 GLOBAL + REDUCE, as a hand-written exploit would be: c<module>\n<name>\n(S'x'\ntR.
    path.write_bytes(f"c{module}\n{name}\n(S'1'\ntR.".encode())
    with pytest.raises(UnsafePickleError, match=f"{module}.{name}"):
        load_restricted(path, "cifar100")


def test_official_cifar_format_still_loads(tmp_path) -> None:
    root = nat.write_cifar(tmp_path / "c")
    train = root / "cifar-100-python" / "train"
    # Python 2 / numpy 1 pickles (the official release) name numpy.core.multiarray; protocol-2 GLOBALs are text.
    py2_style = train.read_bytes().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray\n_reconstruct" in py2_style
    train.write_bytes(py2_style)
    ds = load("cifar100", "train", source=root, cache_dir=tmp_path / "cache")
    expected = pickle.loads(py2_style, encoding="bytes")
    assert len(ds) == 6 and ds["label"] == expected[b"fine_labels"]
    first = np.asarray(ds[0]["image"])
    assert np.array_equal(first, expected[b"data"][0].reshape(3, 32, 32).transpose(1, 2, 0))


def test_not_a_pickle_is_a_format_error(tmp_path) -> None:
    root = nat.write_cifar(tmp_path / "c")
    (root / "cifar-100-python" / "meta").write_bytes(b"")
    with pytest.raises(AnnotationFormatError, match="meta is not a python pickle"):
        load("cifar100", "train", source=root, cache_dir=tmp_path / "cache")


# --- file names in annotations -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["ABSOLUTE", "../outside.jpg", "sub/../../outside.jpg"])
def test_coco_file_name_outside_root_refused(tmp_path, bad) -> None:
    outside = nat.image(tmp_path / "outside.jpg", (40, 30))
    name = str(outside) if bad == "ABSOLUTE" else bad
    images = [
        {"id": 1, "file_name": "a.jpg", "width": 40, "height": 30},
        {"id": 7, "file_name": name, "width": 40, "height": 30},
    ]
    anns = [{"id": i, "image_id": i, "category_id": 1, "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 0} for i in (1, 7)]
    root = nat.write_coco(tmp_path / "coco", "val2017", images=images, anns=anns)
    with pytest.raises(UnsafePathError) as err:
        load("coco", "val2017", root, cache_dir=tmp_path / "cache")
    assert "coco image 7" in str(err.value) and repr(name) in str(err.value)


def test_cub_aircraft_and_unrel_paths_outside_root_refused(tmp_path) -> None:
    root = nat.write_cub(tmp_path / "cub", with_segmentations=False)
    listing = root / "CUB_200_2011" / "images.txt"
    lines = listing.read_text().splitlines()
    lines[0] = "1 /etc/passwd"
    listing.write_text("\n".join(lines) + "\n")
    with pytest.raises(UnsafePathError, match="cub200 image 1.*'/etc/passwd'"):
        load("cub200", "train", root, cache_dir=tmp_path / "cache")

    # Aircraft: the image id of a split file becomes <id>.jpg
    root = nat.write_aircraft(tmp_path / "air")
    split_file = root / "data" / "images_variant_train.txt"
    split_file.write_text(split_file.read_text().replace("1025794", "../../../../outside", 1))
    with pytest.raises(UnsafePathError, match="fgvc_aircraft image ../../../../outside"):
        load("fgvc_aircraft", "train", root, cache_dir=tmp_path / "cache")

    root = nat.write_unrel(tmp_path / "unrel", listed={"2.jpg": "../outside.jpg"})
    with pytest.raises(UnsafePathError, match="unrel: annotations.mat: file name '../outside.jpg'"):
        load("unrel", "test", root, cache_dir=tmp_path / "cache")


def test_relative_names_inside_root_still_load(tmp_path) -> None:
    images = [{"id": 1, "file_name": "./sub/a.jpg", "width": 40, "height": 30}]
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 0}]
    root = nat.write_coco(tmp_path / "coco", "val2017", images=[{**images[0], "file_name": "a.jpg"}], anns=anns)
    nat.image(root / "val2017" / "sub" / "a.jpg", (40, 30))
    (root / "annotations" / "instances_val2017.json").write_text(
        (root / "annotations" / "instances_val2017.json").read_text().replace('"a.jpg"', '"./sub/a.jpg"')
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = load("coco", "val2017", root, masks=False, cache_dir=tmp_path / "cache")
    assert ds["id"] == ["1"]


# --- parquet -----------------------------------------------------------------------------------------------------


def test_parquet_plain_image_column_is_a_clear_error(tmp_path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    png = nat.image(tmp_path / "a.png", (8, 8), fmt="PNG").read_bytes()
    table = pa.table(
        {
            "id": ["a"],
            "image": [{"bytes": png, "path": "a.png"}],  # the storage of datasets.Image, without its feature type
            "label": [0],
            "boxes": [[]],
            "box_labels": [[]],
        }
    )
    pq.write_table(table, tmp_path / "x.parquet")
    with pytest.raises(AnnotationFormatError) as err:
        load("parquet", "train", tmp_path / "x.parquet")
    msg = str(err.value)
    assert "column 'image'" in msg and "datasets.Image" in msg and "cast_column" in msg
    with pytest.raises(AnnotationFormatError, match="column 'image'"):
        load("coco", "train", tmp_path / "x.parquet")  # COCO's Hub converter passes common-schema data through too
