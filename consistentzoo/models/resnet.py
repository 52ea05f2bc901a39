"""Zoo ResNets: timm's ResNet-18/50 with average or max global pooling, and the weight tags of the four papers.

The network is timm's (state dicts equal torchvision's); :class:`ZooResNet` only keeps the pooling on
``reset_classifier`` (timm resets it to average, which would silently turn a GMP model into a GAP one) and offers the
CIFAR stem the guided-gradient paper trains with. Configs written by ``save_pretrained`` name the stock architecture
(``resnet18`` + ``model_args.global_pool``), so stock timm rebuilds the ImageNet-stem models without this package.
"""

from __future__ import annotations

from typing import Any

from timm.models.resnet import BasicBlock, Bottleneck, ResNet
from torch import nn

from .metadata import UpstreamSource, attach_upstream
from .zoo import (
    MODEL_CLASSES,
    build_zoo_model,
    entrypoint_doc,
    make_weights,
    register_zoo_entrypoints,
    timm_default_cfgs,
    zoo_names,
)

_BLOCKS = {"resnet18": (BasicBlock, (2, 2, 2, 2)), "resnet50": (Bottleneck, (3, 4, 6, 3))}


_TIMM_CHANNELS = (64, 128, 256, 512)  # timm's ResNet stage widths


