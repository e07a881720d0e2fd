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
        ctx.save_for_backward(cross, inner, norms)
        g = _device_gram(cross, inner, norms)
        return _device.volumes(g.flatten(0, 1)).reshape(cross.shape[:2]).to(cross.dtype)

    @staticmethod
    def backward(ctx, grad_v):
        cross, inner, norms = ctx.saved_tensors
        g = _device_gram(cross, inner, norms)
        _, dg = _device.volume_gradients(g.flatten(0, 1))
        dg = dg.reshape(g.shape)
        u = grad_v.to(dg.dtype)
        # As the host path: u·(∂/∂G_0t + ∂/∂G_t0), then sums over the other batch.
        d_cross = u[:, :, None] * (dg[:, :, 0, 1:] + dg[:, :, 1:, 0])
        d_inner = (u[:, :, None, None] * dg[:, :, 1:, 1:]).sum(0)
        d_norms = (u * dg[:, :, 0, 0]).sum(1)
        return d_cross.to(cross.dtype), d_inner.to(inner.dtype), d_norms.to(norms.dtype)


def _device_gram(cross, inner, norms):
    dt = _device.compute_dtype(cross.device)
    return _device.gram(cross.to(dt), inner.to(dt), norms.to(dt))


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
    m = len(mods)
    cross = torch.stack([anchor @ x.T for x in mods], dim=2)
    inner = torch.stack([(s * t).sum(1) for s in mods for t in mods], dim=1).reshape(-1, m, m)
    norms = (anchor * anchor).sum(1)
    if path == "auto":
        path = "host" if anchor.device.type == "cpu" else "device"
    op = PairVolumes if path == "host" else DeviceVolumes
    return op.apply(cross, inner, norms)


def volume_computation(anchor: torch.Tensor, *modalities: torch.Tensor) -> torch.Tensor:
    """The published ``volume_computation(language, *inputs)`` signature."""
    return volume_matrix(anchor, modalities)
