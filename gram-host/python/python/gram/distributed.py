"""Search an index of many parts on a Dask cluster: one task per index part, merged exactly.

A corpus too large for one machine is indexed in parts of disjoint rows (``gram index build
--rows START:END [--ann]``, one directory per part, on storage every worker can read). Each
part is searched by one Dask task through :func:`gram.search_index` (exact) or
:func:`gram.search_index_approx`, and the per-part top-k are merged by
:func:`gram.merge_hits` — the rule of ``gram merge``, so the result equals one search over all
parts (and an approximate result is certified on the parts' combined bound).

Why Dask (``distributed``) rather than Ray: it is pure Python (no daemon, no native wheel to
match), a ``LocalCluster`` of worker processes starts in about a second for tests, and the
same code runs on Slurm/PBS (``dask-jobqueue``), Kubernetes (``dask-kubernetes``) or any
``dask scheduler``/``dask worker`` set: the scheduler reassigns a task whose worker dies and
gives up, with ``KilledWorker``, after ``distributed.scheduler.allowed-failures`` deaths.

Failures never yield a partial top-k: a task that raises is retried ``retries`` times, then
:class:`DistributedSearchError` names the part and the cause, and the other tasks are
cancelled.

Example (a real cluster: the scheduler's address instead of a ``LocalCluster``)::

    from dask.distributed import Client
    import gram.distributed
    client = Client("tcp://scheduler:8786")
    parts = [f"/data/corpus/part-{i}.idx" for i in range(64)]
    idx, vol, bound, certified = gram.distributed.search(client, queries, parts, 10, approx=True)
"""
from __future__ import annotations

import os
import uuid
from typing import Optional, Sequence, Union

import numpy as np

import gram

Part = Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]]


class DistributedSearchError(RuntimeError):
    """A part's task failed (after its retries) or its worker died too often."""


def search_part(part: Part, queries: np.ndarray, k: int, approx: bool, options: dict) -> tuple:
    """One task: the top-k of ``queries`` over one index part (a directory or a list of them)."""
    if approx:
        return gram.search_index_approx(queries, part, k, **options)
    return gram.search_index(queries, part, k)


def search(
    client,
    queries,
    parts: Sequence[Part],
    k: int,
    *,
    approx: bool = False,
    probe: Optional[int] = None,
    low_w: Optional[int] = None,
    rerank: Optional[int] = None,
    retries: int = 2,
) -> tuple:
    """The top-k of every query over all ``parts`` (index directories of disjoint rows),
    one Dask task per part on ``client``'s cluster, merged exactly.

    Returns what :func:`gram.merge_hits` returns: ``(indices, volumes)``, or with
    ``approx=True`` ``(indices, volumes, bound, certified)`` (``probe``, ``low_w``,
    ``rerank`` as in :func:`gram.search_index_approx`). Raises
    :class:`DistributedSearchError` naming the part when a task fails after ``retries``
    retries or its worker died too often; never returns a partial result.
    """
    if not parts:
        raise ValueError("parts: no index parts to search")
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    options = {n: v for n, v in (("probe", probe), ("low_w", low_w), ("rerank", rerank)) if v is not None}
    # The queries travel with each task (not scattered once): data held only by a worker would
    # be lost with it, and a retried task must not depend on a dead worker.
    run = uuid.uuid4().hex[:8]
    futures = [
        client.submit(
            search_part, p, queries, k, approx, options, key=f"gram-search-{run}-{i}", retries=retries, pure=False
        )
        for i, p in enumerate(parts)
    ]
    results = []
    for p, f in zip(parts, futures):
        try:
            results.append(f.result())
        except Exception as e:  # noqa: BLE001 — any failure of a part fails the query, named
            client.cancel(futures)
            why = type(e).__name__
            if why == "KilledWorker":
                why += " (its worker died on every attempt; see distributed.scheduler.allowed-failures)"
            name = [os.fspath(x) for x in p] if isinstance(p, (list, tuple)) else os.fspath(p)
            raise DistributedSearchError(f"index part {name}: {why}: {e}") from e
    return gram.merge_hits(results, k)
