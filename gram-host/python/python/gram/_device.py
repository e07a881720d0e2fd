"""The k×k part of ``gram.torch.volume_matrix`` as batched tensor operations on the inputs' device.

The same arithmetic as the Rust host path (``gram_nostd::GramFactor``, which every backend is
tested against), written over a batch of pairs [P, k, k] instead of one pair at a time:

1. equilibrate, Ĝ = D^-½ G D^-½ with D = diag G (entries clamped to [-1, 1], Cauchy–Schwarz);
2. pivoted LDLᵀ, pivot = the largest remaining diagonal entry (first of equals), a pivot at or
   below k·ε (ε = the compute dtype's epsilon) ends the factorisation: the pair is singular;
3. vol = Π sqrt(pivot) · Π sqrt(G_ii);
4. backward: ∂vol/∂G = ½·vol·G⁻¹ = ½·(Ĝ⁻¹)_ij·(vol/√(G_ii G_jj)), Ĝ⁻¹ from the same factors
   (L⁻ᵀ D⁻¹ L⁻¹, by substitution); 0 at a singular or zero pair, the subgradient at the minimum.

Each step performs the host path's floating-point operations in the same order, so in float64 on
the CPU the two agree to a few units in the last place (tested to 1e-12 relative). What the host
path does in scaled arithmetic (a volume or a product of norms outside the normal range, e.g.
inputs of magnitude 1e±150) is plain float64 here: it can overflow to inf or underflow to 0.

No value is read back to the host anywhere (no ``.item()``, no data-dependent branch): the pivot
is chosen with ``argmax`` and applied with ``gather``, singular pairs are masked with ``where``. A
non-finite input gives NaN volumes; ``torch._assert_async`` reports it where the device
supports device-side asserts (CUDA; on the CPU it raises at once). So the whole step runs on
``meta`` tensors, compiles with ``torch.compile(fullgraph=True)``, and can be captured in a CUDA
graph.
"""
import torch


def compute_dtype(device: torch.device) -> torch.dtype:
    """float64 wherever the device has it; Apple's ``mps`` has no float64: float32 there
    (accuracy measured on the CPU with the same float32 arithmetic: gram-host/python/README)."""
    return torch.float32 if device.type == "mps" else torch.float64


def gram(cross, inner, norms):
    """Pair (i, j)'s Gram matrix [B1, B2, k, k] from cross [B1, B2, m], inner [B2, m, m],
    norms [B1] (row/column 0: the anchor)."""
    b1, b2, m = cross.shape
    top = torch.cat([norms[:, None, None].expand(b1, b2, 1), cross], dim=2)  # [B1, B2, k]
    rest = torch.cat([cross[..., None], inner[None].expand(b1, b2, m, m)], dim=3)
    return torch.cat([top[:, :, None, :], rest], dim=2)


def _equilibrate(g):
    """Ĝ, 1/sqrt(G_ii) (0 for a zero diagonal), Π sqrt(G_ii), and whether a diagonal is zero."""
    k = g.shape[-1]
    d = torch.diagonal(g, dim1=-2, dim2=-1)
    s = torch.sqrt(d)
    inv = torch.where(d > 0, 1.0 / torch.where(d > 0, s, torch.ones_like(s)), torch.zeros_like(s))
    zero = (d == 0).any(dim=-1)
    diag_sqrt = s[..., 0]
    for i in range(1, k):
        diag_sqrt = diag_sqrt * s[..., i]
    a = ((g * inv[..., :, None]) * inv[..., None, :]).clamp(-1.0, 1.0)
    # The host path reads the lower triangle and mirrors it (g_ij·s_i·s_j and g_ji·s_j·s_i
    # may round apart).
    lower = torch.ones(k, k, dtype=torch.bool, device=g.device).tril()
    a = torch.where(lower, a, a.transpose(-1, -2))
    eye = torch.eye(k, dtype=torch.bool, device=g.device)
    a = torch.where(eye, (~zero).to(g.dtype)[..., None, None], a)
    return a, inv, diag_sqrt, zero


def _swap(a, perm, j, p):
    """Rows and columns j and p of every a [P, k, k] swapped (p [P] ≥ j), and perm with them."""
    k = a.shape[-1]
    idx = torch.arange(k, device=a.device).expand(a.shape[0], k).clone()
    jj = torch.full_like(p, j)
    idx.scatter_(1, p[:, None], jj[:, None])
    idx[:, j] = p
    a = a.gather(1, idx[:, :, None].expand_as(a)).gather(2, idx[:, None, :].expand_as(a))
    return a, perm.gather(1, idx)


