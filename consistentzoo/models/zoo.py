"""Zoo names, the datasets tags are trained on, and the one build path every zoo entry point goes through.

A zoo name is ``{arch}[_gmp]_{objective}``: the objective changes how weights are trained, never the architecture,
so ``resnet18_gc`` and ``resnet18_cgc`` build the same network and differ only in their weight tags.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from timm.models import register_model
from torch import nn

from .errors import WeightsUnavailableError
from .metadata import ARCHITECTURES, OBJECTIVES, ZooWeights, register_weights

# dataset tag -> (name known to consistentzoo.data.load, number of classes)
DATASET_TAGS: dict[str, tuple[str, int]] = {
    "in1k": ("imagenet_1k", 1000),
    "in1k_semi1pct": ("imagenet_1k", 1000),
    "coco": ("coco", 80),
    "cub200": ("cub200", 200),
    "cars196": ("stanford_cars", 196),
    "aircraft": ("fgvc_aircraft", 100),
    "flowers102": ("flowers102", 102),
    "caltech101": ("caltech101", 101),
    "cifar100": ("cifar100", 100),
    "fashion_scenes": ("fashion_scenes", 10),
}

COCO_CATEGORIES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow", "elephant",
    "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard",
    "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli",
    "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed", "dining table", "toilet",
    "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


@functools.cache
def _imagenet_labels() -> tuple[str, ...]:
    from timm.data import ImageNetInfo

    return tuple(ImageNetInfo().label_names())


def label_names(dataset_tag: str) -> tuple[str, ...] | None:
    """Class names of a dataset tag where they are known offline, else None (taken from the data at training)."""
    if dataset_tag.startswith("in1k"):
        return _imagenet_labels()
    return {"coco": COCO_CATEGORIES, "fashion_scenes": FASHION_MNIST_CLASSES}.get(dataset_tag)


def split_zoo_name(name: str) -> tuple[str, bool, str]:
    """``resnet18_gmp_gc`` -> (``resnet18``, True, ``gc``); raises ValueError for names outside the pattern."""
    arch, _, rest = name.partition("_")
    gmp = rest.startswith("gmp_")
    objective = rest[4:] if gmp else rest
    if arch not in ARCHITECTURES or objective not in OBJECTIVES or (gmp and arch == "alexnet"):
        raise ValueError(f"{name!r} is not a zoo name of the form {{arch}}[_gmp]_{{objective}}")
    return arch, gmp, objective


def zoo_names(arch: str) -> list[str]:
    """Every zoo name of one architecture, in registry order."""
    pools = ("", "_gmp") if arch.startswith("resnet") else ("",)
    return [f"{arch}{pool}_{obj}" for pool in pools for obj in OBJECTIVES]


def make_weights(
    zoo_name: str,
    tag: str,
    *,
    num_params: int,
    papers: tuple[str, ...],
    objective_args: dict[str, Any] | None = None,
    **fields: Any,
) -> ZooWeights:
    """A tag record with the fields derivable from the zoo name and the dataset tag filled in."""
    from .reported import REPORTED

    arch, gmp, objective = split_zoo_name(zoo_name)
    dataset, num_classes = DATASET_TAGS[tag]
    model_args = {"global_pool": "max"} if gmp else {}
    start = (objective_args or {}).get("init")
    fields.setdefault(
        "description",
        f"{arch}{' (global max pooling)' if gmp else ''} trained with the {objective.upper()} objective on {dataset}"
        + (f", starting from {start}" if start else ", from scratch"),
    )
    return ZooWeights(
        zoo_name=zoo_name,
        tag=tag,
        architecture=arch,
        model_args={**model_args, **fields.pop("model_args", {})},
        objective=objective,
        objective_args=objective_args or {},
        dataset=dataset,
        num_classes=num_classes,
        label_names=label_names(tag),
        num_params=num_params,
        papers=papers,
        reported=REPORTED.get(f"{zoo_name}.{tag}", ()),
        **fields,
    )


def timm_default_cfgs(zoo_name_list: list[str], records: list[ZooWeights], base_cfg: Callable[..., dict]) -> dict:
    """timm ``default_cfgs`` for the given zoo names: one cfg per tag, and a weightless cfg for untagged names."""
    from timm.models import generate_default_cfgs

    register_weights(records)
    cfgs: dict[str, dict] = {}
    for name in zoo_name_list:
        tagged = [r for r in records if r.zoo_name == name]
        for rec in tagged:
            cfgs[rec.name] = base_cfg(**rec.timm_cfg())
        if not tagged:
            cfgs[name] = base_cfg()
    return generate_default_cfgs(cfgs)


def build_zoo_model(model_cls: type[nn.Module], name: str, pretrained: bool, **kwargs: Any) -> nn.Module:
    """The one build path of every zoo entry point.

    timm calls an entry point with ``pretrained_cfg`` = the tag string (``create_model("resnet18_gc.coco")``) or a
    resolved cfg dict (``hf-hub:``/``local-dir:`` sources). Zoo tags load through
    :func:`~consistentzoo.models.weights.resolve_weights_file` (sha256-verified safetensors); hub and local-dir
    sources keep timm's own loader.

    Args:
        model_cls: the network class.
        name: zoo name (``resnet18_gmp_gc``) or base architecture (``alexnet``).
        pretrained: load weights.
        **kwargs: model arguments; ``reset_head=True`` keeps a fresh classifier when ``num_classes`` differs from
            the weights'.
    """
    from timm.models import build_model_with_cfg, get_pretrained_cfg

    from .metadata import get_weights
    from .weights import load_into, load_state_dict, resolve_weights_file

    reset_head = kwargs.pop("reset_head", False)
    kwargs.pop("cache_dir", None)
    pretrained_cfg = kwargs.pop("pretrained_cfg", None)
    # a tag fixes architecture arguments such as the CIFAR stem: one named explicitly, or the name's default tag
    # when its weights are asked for; a bare name without weights is the plain architecture
    tag = pretrained_cfg if isinstance(pretrained_cfg, str) else None
    if pretrained_cfg is None and pretrained:
        tag = get_pretrained_cfg(name).tag
    rec = get_weights(f"{name}.{tag}") if tag else None
    for key, value in (rec.model_args if rec else {}).items():
        kwargs.setdefault(key, value)
    zoo_weights = pretrained_cfg is None or isinstance(pretrained_cfg, str)
    model = build_model_with_cfg(
        model_cls, name, pretrained=pretrained and not zoo_weights, pretrained_cfg=pretrained_cfg, **kwargs
    )
    if pretrained and zoo_weights:
        if rec is None:
            raise WeightsUnavailableError(
                f"{name} has no weight tags; consistentzoo.list_models('*', pretrained=True) lists the published "
                f"ones and list_weights() every tag the papers report"
            )
        path = resolve_weights_file(rec)
        load_into(model, load_state_dict(path), source=f"{rec.name} ({path})", reset_head=reset_head)
    return model


def register_zoo_entrypoints(
    module_globals: dict[str, Any], names: list[str], create: Callable[..., Any], doc: Callable[[str], str]
) -> None:
    """Register a thin timm entry point ``name(pretrained=False, **kwargs)`` for each name.

    The functions are made in a loop (25 builders written out would differ only in their name) and placed in the
    family module's namespace, where timm looks for that module's ``default_cfgs``.
    """

    def make(name: str) -> Callable[..., Any]:
        def entrypoint(pretrained: bool = False, **kwargs: Any) -> nn.Module:
            return create(name, pretrained, **kwargs)

        entrypoint.__name__ = entrypoint.__qualname__ = name
        entrypoint.__module__ = module_globals["__name__"]
        entrypoint.__doc__ = doc(name)
        return entrypoint

    for name in names:
        module_globals[name] = register_model(make(name))


def entrypoint_doc(name: str) -> str:
    """Docstring of a zoo entry point (what ``torch.hub.help`` prints): the tags and the papers' headline numbers."""
    from .metadata import list_weights
    from .reported import PAPERS

    arch, gmp, objective = split_zoo_name(name)
    lines = [
        f"{arch}{' with global max pooling' if gmp else ''}, trained with the {objective.upper()} objective.",
        "",
        "Args:",
        "    pretrained: load the weights of the tag (``name.tag``; the first tag below by default).",
        "    **kwargs: timm model arguments (num_classes, global_pool, ...); reset_head=True with pretrained",
        "        weights and a different num_classes keeps a fresh classifier.",
        "",
        "Weight tags:",
    ]
    records = list_weights(name)
    for rec in records:
        headline = [r for r in rec.reported if r.metric in ("top1", "pg", "ch") and r.table in ("Table 1", "Table 2")]
        numbers = ", ".join(f"{r.metric} {r.value:g} ({PAPERS[r.paper].venue} {r.table})" for r in headline[:4])
        state = "published" if rec.published else "not published yet"
        lines.append(f"    {rec.name} [{state}]: {rec.dataset}" + (f"; paper: {numbers}" if numbers else ""))
    if not records:
        lines.append("    none yet (architecture only)")
    return "\n".join(lines)
