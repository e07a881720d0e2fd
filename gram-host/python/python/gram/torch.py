"""A differentiable GRAM volume matrix for PyTorch, over gram-nostd's factorisation.

``volume_matrix(anchor, modalities)`` is a drop-in for the published ``volume_computation``
(``volume_computation(anchor, *modalities)`` keeps its signature): the dot products are
PyTorch matmuls in the inputs' dtype (autograd handles them), and the k×k part — each pair's
Gram matrix, its equilibrated pivoted LDLᵀ factorisation, sqrt(det G) and
∂vol/∂G = ½·vol·G⁻¹ — in float64, by one of two paths with the same arithmetic:

- ``"device"``: batched tensor operations on the inputs' device (``gram._device``): nothing goes
  through host memory and nothing synchronises with the host, so it runs on GPUs, on ``meta``
  tensors, under ``torch.compile(fullgraph=True)`` and in CUDA graphs. Apple's ``mps`` has no
  float64: the k×k part runs in float32 there.
- ``"host"``: the Rust implementation (``gram_host::pair_gram``), through host memory; it checks
  every value and raises ``ValueError`` on non-finite input.

``path="auto"`` (the default) takes the host path for CPU tensors and the device path for any
other device. The two agree to 1e-12 relative in float64. Where the published
``sqrt(|det G|)`` has an infinite or NaN gradient (duplicated or collinear inputs, vol = 0),
both return the subgradient 0.
"""
from typing import Sequence

import numpy as np
import torch
# PyTorch's compiler stack, and with it Triton's own LLVM, loaded now (~1 s of import time): once
# gram's GPU backend has loaded a Mesa Vulkan driver built on the system's LLVM (lavapipe, the
# software adapter), importing Triton — which torch does lazily, e.g. for the device path on
# `meta` tensors or `torch.compile` — crashes the process; in this order both work (the test
# suite runs the GPU tests before the torch ones in one process).
import torch._dynamo  # noqa: F401,E402

from . import _device, _gram

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


class DeviceVolumes(torch.autograd.Function):
    """PairVolumes on the inputs' device (``gram._device``); no host synchronisation."""

    @staticmethod
    def forward(ctx, cross, inner, norms):
        # The factors are kept for the backward pass (≈ k²/2 + 2k + 3 numbers a pair) rather
        # than recomputed: the factorisation is a third of a forward + backward step.
        saved, vol = _device.factor(*_compute(cross, inner, norms))
        ctx.save_for_backward(*saved)
        ctx.k, ctx.dtypes = cross.shape[2] + 1, (cross.dtype, inner.dtype, norms.dtype)
        return vol.to(cross.dtype)

    @staticmethod
    def backward(ctx, grad_v):
        saved = ctx.saved_tensors
        grads = _device.volume_grads(saved, ctx.k, grad_v.to(saved[-1].dtype))
        return tuple(g.to(dt) for g, dt in zip(grads, ctx.dtypes))


def _compute(*ts):
    dt = _device.compute_dtype(ts[0].device)
    return [t.to(dt) for t in ts]


def dot_parts(anchor, mods):
    """What the k×k part is computed from, with autograd: cross [B1, B2, m] = anchor · mods[t]ᵀ,
    inner [B2, m, m] = each candidate's dot products, norms [B1] = ‖anchor_i‖²."""
    m = len(mods)
    cross = torch.stack([anchor @ x.T for x in mods], dim=2)
    inner = torch.stack([(s * t).sum(1) for s in mods for t in mods], dim=1).reshape(-1, m, m)
    return cross, inner, (anchor * anchor).sum(1)


PATHS = ("auto", "device", "host")


def volume_matrix(
    anchor: torch.Tensor, modalities: Sequence[torch.Tensor], path: str = "auto"
) -> torch.Tensor:
    """V[i, j] = vol(anchor[i], modalities[0][j], …), differentiable in every input.

    ``anchor`` [B1, D], ``modalities`` 1..15 tensors [B2, D] on the anchor's device; returns
    [B1, B2] in the anchor's dtype. ``path``: ``"auto"`` (host for CPU tensors, device
    otherwise), ``"device"`` or ``"host"`` (see the module's doc).
    """
    if path not in PATHS:
        raise ValueError(f"path: {path!r}; expected one of {', '.join(PATHS)}")
    mods = list(modalities)
    if not 1 <= len(mods) < _gram.MAX_K:
        raise ValueError(f"modalities: {len(mods)} given; need 1..{_gram.MAX_K - 1}")
    if anchor.dim() != 2 or any(m.dim() != 2 or m.shape != mods[0].shape for m in mods):
        raise ValueError("anchor must be [B1, D] and every modality [B2, D] with the same D")
    if mods[0].shape[1] != anchor.shape[1]:
        raise ValueError(f"modalities[0]: dimension {mods[0].shape[1]} does not match the dimension of the anchor, anchor ({anchor.shape[1]})")
    cross, inner, norms = dot_parts(anchor, mods)
    if path == "auto":
        path = "host" if anchor.device.type == "cpu" else "device"
    op = PairVolumes if path == "host" else DeviceVolumes
    return op.apply(cross, inner, norms)


def volume_computation(anchor: torch.Tensor, *modalities: torch.Tensor) -> torch.Tensor:
    """The published ``volume_computation(language, *inputs)`` signature."""
    return volume_matrix(anchor, modalities)
