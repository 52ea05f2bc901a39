"""Where the tests find the real photos they check against, and what to say when they are missing.

Two small data sets, outside the repository (licences forbid redistributing them inside the package):

- ``coco128/``: COCO-format ``train2017/*.jpg`` + ``annotations/instances_train2017.json`` (any subset of COCO 2017
  train in that layout works, e.g. the images of ``lightly-ai/coco128_yolo`` with their instances);
- ``quokka/``: ``quokka.jpg`` + ``quokka_annotations.json``, the photo shipped in the ``imgaug`` 0.4.0 wheel on PyPI
  (``imgaug/quokka.jpg`` and ``imgaug/quokka_annotations.json`` inside it).

They are read from ``$CONSISTENTZOO_TEST_DATA`` when set, else from ``../shared/data`` beside the clone.
"""

from __future__ import annotations

import os
from pathlib import Path

TEST_DATA = Path(os.environ.get("CONSISTENTZOO_TEST_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
COCO128 = TEST_DATA / "coco128"
QUOKKA = TEST_DATA / "quokka"

_HOW = {
    "coco128": "a COCO-format folder coco128/ (train2017/*.jpg + annotations/instances_train2017.json, e.g. a few "
    "COCO 2017 train images and their instances)",
    "quokka": "quokka/quokka.jpg + quokka/quokka_annotations.json (both inside the imgaug 0.4.0 wheel on PyPI)",
}


def missing(name: str) -> str:
    """The skip message for a missing data set: what is missing and how to provide it."""
    return (
        f"real-photo data {name!r} not found under {TEST_DATA}: put {_HOW[name]} there, or set "
        "CONSISTENTZOO_TEST_DATA to a folder that holds it"
    )
