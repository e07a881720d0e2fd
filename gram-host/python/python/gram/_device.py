"""The k×k part of ``gram.torch.volume_matrix`` as tensor operations on the inputs' device.

The same arithmetic as the Rust host path (``gram_nostd::GramFactor``, which every backend is
tested against), for every pair (i, j) of a [B1, B2] batch at once:

1. equilibrate, Ĝ = D^-½ G D^-½ with D = diag G (entries clamped to [-1, 1], Cauchy–Schwarz);
2. pivoted LDLᵀ, pivot = the largest remaining diagonal entry (first of equals), a pivot at or
   below k·ε·max diag (ε = the compute dtype's epsilon) ends the factorisation: singular;
3. vol = Π sqrt(pivot) · Π sqrt(G_ii);
4. backward: ∂vol/∂G = ½·vol·G⁻¹ = ½·(Ĝ⁻¹)_ij·(vol/√(G_ii G_jj)), Ĝ⁻¹ from the same factors
   (L⁻ᵀ D⁻¹ L⁻¹ by substitution); 0 at a singular or zero pair, the subgradient at the minimum.

Layout: each entry of the k×k matrices is its own [B1, B2] tensor (a "structure of arrays"),
so every step is an element-wise operation over all pairs, and a pivot swap is a ``where``
between two entries. Why not [B1, B2, k, k] tensors: indexing, ``gather`` and reductions over
a last dimension of 3 or 4 ran 10× slower than the same arithmetic on whole vectors. The
Python loops unroll over k (a k = 16 factorisation is ~k³ ≈ 4,000 small operations).

Each step performs the host path's floating-point operations in the same order, so in float64 the
two agree to the last place but for sums over a batch (tested to 1e-12 relative). What the host
path does in scaled arithmetic (a volume or a product of norms outside the normal range, e.g.
inputs of magnitude 1e±150) is plain float arithmetic here: it can overflow to inf or underflow to 0.

No value is read back to the host (no ``.item()``, no branch on a value): the pivot is chosen and
applied with ``where``, singular pairs are masked. A non-finite input or a negative squared norm is
reported by ``torch._assert_async`` (at once on the CPU; asynchronously where the device supports
device-side asserts), so the whole step runs on ``meta`` tensors, compiles with
``torch.compile(fullgraph=True)``, and can be captured in a CUDA graph.
"""
import torch


def compute_dtype(device: torch.device) -> torch.dtype:
    """float64 wherever the device has it; Apple's ``mps`` has no float64: float32 there
    (its accuracy is measured on the CPU with the same float32 arithmetic, in the tests)."""
    return torch.float32 if device.type == "mps" else torch.float64


class _Sym:
    """A symmetric k×k matrix of [B1, B2] tensors, stored once per pair of indices."""

    def __init__(self, k):
        self.k, self.e = k, {}

    def __getitem__(self, rc):
        r, c = rc
        return self.e[(r, c) if r >= c else (c, r)]

    def __setitem__(self, rc, v):
        r, c = rc
        self.e[(r, c) if r >= c else (c, r)] = v


def _gram(cross, inner, norms):
    """Pair (i, j)'s Gram matrix: entry (0, 0) = norms[i], (t+1, 0) = cross[i, j, t],
    (s+1, t+1) = inner[j, s, t], each broadcast to [B1, B2] where it is used."""
    m = cross.shape[2]
    g = _Sym(m + 1)
    g[0, 0] = norms[:, None]
    for t in range(m):
        g[t + 1, 0] = cross[:, :, t]
        for s in range(t, m):
            g[s + 1, t + 1] = inner[None, :, s, t]
    return g


def _check(cross, inner, norms):
    diag = torch.diagonal(inner, dim1=1, dim2=2)
    valid = (torch.isfinite(cross).all() & torch.isfinite(inner).all() & torch.isfinite(norms).all()
             & (norms >= 0).all() & (diag >= 0).all())
    torch._assert_async(valid, "gram.torch: a non-finite dot product or a negative squared norm")


def _factor(cross, inner, norms):
    """(a, perm, singular, inv, vol): the factors in a (below the diagonal L in pivot order,
    on it D), perm[r] = the input index at pivot position r, singular [B1, B2], inv[i] =
    1/sqrt(G_ii) (0 for a zero diagonal) and the volumes [B1, B2]."""
    _check(cross, inner, norms)
    g = _gram(cross, inner, norms)
    k = g.k
    shape = cross.shape[:2]
    # Equilibration (`GramFactor::new`): the lower triangle, clamped; the diagonal 1, or 0 for
    # every entry of a pair with a zero vector.
    s = [torch.sqrt(g[i, i]) for i in range(k)]
    inv = [torch.where(g[i, i] > 0, 1.0 / torch.where(g[i, i] > 0, s[i], 1.0), 0.0) for i in range(k)]
    zero = g[0, 0] == 0
    diag_sqrt = s[0]
    for i in range(1, k):
        zero = zero | (g[i, i] == 0)
        diag_sqrt = diag_sqrt * s[i]
    a = _Sym(k)
    one = (~zero).to(cross.dtype)
    for i in range(k):
        for j in range(i):
            a[i, j] = ((g[i, j] * inv[i]) * inv[j]).clamp(-1.0, 1.0)
        a[i, i] = one.expand(shape)
    a, perm, singular = _ldl_pivoted(a, shape, cross.device)
    singular = singular | zero
    vol = torch.sqrt(torch.where(singular, 0.0, a[0, 0]))
    for j in range(1, k):
        vol = vol * torch.sqrt(torch.where(singular, 0.0, a[j, j]))
    return a, perm, singular, inv, vol * diag_sqrt