def ldl_pivoted(a):
    """Pivoted LDLᵀ of equilibrated a [P, k, k] (``gram_nostd::ldl_pivoted``): returns the
    factors in a (below the diagonal: L in pivot order; diagonal: D), perm [P, k] (pivot
    position → input index) and singular [P] (a pivot ≤ k·ε·max diag)."""
    n, k = a.shape[0], a.shape[-1]
    eps = torch.finfo(a.dtype).eps
    threshold = k * eps * torch.diagonal(a, dim1=-2, dim2=-1).amax(dim=-1)
    perm = torch.arange(k, device=a.device).expand(n, k)
    singular = torch.zeros(n, dtype=torch.bool, device=a.device)
    lower = torch.ones(k, k, dtype=torch.bool, device=a.device).tril()
    for j in range(k):
        if j + 1 < k:
            p = j + torch.diagonal(a, dim1=-2, dim2=-1)[:, j:].argmax(dim=-1)
            a, perm = _swap(a, perm, j, p)
        d = a[:, j, j]
        ok = d > threshold
        singular = singular | ~ok
        if j + 1 == k:
            break
        # Past a failed pivot the values are never used; 1 keeps them finite.
        col = a[:, j + 1:, j] / torch.where(ok, d, torch.ones_like(d))[:, None]
        row = a[:, j, j + 1:]  # row j as it was: d·l
        t = a[:, j + 1:, j + 1:] - col[:, :, None] * row[:, None, :]
        # The host path computes the lower triangle and mirrors it.
        low = lower[: k - j - 1, : k - j - 1]
        a = a.clone()
        a[:, j + 1:, j + 1:] = torch.where(low, t, t.transpose(1, 2))
        a[:, j + 1:, j] = col
        a[:, j, j + 1:] = col
    return a, perm, singular


def inverse_pivoted(a):
    """(PᵀĜP)⁻¹ = L⁻ᵀ D⁻¹ L⁻¹ [P, k, k] from ``ldl_pivoted``'s factors, every column by the host
    path's substitutions (``GramFactor::pivoted_inverse_column``), same order of operations."""
    n, k = a.shape[0], a.shape[-1]
    x = torch.eye(k, dtype=a.dtype, device=a.device).expand(n, k, k)
    cols = torch.arange(k, device=a.device)
    rows = []
    # Forward: x[r][c] = −Σ_{t<r} l[r][t]·x[t][c] for r > c (terms with t < c are exact zeros).
    for r in range(k):
        if r == 0:
            rows.append(x[:, 0, :])
            continue
        s = torch.zeros_like(x[:, 0, :])
        for t in range(r):
            s = s + a[:, r, t, None] * rows[t]
        rows.append(torch.where(cols < r, -s, x[:, r, :]))
    rows = [row / a[:, r, r, None] for r, row in enumerate(rows)]
    # Backward: x[r] −= l[t][r]·x[t] for t = r+1 … k−1, in that order.
    for r in range(k - 2, -1, -1):
        s = rows[r]
        for t in range(r + 1, k):
            s = s - a[:, t, r, None] * rows[t]
        rows[r] = s
    return torch.stack(rows, dim=1)


def _unpermute(x, perm):
    """y[perm[r], perm[c]] = x[r, c]."""
    inv = torch.argsort(perm, dim=1)
    x = x.gather(1, inv[:, :, None].expand_as(x))
    return x.gather(2, inv[:, None, :].expand_as(x))


def _factor(g):
    """Everything forward and backward need from G [P, k, k] in the compute dtype."""
    diag = torch.diagonal(g, dim1=-2, dim2=-1)
    valid = torch.isfinite(g).all() & (diag >= 0).all()
    torch._assert_async(valid, "gram.torch: a non-finite dot product or a negative squared norm")
    a, inv, diag_sqrt, zero = _equilibrate(g)
    a, perm, singular = ldl_pivoted(a)
    singular = singular | zero
    k = g.shape[-1]
    s = torch.sqrt(torch.where(singular, 0.0, a[:, 0, 0]))
    for j in range(1, k):
        s = s * torch.sqrt(torch.where(singular, 0.0, a[:, j, j]))
    vol = s * diag_sqrt
    return a, perm, singular, inv, vol


def volumes(g):
    """sqrt(det G) [P] for Gram matrices g [P, k, k] (0 where singular to working precision)."""
    return _factor(g)[4]


def volume_gradients(g):
    """(vol [P], ∂vol/∂G [P, k, k]) with the subgradient 0 where G is singular."""
    a, perm, singular, inv, vol = _factor(g)
    k = g.shape[-1]
    # A singular pair's factors may hold zero pivots: the identity stands in, masked after.
    eye = torch.eye(k, dtype=a.dtype, device=a.device)
    a = torch.where(singular[:, None, None], eye, a)
    x = _unpermute(inverse_pivoted(a), perm)
    grad = 0.5 * x * (vol[:, None, None] * (inv[:, :, None] * inv[:, None, :]))
    return vol, torch.where(singular[:, None, None], 0.0, grad)
