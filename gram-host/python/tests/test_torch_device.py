"""gram.torch's device path: the host path's numbers, gradcheck, no host synchronisation
(``meta`` tensors, ``torch.compile(fullgraph=True)``, CUDA's sync debug mode) and the float32
arithmetic Apple's ``mps`` gets."""
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch not installed (pip install torch)")
import gram.torch as gt  # noqa: E402
from gram import _device, _gram  # noqa: E402
from conftest import reference_cases  # noqa: E402


def unit(n, d, gen):
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True)


def hard_cases():
    """(name, anchor, [modalities]) in float64: the repository's reference cases (random k = 2..5,
    near-collinear down to 1e-5, duplicated and zero vectors, magnitudes 1e±12, dim < k) and
    tuples whose volume is 1e-6 and 1e-8 of the product of the norms, and k = 16."""
    for name, anchor, mods, _ in reference_cases():
        yield name, torch.from_numpy(anchor).double(), [torch.from_numpy(m).double() for m in mods]
    gen = torch.Generator().manual_seed(11)
    for eps in (1e-6, 1e-8):
        a, m1 = unit(6, 24, gen), unit(6, 24, gen)
        # m2 = a mix of a and m1 plus eps times a direction outside their span.
        m2 = 0.6 * a + 0.8 * m1 + eps * unit(6, 24, gen)
        yield f"tiny_{eps}", a, [m1, m2]
    # The largest k the library takes (16): the unrolled factorisation at its longest.
    yield "random_k16", unit(5, 40, gen), [unit(6, 40, gen) for _ in range(15)]


def both_paths(anchor, mods, up):
    """(volumes, gradients) of the host and the device path for upstream gradient `up`."""
    out = []
    for path in ("host", "device"):
        leaves = [anchor.clone().requires_grad_()] + [m.clone().requires_grad_() for m in mods]
        v = gt.volume_matrix(leaves[0], leaves[1:], path=path)
        grads = torch.autograd.grad(v, leaves, up)
        out.append((v.detach(), grads))
    return out


def rel(x, y):
    scale = max(x.abs().max().item(), y.abs().max().item())
    return 0.0 if scale == 0 else (x - y).abs().max().item() / scale


@pytest.mark.parametrize("name,anchor,mods", list(hard_cases()), ids=lambda x: x if isinstance(x, str) else "")
def test_device_path_equals_the_host_path_in_float64(name, anchor, mods):
    gen = torch.Generator().manual_seed(5)
    cross, inner, norms = gt.dot_parts(anchor, mods)
    up = torch.randn(cross.shape[:2], generator=gen, dtype=torch.float64)
    # The k×k part, forward and backward, on the same dot products: the same operations in
    # the same order, but for the sums over a batch (rayon's against torch's order).
    vh = torch.from_numpy(_gram._pair_volumes(*(t.numpy() for t in (cross, inner, norms))))
    vd = gt.DeviceVolumes.apply(cross, inner, norms)
    assert torch.equal(vh == 0, vd == 0), name
    # Both factor G the same way, but one rounding apart anywhere is amplified by the condition
    # κ = Π‖v‖²/vol² (vol² = det G is computed to a few ε·Π‖v‖², the backward error of the
    # LDLᵀ): on one machine's dot products the two agree to the bit, on another tiny_1e-06
    # (κ ≈ 1e12) differs by 3.6e-4 relative, with det G off by 5.9e-16 (exact rational det of
    # that G: the device path is 6e-5 from it, the host path 2.4e-4). So the volumes are held to
    # the backward error, and the gradients (∝ G⁻¹) to ε·κ.
    eps = torch.finfo(torch.float64).eps
    scale = norms[:, None] * torch.diagonal(inner, dim1=1, dim2=2).prod(dim=1)[None, :]
    assert ((vh**2 - vd**2).abs() <= 16 * eps * scale).all(), (name, (vh**2 - vd**2).abs().max())
    nz = vh != 0
    kappa = (scale[nz] / vh[nz] ** 2).max().item() if nz.any() else 1.0
    host = _gram._pair_volume_grads(*(t.numpy() for t in (cross, inner, norms, up)))
    saved, _ = _device.factor(cross, inner, norms)
    for h, d in zip(host, _device.volume_grads(saved, len(mods) + 1, up)):
        r = rel(torch.from_numpy(h), d)
        assert r <= max(1e-12, 16 * eps * kappa), (name, r, kappa)
    # End to end through autograd's matmuls, which add the products of those sums: the same
    # amplification by κ, on top of the GEMMs' own rounding.
    (vh, gh), (vd, gd) = both_paths(anchor, mods, up)
    assert torch.equal(vh == 0, vd == 0), name
    for x, y in zip(gh, gd):
        assert rel(x, y) <= max(1e-9, 16 * eps * kappa), (name, rel(x, y), kappa)


