"""AlexNet with timm's model interface, and the GC paper's AlexNet weight tags.

Layer names equal torchvision's (``features.*``, ``classifier.*``), so its state dicts load unchanged. An adaptive
average pool to 6×6 sits between ``features`` and the classifier, so the model runs at 224 px (6×6 feature map) and at
448 px (13×13), as the GC paper's composites need. ``forward_features`` returns the ``features`` output (after the last
max-pool): the layer both GC papers take Grad-CAM at.
"""

# no ``from __future__ import annotations``: FX copies forward's annotations into the code it generates, and TorchScript
# cannot read a string annotation there (test_model_forward_fx_torchscript of timm's suite)
from typing import Any

import torch
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


class AlexNet(nn.Module):
    """AlexNet (Krizhevsky et al., 2012) as torchvision builds it, with ``forward_features``/``forward_head``.

    timm's contract: ``num_features`` (256) is the channel count of ``forward_features``, ``head_hidden_size`` (4096)
    the width of ``forward_head(x, pre_logits=True)``. The head is the adaptive 6×6 average pool, the two hidden fully
    connected layers and the classifier; ``global_pool=""`` removes all of it, so ``forward`` returns the unpooled
    ``features`` map (timm's ``reset_classifier(0, "")``).

    Args:
        num_classes: classifier outputs (0: none, ``forward`` returns the 4096-wide pre-logits).
        in_chans: input channels.
        drop_rate: dropout before each fully connected layer (torchvision: 0.5).
        global_pool: ``"avg"`` (the adaptive 6×6 pool) or ``""`` (no pooling and no head; ``num_classes`` must be 0
            to run ``forward``).
        device: where to create the parameters.
        dtype: their dtype.
    """

    __jit_unused_properties__ = ["zoo_architecture"]

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.5,
        global_pool: str = "avg",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        _check_pool(global_pool)
        dd = {"device": device, "dtype": dtype}
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.num_features = 256
        self.head_hidden_size = 4096
        self.drop_rate = drop_rate
        self.global_pool = global_pool
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 64, kernel_size=11, stride=4, padding=2, **dd),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2, **dd),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1, **dd),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1, **dd),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1, **dd),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=drop_rate),
            nn.Linear(self.num_features * 6 * 6, self.head_hidden_size, **dd),
            nn.ReLU(inplace=True),
            nn.Dropout(p=drop_rate),
            nn.Linear(self.head_hidden_size, self.head_hidden_size, **dd),
            nn.ReLU(inplace=True),
            nn.Linear(self.head_hidden_size, num_classes, **dd) if num_classes > 0 else nn.Identity(),
        )
        self.feature_info = [
            dict(num_chs=64, reduction=4, module="features.1"),
            dict(num_chs=192, reduction=8, module="features.4"),
            dict(num_chs=384, reduction=16, module="features.7"),
            dict(num_chs=256, reduction=16, module="features.9"),
            dict(num_chs=256, reduction=32, module="features.12"),
        ]

    @property
    def zoo_architecture(self) -> str:
        """The architecture a saved config names (registered by this package, not by timm)."""
        return "alexnet"

    def get_classifier(self) -> nn.Module:
        return self.classifier[6]

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the last linear layer; ``global_pool=None`` keeps the pooling, ``""`` removes the whole head."""
        if global_pool is not None:
            _check_pool(global_pool)
            self.global_pool = global_pool
        self.num_classes = num_classes
        ref = self.classifier[4].weight  # the new layer lives where the model lives (device, dtype)
        dd = {"device": ref.device, "dtype": ref.dtype}
        self.classifier[6] = nn.Linear(self.head_hidden_size, num_classes, **dd) if num_classes > 0 else nn.Identity()
        self.classifier[6].train(self.training)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The ``features`` output: 256×6×6 at 224 px, 256×13×13 at 448 px."""
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == "":
            if self.num_classes > 0 and not pre_logits:
                raise ValueError("AlexNet with global_pool='' has no pooled head: reset_classifier(n, 'avg') first")
            return x
        x = torch.flatten(self.avgpool(x), 1)
        c = self.classifier  # indexed one by one: a slice would be a module FX and TorchScript do not know
        x = c[5](c[4](c[3](c[2](c[1](c[0](x))))))
        return x if pre_logits else c[6](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _check_pool(global_pool: str) -> None:
    if global_pool not in ("avg", ""):
        raise ValueError(f"AlexNet pools adaptively to 6x6 ('avg') or not at all (''); got global_pool={global_pool!r}")


def _create(name: str, pretrained: bool, **kwargs: Any) -> AlexNet:
    return build_zoo_model(AlexNet, name, pretrained, feature_cfg=dict(flatten_sequential=True), **kwargs)


def _feature_size(size: int) -> int:
    """Side of the ``features`` output: the 11×11/4 conv (padding 2), then three 3×3/2 max-pools."""
    size = (size + 4 - 11) // 4 + 1
    for _ in range(3):
        size = (size - 3) // 2 + 1
    return size


def _cfg(model_args: dict[str, Any], input_size: tuple[int, int, int] = (3, 224, 224), **kwargs: Any) -> dict[str, Any]:
    return {
        "num_classes": 1000,
        "input_size": input_size,
        "pool_size": tuple(_feature_size(size) for size in input_size[1:]),
        "crop_pct": 0.875,
        "interpolation": "bilinear",
        "first_conv": "features.0",
        "classifier": "classifier.6",
        **kwargs,
    }


# GC (AAAI 2021) Table 1: AlexNet on ImageNet, from scratch, lambda = 25, lr 0.01; the L1 is taken at pixel resolution
_WEIGHTS = [
    make_weights("alexnet_ce", "in1k", num_params=61100840, papers=("gc",)),
    make_weights("alexnet_gc", "in1k", num_params=61100840, papers=("gc",), objective_args={"lam": 25.0}),
    # Ours: Fashion-MNIST scenes at 128 px (recipes/fashion_scenes.py); GC starts from the CE model
    make_weights("alexnet_ce", "fashion_scenes", num_params=57044810, papers=("gc",), input_size=(3, 128, 128)),
    make_weights(
        "alexnet_ce", "fashion_scenes_control", num_params=57044810, papers=("gc",), input_size=(3, 128, 128),
        objective_args={"finetune": True, "init": "alexnet_ce.fashion_scenes"},
    ),
    make_weights(
        "alexnet_gc", "fashion_scenes", num_params=57044810, papers=("gc",), input_size=(3, 128, 128),
        objective_args={"lam": 25.0, "finetune": True, "init": "alexnet_ce.fashion_scenes"},
    ),
]  # fmt: skip

# torchvision's AlexNet is the GC paper's baseline; the GC authors released their GC model (MIT, on Google Drive)
_UPSTREAM = {
    "alexnet_ce.in1k": UpstreamSource(
        provider="torchvision",
        kind="url",
        location="https://download.pytorch.org/models/alexnet-owt-4df8aa71.pth",
        format="torchvision_state_dict",
        license="bsd-3-clause",
        filename="alexnet-owt-4df8aa71.pth",
        sha256_prefix="4df8aa71",
    ),
    "alexnet_gc.in1k": UpstreamSource(
        provider="GC authors",
        kind="drive_file",
        location="1s9xAZ2p8wdyiVVqnokOACtJTOEvh_D35",
        format="authors_pth_tar",
        license="mit",
    ),
}
_WEIGHTS = attach_upstream(_WEIGHTS, _UPSTREAM)

# ``alexnet`` itself is the base architecture saved configs name (timm has no AlexNet, so no name is overwritten)
ZOO_NAMES = zoo_names("alexnet")
MODEL_CLASSES["alexnet"] = AlexNet
default_cfgs = timm_default_cfgs(ZOO_NAMES + ["alexnet"], _WEIGHTS, _cfg)
register_zoo_entrypoints(globals(), ZOO_NAMES, _create, entrypoint_doc)
register_zoo_entrypoints(globals(), ["alexnet"], _create, lambda _: "AlexNet, the architecture of the alexnet_* names.")
