"""SSIM consistency against scikit-image exactly as COSE calls it; COSE by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from consistentzoo.metrics import cose, ssim_consistency


def _maps(b: int = 4, h: int = 24, w: int = 30, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(b, h, w, generator=g, dtype=torch.float64) ** 2
    back = (a + 0.3 * torch.rand(b, h, w, generator=g, dtype=torch.float64)).clamp_min(0) * 0.7
    return a, back


def test_ssim_equals_skimage_without_mask():
    metrics = pytest.importorskip("skimage.metrics")
    a, back = _maps()
    ours = ssim_consistency(a, back).values
    for i in range(a.shape[0]):
        x, y = a[i].numpy(), back[i].numpy()
        drange = max(y.max() - y.min(), x.max() - x.min())  # COSE: the larger range of the two maps
        ref = metrics.structural_similarity(x, y, win_size=5, data_range=drange)  # uniform window, as COSE
        assert float(ours[i]) == pytest.approx(ref, rel=1e-10, abs=1e-12)


@pytest.mark.filterwarnings("ignore:.*binary_erosion.*:FutureWarning")  # COSE calls it; deprecated in skimage 0.26
def test_ssim_equals_skimage_over_eroded_valid_region():
    metrics = pytest.importorskip("skimage.metrics")
    morphology = pytest.importorskip("skimage.morphology")
    a, back = _maps(seed=1)
    valid = torch.zeros_like(a, dtype=torch.bool)
    valid[0, 3:20, 2:25] = True  # a translated image's valid part
    valid[1] = True  # identity transform
    valid[2, :, 10:] = True  # touches the border: erosion treats outside pixels as valid
    valid[3, 5:15, 5:12] = True
    ours = ssim_consistency(a, back, valid).values
    for i in range(a.shape[0]):
        x, y = a[i].numpy(), back[i].numpy()
        drange = max(y.max() - y.min(), x.max() - x.min())
        _, full = metrics.structural_similarity(x, y, win_size=5, full=True, data_range=drange)
        region = morphology.binary_erosion(valid[i].numpy(), footprint=np.ones((5, 5)))
        assert float(ours[i]) == pytest.approx(float(np.mean(full[region])), rel=1e-10, abs=1e-12)


def test_ssim_identical_maps_and_skips():
    a, _ = _maps()
    assert torch.allclose(ssim_consistency(a, a).values, torch.ones(4, dtype=torch.float64))
    const = a.clone()
    const[1] = 0.0
    b2 = const.clone()
    valid = torch.ones_like(a, dtype=torch.bool)
    valid[2] = False
    valid[2, 8:12, 8:12] = True  # 4x4 inside the image: erodes to nothing
    res = ssim_consistency(const, b2, valid)
    assert res.index.tolist() == [0, 3]
    assert res.n_skipped == {"constant_maps": 1, "empty_valid_region": 1}
    assert torch.isfinite(res.values).all()


def test_ssim_bad_input():
    a, back = _maps()
    with pytest.raises(ValueError, match="maps_back"):
        ssim_consistency(a, back[:, :-1])
    with pytest.raises(ValueError, match="negative"):
        ssim_consistency(a, back - 1)
    with pytest.raises(ValueError, match="boolean"):
        ssim_consistency(a, back, torch.ones_like(a))
    with pytest.raises(ValueError, match="smaller"):
        ssim_consistency(a[:, :4, :4], back[:, :4, :4])


def test_cose_by_hand():
    sim = torch.tensor([0.9, 0.8, 0.3, 0.5, 0.1, 0.7])
    labels = torch.tensor([1, 1, 2, 2, 3, 3])
    preds = torch.tensor([1, 1, 2, 2, 0, 3])
    preds_t = torch.tensor([1, 1, 0, 2, 3, 4])
    # consistent: pairs 0, 1, 3; fidelity: pairs 2, 5; pair 4 (wrong original prediction) in neither
    res = cose(sim, labels, preds, preds_t)
    cons, fid = (0.9 + 0.8 + 0.5) / 3, (0.3 + 0.7) / 2
    assert res.consistency == pytest.approx(cons) and res.fidelity == pytest.approx(fid)
    assert res.cose == pytest.approx(math.sqrt(cons * (1 - fid)))
    assert (res.n_consistency, res.n_fidelity) == (3, 2)
    with pytest.raises(ValueError, match="both kinds"):
        cose(sim, labels, preds, preds)
