"""Zoo names, the datasets tags are trained on, and the one build path every zoo entry point goes through.

A zoo name is ``{arch}[_gmp]_{objective}``: the objective changes how weights are trained, never the architecture,
so ``resnet18_gc`` and ``resnet18_cgc`` build the same network and differ only in their weight tags.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from typing import Any

from timm.models import register_model
from torch import nn

from .errors import WeightsIntegrityError, WeightsUnavailableError
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
    "fashion_scenes": ("fashion_scenes", 10),  # shortcut-free: training context 0.1 (recipes/fashion_scenes.py)
    "fashion_scenes_control": ("fashion_scenes", 10),  # its CE-only controls
    "fashion_scenes_spurious": ("fashion_scenes", 10),  # spurious-context: training context 0.9
    "fashion_scenes_spurious_control": ("fashion_scenes", 10),
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
    if DATASET_TAGS.get(dataset_tag, ("",))[0] == "fashion_scenes":
        return FASHION_MNIST_CLASSES
    return {"coco": COCO_CATEGORIES}.get(dataset_tag)


# architecture -> the class that builds it (filled by the family modules); a saved config's model_args are checked
# against its constructor's arguments
MODEL_CLASSES: dict[str, type[nn.Module]] = {}


@functools.cache
def model_arg_names(arch: str) -> frozenset[str]:
    """Keyword arguments of the class that builds ``arch`` (through ``**kwargs`` into its bases), less the ones the
    zoo name fixes (``block``, ``layers``) and the runtime ones (``device``, ``dtype``)."""
    names: set[str] = set()
    for klass in MODEL_CLASSES[arch].__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(vars(klass)["__init__"]).parameters.values()
        names |= {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return frozenset(names - {"block", "layers", "device", "dtype"})


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
    """timm ``default_cfgs`` for the given zoo names: one cfg per tag, and a weightless cfg for untagged names.

    ``base_cfg(model_args, **fields)`` is the family's cfg (it derives ``pool_size`` from the input size and the
    architecture arguments). A tag whose weights lie on this machine (committed, or in ``$CONSISTENTZOO_WEIGHTS``)
    carries their path as ``file``, so ``timm.list_pretrained()`` lists it; loading still goes through the verified
    resolution of :func:`build_zoo_model`.
    """
    from timm.models import generate_default_cfgs

    from .weights import local_weights_file

    register_weights(records)
    cfgs: dict[str, dict] = {}
    for name in zoo_name_list:
        tagged = [r for r in records if r.zoo_name == name]
        for rec in tagged:
            local = local_weights_file(rec)
            cfgs[rec.name] = base_cfg(rec.model_args, **rec.timm_cfg(), file=str(local) if local else None)
        if not tagged:
            cfgs[name] = base_cfg({})
    out = generate_default_cfgs(cfgs)
    for name in zoo_name_list:  # the first record stays the default tag (timm promotes the first tag with a file)
        if tagged := [r.tag for r in records if r.zoo_name == name]:
            out[name].tags.remove(tagged[0])
            out[name].tags.appendleft(tagged[0])
    return out


# pretrained_cfg keys that name where weights come from: given in an overlay, they replace the tag's own file
_SOURCE_KEYS = ("file", "state_dict", "url", "hf_hub_id")


def build_zoo_model(model_cls: type[nn.Module], name: str, pretrained: bool, **kwargs: Any) -> nn.Module:
    """The one build path of every zoo entry point: timm's ``build_model_with_cfg`` with a verified weights file.

    timm calls an entry point with ``pretrained_cfg`` = the tag string (``create_model("resnet18_gc.coco")``), None
    (the name's default tag), or a resolved cfg dict (``hf-hub:``/``local-dir:`` sources, a weights folder). For a
    tag, :func:`~consistentzoo.models.weights.resolve_weights_file` finds its sha256-verified safetensors file and the
    file goes to timm as the pretrained source (``pretrained_cfg["file"]``), unless ``pretrained_cfg_overlay`` names
    another source. timm then loads it as it loads its own weights, so ``features_only``, ``in_chans``,
    ``num_classes`` and every other timm argument behave as in timm. Every state dict passes
    :func:`~consistentzoo.models.weights.check_state_dict` first (finite values, dtypes, keys, class count).

    Args:
        model_cls: the network class.
        name: zoo name (``resnet18_gmp_gc``) or base architecture (``alexnet``).
        pretrained: load weights.
        **kwargs: model and timm builder arguments. ``reset_head`` decides a ``num_classes`` (non-zero) that
            differs from the weights': False refuses it (``consistentzoo.create_model``'s default), True loads all
            but the classifier, unset follows timm's contract (all but the classifier, with a warning).
    """
    from timm.models import build_model_with_cfg, get_pretrained_cfg, resolve_pretrained_cfg

    from .metadata import get_weights
    from .weights import check_state_dict, read_weights_errors, resolve_weights_file

    reset_head = kwargs.pop("reset_head", None)  # None: timm's contract (a new head, with a warning)
    pretrained_cfg = kwargs.pop("pretrained_cfg", None)
    overlay = kwargs.pop("pretrained_cfg_overlay", None) or {}
    # a tag fixes architecture arguments such as the CIFAR stem: one named explicitly, or the name's default tag
    # when its weights are asked for; a bare name without weights is the plain architecture
    tag = pretrained_cfg if isinstance(pretrained_cfg, str) else None
    if pretrained_cfg is None and pretrained:
        tag = get_pretrained_cfg(name).tag
    rec = get_weights(f"{name}.{tag}") if tag else None
    for key, value in (rec.model_args if rec else {}).items():
        kwargs.setdefault(key, value)
    cfg = resolve_pretrained_cfg(name, pretrained_cfg=pretrained_cfg, pretrained_cfg_overlay=overlay).to_dict()
    source = name if rec is None else rec.name
    if pretrained:
        if not isinstance(pretrained_cfg, dict) and not any(overlay.get(k) for k in _SOURCE_KEYS):
            if rec is None:
                raise WeightsUnavailableError(
                    f"{name} has no weight tags; consistentzoo.list_models('*', pretrained=True) lists the published "
                    f"ones and list_weights() every tag the papers report"
                )
            # the record is the truth about its weights (timm's registered cfg is derived from it at import)
            cfg.update(file=str(resolve_weights_file(rec)), num_classes=rec.num_classes)
        source = f"{source} ({cfg.get('file') or cfg.get('hf_hub_id') or cfg.get('url') or 'state_dict'})"
        if cfg.get("file") and cfg.get("source") != "local-dir" and not os.path.isfile(cfg["file"]):
            raise FileNotFoundError(f"{source}: the pretrained weights file does not exist")  # timm's has no text
    check = functools.partial(check_state_dict, source=source, pretrained_cfg=cfg, reset_head=reset_head)
    try:
        return build_model_with_cfg(
            model_cls, name, pretrained=pretrained, pretrained_cfg=cfg, pretrained_filter_fn=check, **kwargs
        )
    except read_weights_errors() as e:
        raise WeightsIntegrityError(
            f"{source}: not a readable safetensors file ({e}); delete it and fetch again"
        ) from e


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