def _ldl_pivoted(a, shape, device):
    """``gram_nostd::ldl_pivoted`` on every pair: the same comparisons, swaps and updates."""
    k = a.k
    eps = torch.finfo(a[0, 0].dtype).eps
    max_diag = a[0, 0]
    for i in range(1, k):
        max_diag = torch.maximum(max_diag, a[i, i])
    threshold = k * eps * max_diag
    perm = [torch.full(shape, i, device=device) for i in range(k)]
    singular = torch.zeros(shape, dtype=torch.bool, device=device)
    for j in range(k):
        if j + 1 < k:
            _pivot(a, perm, j)
        d = a[j, j]
        ok = d > threshold
        singular = singular | ~ok
        if j + 1 == k:
            break
        # Past a failed pivot the values are never used; 1 keeps them finite.
        d = torch.where(ok, d, 1.0)
        row = [a[j, c] for c in range(k)]  # row j as it was: d·l
        col = {i: a[i, j] / d for i in range(j + 1, k)}
        for i in range(j + 1, k):
            for c in range(j + 1, i + 1):
                a[i, c] = a[i, c] - col[i] * row[c]
        for i in range(j + 1, k):
            a[i, j] = col[i]
    return a, perm, singular


def _pivot(a, perm, j):
    """Swap row and column j with the first largest diagonal entry after it, pair by pair."""
    k = a.k
    best, p = a[j, j], None
    for i in range(j + 1, k):
        better = a[i, i] > best
        best = torch.where(better, a[i, i], best)
        p = torch.where(better, i, j if p is None else p)
    for q in range(j + 1, k):
        m = p == q
        for c in range(k):
            if c == j or c == q:
                continue
            a[j, c], a[q, c] = torch.where(m, a[q, c], a[j, c]), torch.where(m, a[j, c], a[q, c])
        a[j, j], a[q, q] = torch.where(m, a[q, q], a[j, j]), torch.where(m, a[j, j], a[q, q])
        perm[j], perm[q] = torch.where(m, perm[q], perm[j]), torch.where(m, perm[j], perm[q])


def _inverse_pivoted(a, singular):
    """x[r][c] = ((PᵀĜP)⁻¹)_rc = (L⁻ᵀ D⁻¹ L⁻¹)_rc by ``GramFactor::pivoted_inverse_column``'s
    substitutions, same order of operations (None: an exact zero)."""
    k = a.k
    d = [torch.where(singular, 1.0, a[r, r]) for r in range(k)]
    x = [[None] * k for _ in range(k)]
    for c in range(k):
        x[c][c] = 1.0
        for r in range(c + 1, k):
            s = a[r, c] * 1.0
            for t in range(c + 1, r):
                s = s + a[r, t] * x[t][c]
            x[r][c] = -s
        for r in range(c, k):
            x[r][c] = x[r][c] / d[r]
        for r in range(k - 2, -1, -1):
            s = x[r][c]
            for t in range(r + 1, k):
                term = a[t, r] * x[t][c]
                s = -term if s is None else s - term
            x[r][c] = s
    return x


def factor(cross, inner, norms):
    """The factorisation of every pair's G as a flat tuple of tensors (for ``save_for_backward``)
    and its volumes [B1, B2]."""
    a, perm, singular, inv, vol = _factor(cross, inner, norms)
    k = a.k
    lower = [a[r, c] for r in range(k) for c in range(r + 1)]
    return (*lower, *perm, singular, *inv, vol), vol


def _unflatten(saved, k):
    n = k * (k + 1) // 2
    a = _Sym(k)
    for (r, c), v in zip(((r, c) for r in range(k) for c in range(r + 1)), saved[:n]):
        a[r, c] = v
    perm, singular = list(saved[n:n + k]), saved[n + k]
    inv, vol = list(saved[n + k + 1:n + 2 * k + 1]), saved[n + 2 * k + 1]
    return a, perm, singular, inv, vol


def volumes(cross, inner, norms):
    """V [B1, B2] = sqrt(det G) for cross [B1, B2, m], inner [B2, m, m], norms [B1] (0 where G
    is singular to working precision), in their dtype."""
    return _factor(cross, inner, norms)[4]


def volume_grads(saved, k, up):
    """Gradients of Σ up·V with respect to cross, inner and norms (the host path's
    ``pair_volume_grads``) from ``factor``'s tensors: 0 from every singular pair."""
    a, perm, singular, inv, vol = _unflatten(saved, k)
    x = _inverse_pivoted(a, singular)
    # Ĝ⁻¹ in input order: entry (perm[r], perm[c]) = x[r][c], rows then columns selected.
    at = [[perm[r] == i for i in range(k)] for r in range(k)]  # at[r][i]: input i at position r
    rows = [[_select(at, i, [x[r][c] for r in range(k)]) for c in range(k)] for i in range(k)]
    xo = [[_select(at, j, rows[i]) for j in range(k)] for i in range(k)]
    dg = [[torch.where(singular, 0.0, 0.5 * xo[i][j] * (vol * (inv[i] * inv[j])))
           for j in range(k)] for i in range(k)]
    # As the host path: u·(∂/∂G_0t + ∂/∂G_t0), then sums over the other batch.
    d_norms = (up * dg[0][0]).sum(1)
    d_cross = torch.stack([up * (dg[0][t] + dg[t][0]) for t in range(1, k)], dim=2)
    d_inner = torch.stack([torch.stack([(up * dg[s][t]).sum(0) for t in range(1, k)], dim=1)
                           for s in range(1, k)], dim=1)
    return d_cross, d_inner, d_norms


def _select(at, i, vals):
    """vals[r] where input i sits at position r (the first r otherwise, never reached)."""
    out = vals[0]
    for r in range(1, len(vals)):
        out = torch.where(at[r][i], vals[r], out)
    return out
