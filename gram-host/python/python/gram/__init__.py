"""gram: GRAM (Gramian Representation Alignment Measure, Cicchetti et al., ICLR 2025) from Rust.

The volume of the parallelotope spanned by k embeddings of one sample, vol = sqrt(det(AᵀA)),
computed to ~1e-16 relative (float64, equilibrated pivoted LDLᵀ) where the published float32
recipe loses every digit, and volume matrices, top-k search, retrieval metrics and the GRAM
loss at the speed of the cross-dot GEMMs, multi-threaded, with the GIL released.

Arrays (one rule for every function):

1. Objects that are not numpy arrays go through ``numpy.asarray`` once (lists, PyTorch CPU
   tensors, anything with ``__array__``).
2. The dtype must be floating (float16/32/64), else ``TypeError``; the array must be 2-D, else
   ``ValueError``.
3. Matrices (``volume_matrix``, ``search``, ``evaluate``, ``loss``) are scored in float32 like
   the CLI's files: a C-contiguous, aligned float32 array is read in place (no copy); any
   other array is converted once with ``numpy.require(x, numpy.float32, "CA")``. One tuple
   (``volume``, ``log_volume``) is read in place when C-contiguous float32 or float64, and
   converted once to float64 otherwise.
4. Every value must be finite: the first NaN or infinity raises ``ValueError`` naming the
   argument, row and column.

Errors carry the text of the ``gram`` CLI's ``error:`` line, with the argument's name
(``anchor``, ``modalities[1]``, ``vectors``) where the CLI names a file. Results are never NaN.

``gram.torch`` (needs PyTorch) has a differentiable volume matrix.
"""
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from . import _gram

__all__ = [
    "volume",
    "log_volume",
    "volume_matrix",
    "search",
    "search_index",
    "search_index_approx",
    "merge_hits",
    "evaluate",
    "loss",
    "MAX_K",
    "HAS_GPU",
]

#: Largest number of vectors in one tuple (anchor + modalities).
MAX_K: int = _gram.MAX_K
#: Whether this build has the wgpu backend (``backend="gpu"``).
HAS_GPU: bool = _gram.HAS_GPU


def volume(vectors) -> float:
    """Volume of the parallelotope spanned by the rows of ``vectors`` ([k, D], k ≤ 16).

    Relative error ≤ (2k + 4)·2⁻⁵³ plus a term in the conditioning that stays below 1e-10 for
    unit vectors with normalised volume 1e-8 at D = 512 (gram-nostd's contract). Linearly
    dependent rows give exactly 0. Raises ``ValueError`` on NaN/inf, k = 0 or k > 16, and on a
    volume beyond float64's range (use :func:`log_volume`).
    """
    return _gram.volume(vectors)


def log_volume(vectors) -> float:
    """Natural logarithm of :func:`volume` (``-inf`` for a zero volume); never overflows."""
    return _gram.log_volume(vectors)


def volume_matrix(anchor, modalities: Sequence, backend: str = "cpu") -> np.ndarray:
    """V[i, j] = vol(anchor[i], modalities[0][j], …, modalities[m-1][j]) as float32 [N1, N2].

    ``anchor`` is [N1, D]; ``modalities`` is a list of 1..15 arrays [N2, D] (row j of each
    belongs to candidate j), like the CLI's ``--modality``. CPU: every volume within 1e-5
    relative of the exact one (f32 GEMM for the dot products, an a-posteriori bound, pairs that
    miss it recomputed in float64). ``backend="gpu"``: gram-gpu (wgpu), where built and an
    adapter exists. Multi-threaded (rayon); the GIL is released while computing.
    """
    return _gram.volume_matrix(anchor, modalities, backend)


def search(anchor, modalities: Sequence, k: int, backend: str = "cpu") -> Tuple[np.ndarray, np.ndarray]:
    """For every anchor row, the ``k`` candidates of smallest volume.

    Returns ``(indices, volumes)``: uint32 and float32 arrays [N1, k], ascending by volume,
    ties by lower index (the order every gram backend follows). Never holds the N1×N2 matrix.
    """
    return _gram.search(anchor, modalities, k, backend)