class ZooResNet(ResNet):
    """timm ResNet that keeps its global pooling when the classifier is reset.

    Args:
        stem: ``"imagenet"`` (7×7/2 conv + max-pool) or ``"cifar"`` (3×3/1 conv, no max-pool, for 32 px inputs).
        **kwargs: timm ``ResNet`` arguments (``global_pool="max"`` for GMP).
    """

    # properties TorchScript must not compile (they read the pretrained_cfg dict, which it cannot type)
    __jit_unused_properties__ = ["zoo_architecture", "zoo_model_args"]

    def __init__(self, *, stem: str = "imagenet", **kwargs: Any):
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
        super().__init__(**kwargs)
        self.stem = stem
        self.stage_channels = [int(c) for c in kwargs.get("channels", _TIMM_CHANNELS)]
        if stem == "cifar":
            dd = {"device": self.conv1.weight.device, "dtype": self.conv1.weight.dtype}
            self.conv1 = nn.Conv2d(self.conv1.in_channels, self.conv1.out_channels, 3, 1, 1, bias=False, **dd)
            self.maxpool = nn.Identity()
            # the stem no longer divides by 4: every feature map is 4x larger than timm's ResNet says
            self.feature_info = [dict(f, reduction=max(1, f["reduction"] // 4)) for f in self.feature_info]

    @property
    def zoo_architecture(self) -> str:
        """The architecture a saved config names: stock timm's where it can rebuild the model, else the zoo name."""
        name = self.pretrained_cfg["architecture"]
        return name.split("_")[0] if self.stem == "imagenet" else name

    @property
    def zoo_model_args(self) -> dict[str, Any]:
        """Architecture arguments a saved config must carry (the stem when not ImageNet's, the stages' channels when
        not timm's default)."""
        args: dict[str, Any] = {} if self.stem == "imagenet" else {"stem": self.stem}
        if tuple(self.stage_channels) != _TIMM_CHANNELS:
            args["channels"] = list(self.stage_channels)
        return args

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier, as timm's ResNet does.

        ``global_pool=None`` keeps the current pooling (GMP stays max; timm before 1.0.2x reset it to avg); ``""``
        removes the pooling, so with ``num_classes=0`` the model returns the unpooled ``(B, C, h, w)`` features.
        """
        super().reset_classifier(
            num_classes, global_pool=self.global_pool.pool_type if global_pool is None else global_pool
        )


def _create(name: str, pretrained: bool, **kwargs: Any) -> ZooResNet:
    arch = name.split("_")[0]
    block, layers = _BLOCKS[arch]
    if "_gmp_" in name:
        kwargs.setdefault("global_pool", "max")
    return build_zoo_model(ZooResNet, name, pretrained, block=block, layers=layers, **kwargs)


def _cfg(model_args: dict[str, Any], input_size: tuple[int, int, int] = (3, 224, 224), **kwargs: Any) -> dict[str, Any]:
    # the feature grid: ImageNet stem 1/32 of the input (each stride-2 step rounds up), CIFAR stem 1/8
    stride = 8 if model_args.get("stem") == "cifar" else 32
    return {
        "num_classes": 1000,
        "input_size": input_size,
        "pool_size": tuple(-(-size // stride) for size in input_size[1:]),
        "crop_pct": 0.875,
        "interpolation": "bilinear",
        "first_conv": "conv1",
        "classifier": "fc",
        **kwargs,
    }


_GC = ("gc",)
_CGC = ("cgc",)
_BOTH = ("gc", "cgc")
_FT18 = {"finetune": True, "init": "resnet18_ce.in1k"}
_FT50 = {"finetune": True, "init": "resnet50_ce.in1k"}
_SEMI = {"finetune": True, "init": "swav_resnet50", "label_fraction": 0.01}
_SSIM = {"alpha": 0.1, "beta": 1e-5, "p": 1}
_CIFAR = {"model_args": {"stem": "cifar"}, "input_size": (3, 32, 32)}
# Fashion-MNIST scenes (recipes/fashion_scenes.py): ResNet-18 at half width, 128 px. Two settings: shortcut-free
# (dataset tag fashion_scenes, training context 0.1) and spurious-context (fashion_scenes_spurious, 0.9); every
# consistency model is fine-tuned from its setting's CE start beside a CE-only control (..._control).
_FS = {"input_size": (3, 128, 128), "model_args": {"channels": (32, 64, 128, 256)}}
_FS_PARAMS = 2817546
_FS_SSIM = {"alpha": 0.1, "beta": 1e-5, "p": 1}


def _fs_init(start: str) -> dict[str, Any]:
    return {"finetune": True, "init": start}


# seed-0 shortcut-free weights committed as fp16 by `python recipes/fashion_scenes.py --full --publish` (it prints
# the sha256)
_FS_SHA256 = {
    "resnet18_ce": "0412e2b7ea8cb5217a4063ffd0a0390ff1d66e2bb6da29214fc259c9024eb0f5",
    "resnet18_gc": "ffda3f9865bb1ee426115a5520c7b1925c705896b0bae720d47a66860588d499",
    "resnet18_cgc": "ab21732397ea15a36e31be630b592d5d373eb78460f352f804ee3e3f8f05583c",
}


def _committed(zoo_name: str) -> dict[str, str]:
    return {"local_dir": f"weights/{zoo_name}.fashion_scenes", "sha256": _FS_SHA256[zoo_name]}


# One record per weight tag the papers report. num_params is what the built model has (the schema test recounts).
_WEIGHTS = [
    # GC (AAAI 2021), ImageNet: from scratch, lambda = 25; GMP = global max pooling
    make_weights("resnet18_ce", "in1k", num_params=11689512, papers=_BOTH),
    make_weights("resnet18_gc", "in1k", num_params=11689512, papers=_BOTH, objective_args={"lam": 25.0}),
    make_weights("resnet18_gmp_ce", "in1k", num_params=11689512, papers=_GC),
    make_weights("resnet18_gmp_gc", "in1k", num_params=11689512, papers=_GC, objective_args={"lam": 25.0}),
    make_weights("resnet50_ce", "in1k", num_params=25557032, papers=_BOTH),
    make_weights("resnet50_gc", "in1k", num_params=25557032, papers=_BOTH, objective_args={"lam": 25.0}),
    make_weights("resnet50_gmp_ce", "in1k", num_params=25557032, papers=_GC),
    make_weights("resnet50_gmp_gc", "in1k", num_params=25557032, papers=_GC, objective_args={"lam": 25.0}),
    # GC, MS-COCO (multi-label): 80 * BCE + 1 * L1, started from the ImageNet model of the same kind
    make_weights("resnet18_ce", "coco", num_params=11217552, papers=_GC, objective_args=_FT18),
    make_weights(
        "resnet18_gc", "coco", num_params=11217552, papers=_GC,
        objective_args={"lam": 1.0, "bce_weight": 80.0, "finetune": True, "init": "resnet18_gc.in1k"},
    ),
    make_weights(
        "resnet18_gmp_ce", "coco", num_params=11217552, papers=_GC,
        objective_args={"finetune": True, "init": "resnet18_gmp_ce.in1k"},
    ),
    make_weights(
        "resnet18_gmp_gc", "coco", num_params=11217552, papers=_GC,
        objective_args={"lam": 1.0, "bce_weight": 80.0, "finetune": True, "init": "resnet18_gmp_gc.in1k"},
    ),
    # CGC (CVPR 2022), ImageNet: from scratch, tau = 0.5, lambda = 1.0 (ResNet18) / 0.5 (ResNet50)
    make_weights("resnet18_cgc", "in1k", num_params=11689512, papers=_CGC, objective_args={"lam": 1.0, "tau": 0.5}),
    make_weights("resnet50_cgc", "in1k", num_params=25557032, papers=_CGC, objective_args={"lam": 0.5, "tau": 0.5}),
    # CGC fine-grained: ImageNet weights, new head, all layers tuned
    make_weights("resnet50_ce", "cub200", num_params=23917832, papers=("cgc", "ssim"), objective_args=_FT50),
    make_weights("resnet50_cgc", "cub200", num_params=23917832, papers=_CGC, objective_args={"lam": 0.25, **_FT50}),
    make_weights("resnet50_ce", "cars196", num_params=23909636, papers=_CGC, objective_args=_FT50),
    make_weights("resnet50_cgc", "cars196", num_params=23909636, papers=_CGC, objective_args={"lam": 0.25, **_FT50}),
    make_weights("resnet50_ce", "aircraft", num_params=23712932, papers=_CGC, objective_args=_FT50),
    make_weights("resnet50_cgc", "aircraft", num_params=23712932, papers=_CGC, objective_args={"lam": 0.5, **_FT50}),
    make_weights("resnet50_ce", "flowers102", num_params=23717030, papers=_CGC, objective_args=_FT50),
    make_weights(
        "resnet50_cgc", "flowers102", num_params=23717030, papers=_CGC, objective_args={"lam": 0.5, **_FT50}
    ),
    # CGC semi-supervised: 1 % of ImageNet labelled, the rest feeds the CGC term only; from a SwAV ResNet50
    make_weights("resnet50_ce", "in1k_semi1pct", num_params=25557032, papers=_CGC, objective_args=_SEMI),
    make_weights(
        "resnet50_cgc", "in1k_semi1pct", num_params=25557032, papers=_CGC,
        objective_args={"lam": 0.25, "tau": 0.5, **_SEMI},
    ),
    # SSIM + sparsity: ImageNet weights fine-tuned, alpha = 0.1, beta = 1e-5, p = 1
    make_weights("resnet18_ce", "cub200", num_params=11279112, papers=("ssim",), objective_args=_FT18),
    make_weights("resnet18_ssim", "cub200", num_params=11279112, papers=("ssim",), objective_args={**_SSIM, **_FT18}),
    make_weights("resnet50_ssim", "cub200", num_params=23917832, papers=("ssim",), objective_args={**_SSIM, **_FT50}),
    make_weights("resnet18_ce", "caltech101", num_params=11228325, papers=("ssim",), objective_args=_FT18),
    make_weights(
        "resnet18_ssim", "caltech101", num_params=11228325, papers=("ssim",), objective_args={**_SSIM, **_FT18}
    ),
    make_weights("resnet50_ce", "caltech101", num_params=23714981, papers=("ssim",), objective_args=_FT50),
    make_weights(
        "resnet50_ssim", "caltech101", num_params=23714981, papers=("ssim",), objective_args={**_SSIM, **_FT50}
    ),
    # Guided gradients (VISAPP 2024): CIFAR-100 from scratch, CIFAR stem, lambda = 7.5e-3 with cosine error
    make_weights("resnet18_ce", "cifar100", num_params=11220132, papers=("guided",), **_CIFAR),
    make_weights(
        "resnet18_guided", "cifar100", num_params=11220132, papers=("guided",),
        objective_args={"lam": 7.5e-3, "error": "cosine"}, **_CIFAR,
    ),
    # Ours: Fashion-MNIST scenes (recipes/fashion_scenes.py), trained on 2 CPU cores. Shortcut-free setting:
    make_weights(
        "resnet18_ce", "fashion_scenes", num_params=_FS_PARAMS, papers=_BOTH, **_FS, **_committed("resnet18_ce")
    ),
    make_weights(
        "resnet18_ce", "fashion_scenes_control", num_params=_FS_PARAMS, papers=_BOTH,
        objective_args=_fs_init("resnet18_ce.fashion_scenes"), **_FS,
    ),
    make_weights(
        "resnet18_gc", "fashion_scenes", num_params=_FS_PARAMS, papers=_GC,
        objective_args={"lam": 25.0, **_fs_init("resnet18_ce.fashion_scenes")}, **_FS, **_committed("resnet18_gc"),
    ),
    make_weights(
        "resnet18_cgc", "fashion_scenes", num_params=_FS_PARAMS, papers=_CGC,
        objective_args={"lam": 1.0, "tau": 0.5, **_fs_init("resnet18_ce.fashion_scenes")}, **_FS,
        **_committed("resnet18_cgc"),
    ),
    make_weights(
        "resnet18_ssim", "fashion_scenes", num_params=_FS_PARAMS, papers=("ssim",),
        objective_args={**_FS_SSIM, **_fs_init("resnet18_ce.fashion_scenes")}, **_FS,
    ),
    make_weights(
        "resnet18_guided", "fashion_scenes", num_params=_FS_PARAMS, papers=("guided",),
        objective_args={"lam": 7.5e-3, "error": "cosine", **_fs_init("resnet18_ce.fashion_scenes")}, **_FS,
    ),
    make_weights("resnet18_gmp_ce", "fashion_scenes", num_params=_FS_PARAMS, papers=_GC, **_FS),
    make_weights(
        "resnet18_gmp_ce", "fashion_scenes_control", num_params=_FS_PARAMS, papers=_GC,
        objective_args=_fs_init("resnet18_gmp_ce.fashion_scenes"), **_FS,
    ),
    make_weights(
        "resnet18_gmp_gc", "fashion_scenes", num_params=_FS_PARAMS, papers=_GC,
        objective_args={"lam": 25.0, **_fs_init("resnet18_gmp_ce.fashion_scenes")}, **_FS,
    ),
    # spurious-context setting (the GC paper's "hand holding the fish" stress test)
    make_weights("resnet18_ce", "fashion_scenes_spurious", num_params=_FS_PARAMS, papers=_BOTH, **_FS),
    make_weights(
        "resnet18_ce", "fashion_scenes_spurious_control", num_params=_FS_PARAMS, papers=_BOTH,
        objective_args=_fs_init("resnet18_ce.fashion_scenes_spurious"), **_FS,
    ),
    make_weights(
        "resnet18_gc", "fashion_scenes_spurious", num_params=_FS_PARAMS, papers=_GC,
        objective_args={"lam": 25.0, **_fs_init("resnet18_ce.fashion_scenes_spurious")}, **_FS,
    ),
    make_weights(
        "resnet18_cgc", "fashion_scenes_spurious", num_params=_FS_PARAMS, papers=_CGC,
        objective_args={"lam": 1.0, "tau": 0.5, **_fs_init("resnet18_ce.fashion_scenes_spurious")}, **_FS,
    ),
]  # fmt: skip

# The authors' releases (GC: UMBCvision/Explainable-Models-with-Consistent-Interpretations, README "Pre-trained";
# CGC: UCDvision/CGC, README "Checkpoints"; both MIT) and torchvision's ResNet-50, the GC paper's baseline. The GC
# README links its COCO ResNet18 baseline and GC rows to the ImageNet files, so only the two GMP COCO tags have one.


def _gc_drive(file_id: str) -> UpstreamSource:
    return UpstreamSource("GC authors", "drive_file", file_id, format="authors_pth_tar", license="mit")


_UPSTREAM = {
    "resnet18_ce.in1k": _gc_drive("1jBPTU75iar5dSoqB3jlNMcAnOSY3H17n"),
    "resnet18_gc.in1k": _gc_drive("1W52-sYbyPi-VFLRNlIWAwx4MExWiqMS_"),
    "resnet18_gmp_ce.in1k": _gc_drive("1ivN3kqDyZ6ekY6jVI0RMAYu_QoiDxCvT"),
    "resnet18_gmp_gc.in1k": _gc_drive("1NcJ5U8HIHKzReUpcDRdyMyrRmNXZcJ8J"),
    "resnet50_ce.in1k": UpstreamSource(
        provider="torchvision", kind="url", location="https://download.pytorch.org/models/resnet50-19c8e357.pth",
        format="torchvision_state_dict", license="bsd-3-clause", filename="resnet50-19c8e357.pth",
        sha256_prefix="19c8e357",
    ),
    "resnet50_gc.in1k": _gc_drive("1eGQke4BApVdObrq0NdrhMayUzihdcTvx"),
    "resnet50_gmp_ce.in1k": _gc_drive("1bjaEHU-NKrUnsf5QTHpIVeknRbrwkD32"),
    "resnet50_gmp_gc.in1k": _gc_drive("1yuvwGn6Em_lYWwjTXXfmcGAGV23sZ0D0"),
    "resnet18_gmp_ce.coco": _gc_drive("1rKP2oi1K83VP9w9jj_wgYw3psU_T5CMY"),
    "resnet18_gmp_gc.coco": _gc_drive("1plynvH8rKqLi37YaTl1I3HfLCw95kbZf"),
    # a Drive folder ("ResNet50 model pre-trained on ImageNet") holding the checkpoint
    "resnet50_cgc.in1k": UpstreamSource(
        provider="CGC authors", kind="drive_folder", location="1n7lFew0CdWuYCpR1kImMt7UC7_vsO5CT",
        format="authors_pth_tar", license="mit",
    ),
}  # fmt: skip
_WEIGHTS = attach_upstream(_WEIGHTS, _UPSTREAM)

ZOO_NAMES = zoo_names("resnet18") + zoo_names("resnet50")


MODEL_CLASSES.update(resnet18=ZooResNet, resnet50=ZooResNet)
default_cfgs = timm_default_cfgs(ZOO_NAMES, _WEIGHTS, _cfg)
register_zoo_entrypoints(globals(), ZOO_NAMES, _create, entrypoint_doc)
