"""Top-k accuracy and multi-label F1 against torchmetrics."""

from __future__ import annotations

import pytest
import torch

from consistentzoo.metrics import multilabel_f1, topk_accuracy


def test_topk_equals_torchmetrics():
    tm = pytest.importorskip("torchmetrics.functional.classification")
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 10, generator=g)
    labels = torch.randint(0, 10, (50,), generator=g)
    ours = topk_accuracy(logits, labels, ks=(1, 5))
    for k in (1, 5):
        ref = tm.multiclass_accuracy(logits, labels, num_classes=10, top_k=k, average="micro")
        assert float(ours[k].mean()) == pytest.approx(float(ref))
    with pytest.raises(ValueError, match="ks"):
        topk_accuracy(logits, labels, ks=(11,))
    with pytest.raises(ValueError, match="labels"):
        topk_accuracy(logits, labels + 10)


def test_multilabel_f1_equals_torchmetrics_and_definition():
    tm = pytest.importorskip("torchmetrics.functional.classification")
    g = torch.Generator().manual_seed(1)
    probs = torch.rand(40, 6, generator=g)
    targets = torch.rand(40, 6, generator=g) > 0.6
    targets[:, 5] = False  # a class with no positives
    probs[:, 5] = 0.1  # ...and never predicted: F1 0, not NaN
    res = multilabel_f1(probs, targets)
    ref_cls = tm.multilabel_f1_score(probs, targets.int(), num_labels=6, average="none", zero_division=0)
    torch.testing.assert_close(res.per_class.float(), ref_cls)
    ref_micro = tm.multilabel_f1_score(probs, targets.int(), num_labels=6, average="micro")
    assert res.of1 == pytest.approx(float(ref_micro), rel=1e-6)
    assert res.macro_f1 == pytest.approx(float(ref_cls.mean()), rel=1e-6)
    cp, cr = float(res.precision.mean()), float(res.recall.mean())
    assert res.cf1 == pytest.approx(2 * cp * cr / (cp + cr))
    with pytest.raises(ValueError, match="0/1"):
        multilabel_f1(probs, targets.float() * 2)