def search_index(anchor, index, k: int, backend: str = "cpu") -> Tuple[np.ndarray, np.ndarray]:
    """:func:`search` over an index built by ``gram index build`` (a directory, or a list of
    directories holding disjoint rows of one corpus, searched together).

    Indices are rows of the indexed files. The index's manifest, sizes and checksums are
    checked first; a corrupt, truncated, foreign or mismatched index raises ``ValueError`` with
    the CLI's message (``OSError`` for a shard that cannot be opened). The shards are memory-mapped, not read into memory.
    """
    return _gram.search_index(anchor, index, k, backend)


def search_index_approx(
    anchor, index, k: int, probe: Optional[int] = None, low_w: Optional[int] = None, rerank: Optional[int] = None
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Approximate :func:`search_index` over an index built with ``gram index build --ann``
    (``gram search --approx``): ``(indices, volumes, bound, certified)``.

    Per shard, ``probe`` cells of the candidates' span bases are scanned, their int8 codes
    estimate the volumes, and the ``rerank`` best estimates and the ``low_w`` candidates of
    smallest vol(modalities) are scored exactly (the volumes are the exact search's, bit for
    bit). ``bound`` [N1] (float64) is a lower bound on the volume of every candidate not scored
    exactly; ``certified`` [N1] (bool) is True where it proves the row's top-k exact.
    Defaults are the CLI's. An index without ``--ann`` raises ``ValueError``.
    """
    return _gram.search_index_approx(anchor, index, k, probe, low_w, rerank)


def merge_hits(parts: Sequence[tuple], k: int) -> tuple:
    """The ``k`` best hits of each row over the hits of searches of disjoint candidates (the
    same queries), by the rule of ``gram merge``: volume, then the smaller index.

    Each part is ``(indices, volumes)`` from :func:`search_index` or ``(indices, volumes,
    bound, certified)`` from :func:`search_index_approx`. Returns ``(indices, volumes)`` when
    every part is exact; else ``(indices, volumes, bound, certified)``, the bound being the
    parts' minimum and ``certified`` recomputed from it.
    """
    if not parts:
        raise ValueError("merge_hits: no parts")
    approx = any(len(p) > 2 for p in parts)
    out = _gram.merge_hits(
        [np.require(p[0], np.uint32, "CA") for p in parts],
        [np.require(p[1], np.float32, "CA") for p in parts],
        k,
        [np.require(p[2], np.float64, "CA") if len(p) > 2 else None for p in parts],
    )
    return out if approx else out[:2]


def evaluate(anchor, modalities: Sequence, ties: str = "pessimistic") -> Dict[str, Dict[str, float]]:
    """Retrieval metrics of a square batch (anchor row i pairs with candidate i).

    Returns what ``gram eval --json`` prints: ``{"anchor_to_data": {"r1", "r5", "r10",
    "medr", "meanr"}, "data_to_anchor": {…}}``; recalls in percent. ``ties`` ranks a candidate
    whose volume equals the true one's: ``"pessimistic"`` ahead of it (default),
    ``"optimistic"`` behind it, ``"stable"`` ahead when its index is lower (a stable argsort).
    """
    return _gram.evaluate(anchor, modalities, ties)


def loss(anchor, modalities: Sequence, temperature: float = 0.07, label_smoothing: float = 0.1) -> dict:
    """The GRAM contrastive loss of a square batch and its gradient with respect to V.

    Logits −V/τ, symmetric cross-entropy (anchor→data and data→anchor) with label smoothing,
    volumes in float64. Returns ``{"loss", "anchor_to_data", "data_to_anchor"}`` (floats, what
    ``gram loss --json`` prints) and ``"grad"``: ∂loss/∂V, float64 [B, B].
    """
    return _gram.loss(anchor, modalities, temperature, label_smoothing)
