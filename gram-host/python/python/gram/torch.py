"""A differentiable GRAM volume matrix for PyTorch, over gram-nostd's factorisation.

``volume_matrix(anchor, modalities)`` is a drop-in for the published ``volume_computation``
(``volume_computation(anchor, *modalities)`` keeps its signature): the dot products are
PyTorch matmuls in the inputs' dtype (autograd handles them), and the k×k part — each pair's
Gram matrix, sqrt(det G) and ∂vol/∂G = ½·vol·G⁻¹ — runs in float64 in Rust
(``gram_host::pair_gram``, equilibrated pivoted LDLᵀ). Where the published
``sqrt(|det G|)`` has an infinite or NaN gradient (duplicated or collinear inputs, vol = 0),
this returns the subgradient 0. The k×k tensors (B1·B2·k² numbers) go through host memory, so
CPU tensors are the intended use; tensors on another device are copied there and back.
"""
from typing import Sequence

import numpy as np
import torch

from . import _gram

__all__ = ["volume_matrix", "volume_computation"]


def _host(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().to("cpu", torch.float64).numpy())


class PairVolumes(torch.autograd.Function):
    """V [B1, B2] from cross [B1, B2, m], inner [B2, m, m] and squared norms [B1]."""

    @staticmethod
    def forward(ctx, cross, inner, norms):
        ctx.save_for_backward(cross, inner, norms)
        v = _gram._pair_volumes(_host(cross), _host(inner), _host(norms))
        return torch.from_numpy(v).to(cross.device, cross.dtype)

    @staticmethod
    def backward(ctx, grad_v):
        cross, inner, norms = ctx.saved_tensors
        d_cross, d_inner, d_norms = _gram._pair_volume_grads(
            _host(cross), _host(inner), _host(norms), _host(grad_v)
        )
        back = lambda a, like: torch.from_numpy(a).to(like.device, like.dtype)  # noqa: E731
        return back(d_cross, cross), back(d_inner, inner), back(d_norms, norms)


def volume_matrix(anchor: torch.Tensor, modalities: Sequence[torch.Tensor]) -> torch.Tensor:
    """V[i, j] = vol(anchor[i], modalities[0][j], …), differentiable in every input.

    ``anchor`` [B1, D], ``modalities`` 1..15 tensors [B2, D]; returns [B1, B2] in the
    anchor's dtype.
    """
    mods = list(modalities)
    if not 1 <= len(mods) < _gram.MAX_K:
        raise ValueError(f"modalities: {len(mods)} given; need 1..{_gram.MAX_K - 1}")
    if anchor.dim() != 2 or any(m.dim() != 2 or m.shape != mods[0].shape for m in mods):
        raise ValueError("anchor must be [B1, D] and every modality [B2, D] with the same D")
    if mods[0].shape[1] != anchor.shape[1]:
        raise ValueError(f"modalities[0]: dimension {mods[0].shape[1]} does not match the dimension of the anchor, anchor ({anchor.shape[1]})")
    m = len(mods)
    cross = torch.stack([anchor @ x.T for x in mods], dim=2)
    inner = torch.stack([(s * t).sum(1) for s in mods for t in mods], dim=1).reshape(-1, m, m)
    norms = (anchor * anchor).sum(1)
    return PairVolumes.apply(cross, inner, norms)


def volume_computation(anchor: torch.Tensor, *modalities: torch.Tensor) -> torch.Tensor:
    """The published ``volume_computation(language, *inputs)`` signature."""
    return volume_matrix(anchor, modalities)