def test_duplicated_and_collinear_tuples_have_gradient_exactly_zero():
    gen = torch.Generator().manual_seed(3)
    a = unit(4, 8, gen)
    leaves = [a.clone().requires_grad_(), a.clone().requires_grad_(), (2 * a).requires_grad_()]
    v = gt.volume_matrix(leaves[0], leaves[1:], path="device")
    assert torch.all(v.diagonal() == 0)
    # Only the diagonal (vol = 0) contributes: the gradient is exactly 0.
    grads = torch.autograd.grad(v, leaves, torch.eye(4, dtype=torch.float64))
    assert all(torch.all(g == 0) for g in grads)


def test_gradcheck_in_float64():
    gen = torch.Generator().manual_seed(0)
    inputs = [unit(n, 6, gen).requires_grad_() for n in (3, 4, 4, 4)]
    assert torch.autograd.gradcheck(lambda a, *m: gt.volume_matrix(a, m, path="device"), inputs)


def gram_loss(a, m1, m2, path="device"):
    """A GRAM loss over the volume matrix, as a training step computes it."""
    v = gt.volume_matrix(a, [m1, m2], path=path)
    logits = -v / 0.07
    target = torch.arange(a.shape[0], device=a.device)
    return (torch.nn.functional.cross_entropy(logits, target)
            + torch.nn.functional.cross_entropy(logits.T, target)) / 2


def step(a, m1, m2, loss_fn=gram_loss):
    """Forward and backward: the loss and its gradients."""
    loss = loss_fn(a, m1, m2)
    return loss, torch.autograd.grad(loss, (a, m1, m2))


def test_forward_and_backward_run_on_meta_tensors():
    # A meta tensor has no values: any read back to the host (`.item()`, `.cpu()`, a branch on
    # a value) raises. The loss and the gradients come out with their shapes.
    x = [torch.empty(8, 16, device="meta", dtype=torch.float32).requires_grad_() for _ in range(3)]
    loss, grads = step(*x)
    assert loss.device.type == "meta" and loss.shape == ()
    assert [g.shape for g in grads] == [(8, 16)] * 3
    # "auto" picks the device path for a non-CPU device.
    assert gt.volume_matrix(x[0], x[1:]).device.type == "meta"


def test_compiles_with_fullgraph_and_matches_eager():
    # fullgraph=True raises on any graph break, which a host read would cause; AOT autograd
    # traces the backward (the autograd.Function's too) with fake tensors ahead of time, where a
    # host read fails as well. aot_eager runs the traced graphs without generating C++ kernels.
    torch._dynamo.reset()
    gen = torch.Generator().manual_seed(4)
    x = [unit(6, 12, gen).requires_grad_() for _ in range(3)]
    compiled = torch.compile(gram_loss, fullgraph=True, backend="aot_eager")
    loss_c, grads_c = step(*x, loss_fn=compiled)
    loss_e, grads_e = step(*x)
    assert torch.allclose(loss_c, loss_e, rtol=1e-14, atol=0)
    for c, e in zip(grads_c, grads_e):
        assert torch.allclose(c, e, rtol=1e-12, atol=1e-15)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the sync-debug check needs one")
def test_no_synchronisation_on_cuda():
    gen = torch.Generator().manual_seed(6)
    x = [unit(64, 32, gen).cuda().requires_grad_() for _ in range(3)]
    step(*x)  # warm-up: lazy initialisation may synchronise
    torch.cuda.set_sync_debug_mode("error")
    try:
        step(*x)
        vc = gt.volume_matrix(x[0], x[1:], path="device").detach()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    vc = vc.cpu()  # the one read back, after the checked step
    vh = gt.volume_matrix(x[0].detach().cpu(), [y.detach().cpu() for y in x[1:]], path="host")
    assert rel(vc, vh) <= 1e-12


def test_float32_arithmetic_for_devices_without_float64():
    # What `mps` runs: the same algorithm in float32 (here on the CPU). Measured against the
    # float64 path on unit vectors in 512 dimensions: the relative error of the volume stays
    # below 2e-5 for normalised volumes ≥ 1e-2 (a pivot's error is ~k·2^-24 / vol²).
    gen = torch.Generator().manual_seed(8)
    a, m1, m2 = (unit(64, 512, gen) for _ in range(3))
    v64 = gt.volume_matrix(a, [m1, m2], path="device")
    v32 = _device.volumes(*(t.float() for t in gt.dot_parts(a, [m1, m2]))).double()
    ok = v64 >= 1e-2
    assert ok.float().mean() > 0.9
    err = ((v32 - v64).abs() / v64)[ok].max().item()
    assert err <= 2e-5, err
    assert torch.isfinite(v32).all() and (v32 >= 0).all()
    assert _device.compute_dtype(torch.device("mps")) == torch.float32
    assert _device.compute_dtype(torch.device("cpu")) == torch.float64


def test_non_finite_input_is_reported():
    a = torch.full((2, 3), float("nan"), dtype=torch.float64)
    with pytest.raises(RuntimeError, match="non-finite"):
        gt.volume_matrix(a, [torch.ones(2, 3, dtype=torch.float64)], path="device")
    with pytest.raises(ValueError, match="path"):
        gt.volume_matrix(a, [a], path="gpu")
