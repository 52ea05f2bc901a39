"""Gradient-weighted class activation maps: Grad-CAM, HiResCAM (the GC/CGC form), Grad-CAM++, XGrad-CAM.

All four take ``A = forward_features(x)`` (or the ``layer=`` output), the target logit ``s = y[t]`` and
``G = ∂s/∂A`` from ``torch.autograd.grad``; with ``create_graph=True`` the map is differentiable with respect to the
model's parameters. Maps are at the layer's grid, unnormalised, ReLU'd unless ``relu=False``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import CAMInputs, CAMMethod


class GradCAM(CAMMethod):
    r"""Grad-CAM (Selvaraju et al., ICCV 2017, "Grad-CAM: Visual explanations from deep networks via gradient-based
    localization").

    .. math:: \alpha_k = \frac{1}{hw}\sum_{ij} \frac{\partial s}{\partial A_k(i,j)}, \qquad
              \mathrm{cam} = \mathrm{ReLU}\Big(\sum_k \alpha_k A_k\Big)

    Equals captum's ``LayerGradCam(relu_attributions=True)`` and pytorch-grad-cam's ``GradCAM`` (before their
    min-max). ``relu=False`` keeps the signed map (the SSIM-consistency paper's Φ).
    """

    name = "gradcam"
    differentiable = True

    def weights(self, inputs: CAMInputs) -> Tensor:
        return inputs.gradients.mean(dim=(2, 3))


class HiResCAM(CAMMethod):
    r"""HiResCAM (Draelos & Carin, 2020, "Use HiResCAM instead of Grad-CAM for faithful explanations of
    convolutional neural networks") — the element-wise Grad-CAM that GC (Pillai & Pirsiavash, AAAI 2021) and CGC
    (Pillai et al., CVPR 2022) train with.

    .. math:: \mathrm{cam} = \mathrm{ReLU}\Big(\sum_k \frac{\partial s}{\partial A_k} \odot A_k\Big)

    No spatial averaging of the gradient; the ReLU comes after the channel sum (unlike pytorch-grad-cam's
    ``GradCAMElementWise``). For a global-average-pooling + linear head this is CAM divided by ``h·w``:
    ``ReLU(Σ_k w_{tk} A_k) / (hw)``.
    """

    name = "hirescam"
    differentiable = True

    def cam(self, inputs: CAMInputs) -> Tensor:
        return (inputs.gradients * inputs.activations).sum(dim=1)


class GradCAMPlusPlus(CAMMethod):
    r"""Grad-CAM++ (Chattopadhay et al., WACV 2018, "Grad-CAM++: Generalized gradient-based visual explanations"),
    with the closed-form coefficients of its eq. 19 (exponential score, so higher derivatives are powers of ``G``).

    .. math:: a_k(i,j) = \frac{G_k(i,j)^2}{2 G_k(i,j)^2 + \sum_{ab} A_k(a,b)\, G_k(i,j)^3 + \epsilon}, \quad
              w_k = \sum_{ij} a_k(i,j)\,\mathrm{ReLU}(G_k(i,j)), \quad
              \mathrm{cam} = \mathrm{ReLU}\Big(\sum_k w_k A_k\Big)

    with ``a = 0`` where ``G = 0`` and ``ε = 1e-6`` (as pytorch-grad-cam).
    """

    name = "gradcam++"
    differentiable = True
    eps: float = 1e-6

    def weights(self, inputs: CAMInputs) -> Tensor:
        grads, acts = inputs.gradients, inputs.activations
        grads2 = grads.pow(2)
        denominator = 2 * grads2 + acts.sum(dim=(2, 3), keepdim=True) * grads2 * grads + self.eps
        alpha = torch.where(grads != 0, grads2 / denominator, torch.zeros_like(grads))
        return (alpha * grads.clamp(min=0)).sum(dim=(2, 3))


class XGradCAM(CAMMethod):
    r"""XGrad-CAM / Axiom-based Grad-CAM (Fu et al., BMVC 2020, "Axiom-based Grad-CAM: Towards accurate visualization
    and explanation of CNNs").

    .. math:: w_k = \sum_{ij} \frac{A_k(i,j)}{\sum_{ab} A_k(a,b) + \epsilon}\, G_k(i,j), \qquad
              \mathrm{cam} = \mathrm{ReLU}\Big(\sum_k w_k A_k\Big)

    with ``ε = 1e-7`` (as pytorch-grad-cam).
    """

    name = "xgradcam"
    differentiable = True
    eps: float = 1e-7

    def weights(self, inputs: CAMInputs) -> Tensor:
        acts = inputs.activations
        return (inputs.gradients * acts).sum(dim=(2, 3)) / (acts.sum(dim=(2, 3)) + self.eps)
