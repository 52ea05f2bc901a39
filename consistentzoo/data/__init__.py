"""Hugging Face ``datasets`` loaders in one schema, box/mask-aligned transforms, and the objectives' samplers.

``load(name, split, source=None)`` returns a ``datasets.Dataset`` with ``id``, ``image``, ``label`` (or multi-hot
``labels``), ``boxes`` (xyxy float pixels), ``box_labels`` and, where available, per-instance ``mask``
(see :mod:`consistentzoo.data.schema`). ``source`` is a Hub id, a local folder in the dataset's official layout,
or parquet files. Default Hub ids (``source=None``; the first is tried):

============== ============================================================ ==================================
name           Hub id(s)                                                    boxes / masks in the Hub copy
============== ============================================================ ==================================
imagenet_1k    ``ILSVRC/imagenet-1k`` (gated), ``benjamin-paine/imagenet-1k`` none; ``boxes=`` XML folder / CSV
coco           ``detection-datasets/coco``                                  boxes; masks need a local copy
cub200         ``bentrevett/caltech-ucsd-birds-200-2011``                   box (x, y, w, h; unverified)
stanford_cars  ``tanganke/stanford_cars``                                   none; boxes need the devkit .mat
fgvc_aircraft  ``HuggingFaceM4/FGVC-Aircraft``                              box {ymin, xmin, ymax, xmax}
flowers102     ``dpdl-benchmark/oxford_flowers102``, ``nelorth/oxford-flowers`` none
caltech101     ``flwrlabs/caltech101``                                      none; boxes need Annotations/
cifar100       ``uoft-cs/cifar100`` (columns ``img``, ``fine_label``)         none
unrel          (none; local ``images/`` + ``annotations.mat`` only)          --
imagefolder    (local ``<root>/<split>/<class>/*``)                          --
parquet        (local ``*.parquet``: an export of a loaded dataset)         --
============== ============================================================ ==================================

Hub schemas marked unverified were read from Hub pages, not downloaded. Without network and without a local
copy, :func:`load` raises ``DatasetUnavailableError`` naming the dataset, the Hub id and ``source=`` within
``hub_timeout`` seconds. New datasets: ``register_dataset(DatasetSpec(...))``.

Untrusted files: every image is opened by :func:`open_image` / :func:`probe_image` (bounded size and side ratio,
EXIF orientation, 16-bit scaled); file names read from annotations must stay inside the dataset folder
(``UnsafePathError``); CIFAR's pickles are read with an allow-list unpickler (``UnsafePickleError``).
"""

from . import coco, fashion_scenes, fine_grained, generic, imagenet, small, unrel  # noqa: F401  (register the loaders)
from .collate import collate
from .errors import (
    AnnotationFormatError,
    BadImageError,
    DataQualityWarning,
    DatasetUnavailableError,
    ImageTooLargeError,
    LabelOutOfRangeError,
    MissingAnnotationError,
    UnknownDatasetError,
    UnsafePathError,
    UnsafePickleError,
)
from .images import open_image, probe_image
from .registry import REGISTRY, DatasetSpec, get_spec, list_datasets, load, register_dataset
from .samplers import CompositeDraw, CompositeSampler, Episode, few_shot_episodes, labelled_split
from .schema import LoadReport, class_names, make_features
from .transforms import eval_transform, to_tv_tensors, train_transform, with_transform

__all__ = [
    "REGISTRY",
    "AnnotationFormatError",
    "BadImageError",
    "CompositeDraw",
    "CompositeSampler",
    "DataQualityWarning",
    "DatasetSpec",
    "DatasetUnavailableError",
    "Episode",
    "ImageTooLargeError",
    "LabelOutOfRangeError",
    "LoadReport",
    "MissingAnnotationError",
    "UnknownDatasetError",
    "UnsafePathError",
    "UnsafePickleError",
    "class_names",
    "collate",
    "eval_transform",
    "few_shot_episodes",
    "get_spec",
    "labelled_split",
    "list_datasets",
    "load",
    "make_features",
    "open_image",
    "probe_image",
    "register_dataset",
    "to_tv_tensors",
    "train_transform",
    "with_transform",
]
