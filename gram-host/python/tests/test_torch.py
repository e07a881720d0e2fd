"""gram.torch against torch.autograd.gradcheck, the published recipe, and at collinear tuples."""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch not installed (pip install torch)")
import gram  # noqa: E402
import gram.torch as gt  # noqa: E402


def published_volume_computation(language, *inputs):
    """The published GRAM recipe: Gram matrix from dot products, det, sqrt(|det|)."""
    b1, b2 = language.shape[0], inputs[0].shape[0]
    k = len(inputs) + 1
    g = torch.empty(b1, b2, k, k, dtype=language.dtype)
    vs = [language[:, None, :].expand(b1, b2, -1)] + [x[None, :, :].expand(b1, b2, -1) for x in inputs]
    for s in range(k):
        for t in range(k):
            g[:, :, s, t] = (vs[s] * vs[t]).sum(-1)
    return torch.linalg.det(g).abs().sqrt()


def unit(n, d, gen):
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True)


def test_gradcheck_in_float64():
    gen = torch.Generator().manual_seed(0)
    inputs = [unit(n, 6, gen).requires_grad_() for n in (3, 4, 4, 4)]
    assert torch.autograd.gradcheck(lambda a, *m: gt.volume_matrix(a, m), inputs)
    assert torch.autograd.gradgradcheck is not None  # first order is what the op defines


def test_matches_the_published_recipe_where_it_is_accurate():
    gen = torch.Generator().manual_seed(1)
    a, m1, m2 = (unit(n, 32, gen).requires_grad_() for n in (5, 7, 7))
    ours = gt.volume_computation(a, m1, m2)
    theirs = published_volume_computation(a, m1, m2)
    assert torch.allclose(ours, theirs, rtol=1e-10, atol=0)
    up = torch.randn(5, 7, generator=gen, dtype=torch.float64)
    g_ours = torch.autograd.grad(ours, (a, m1, m2), up)
    g_theirs = torch.autograd.grad(theirs, (a, m1, m2), up)
    for x, y in zip(g_ours, g_theirs):
        assert torch.allclose(x, y, rtol=1e-8, atol=1e-10)


def test_forward_equals_the_numpy_api():
    gen = torch.Generator().manual_seed(2)
    a, m = unit(6, 16, gen), unit(6, 16, gen)
    v = gt.volume_matrix(a.float(), [m.float()])
    assert v.dtype == torch.float32
    assert np.allclose(v.numpy(), gram.volume_matrix(a.numpy(), [m.numpy()]), rtol=1e-5)


def test_gradient_is_finite_at_duplicated_and_collinear_tuples():
    gen = torch.Generator().manual_seed(3)
    a = unit(4, 8, gen)
    m = a.clone()  # every positive is the anchor itself: vol = 0
    a.requires_grad_()
    m.requires_grad_()
    v = gt.volume_matrix(a, [m, 2.0 * m.detach()])
    assert torch.all(v.diagonal() == 0)
    v.sum().backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(m.grad).all()
    # The published recipe's gradient there is not finite.
    a2 = a.detach().clone().requires_grad_()
    published_volume_computation(a2, m.detach(), 2.0 * m.detach()).sum().backward()
    assert not torch.isfinite(a2.grad).all()


def test_bad_arguments():
    a = torch.zeros(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="modalities"):
        gt.volume_matrix(a, [])
    with pytest.raises(ValueError, match="dimension"):
        gt.volume_matrix(a, [torch.zeros(2, 4, dtype=torch.float64)])
    with pytest.raises(ValueError, match="volume_matrix: "):
        gt.volume_matrix(torch.full((2, 3), float("nan"), dtype=torch.float64), [a])
