"""gram.distributed on a local Dask cluster of two worker processes: equal to the
single-process search (exact and approximate), a worker killed mid-query is retried, and a part
that kills every worker fails the query with a clear error, never a partial top-k."""
import os
import subprocess

import numpy as np
import pytest

import gram

if os.environ.get("GRAM_REQUIRE_DASK") == "1":
    import distributed
else:
    distributed = pytest.importorskip("distributed", reason="Dask's distributed is not installed")
import dask  # noqa: E402

import gram.distributed as gd  # noqa: E402


def _build(gram_cli, tmp_path, rows, name):
    r = subprocess.run(
        [gram_cli, "index", "build", "--modality", "v.npy", "--modality", "a.npy", "--rows", rows,
         "--out", name, "--ann"],
        cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return str(tmp_path / name)


@pytest.fixture(scope="module")
def corpus(gram_cli, tmp_path_factory):
    """Three index parts of 3,000 clustered candidates (D = 16) and 40 queries."""
    tmp = tmp_path_factory.mktemp("dask")
    rng = np.random.default_rng(11)
    centres = rng.standard_normal((30, 16))
    pick = rng.integers(0, 30, 3000)
    v = (centres[pick] + 0.3 * rng.standard_normal((3000, 16))).astype(np.float32)
    a = (centres[pick] + 0.3 * rng.standard_normal((3000, 16))).astype(np.float32)
    q = (centres[rng.integers(0, 30, 40)] + 0.3 * rng.standard_normal((40, 16))).astype(np.float32)
    np.save(tmp / "v.npy", v)
    np.save(tmp / "a.npy", a)
    parts = [_build(gram_cli, tmp, r, f"p{i}") for i, r in enumerate(["0:1000", "1000:2200", "2200:3000"])]
    return tmp, q, parts


@pytest.fixture(scope="module")
def client():
    # One death of a task's worker is survived (the task runs again elsewhere); a second is not.
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None)
        c = distributed.Client(cluster)
        yield c
        c.close()
        cluster.close()


class KillWorker(distributed.WorkerPlugin):
    """Kills the worker process as it starts a search task: once (a marker file remembers), or
    on every attempt."""

    def __init__(self, marker, always):
        self.marker, self.always = marker, always

    def transition(self, key, start, finish, **kwargs):
        if finish == "executing" and "gram-search" in str(key):
            if self.always or not os.path.exists(self.marker):
                open(self.marker, "w").close()
                os._exit(1)


def test_equals_the_single_process_search(client, corpus):
    _, q, parts = corpus
    want = gram.search_index(q, parts, 7)
    got = gd.search(client, q, parts, 7)
    assert len(got) == 2
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    want = gram.search_index_approx(q, parts, 7, probe=2, rerank=20)
    got = gd.search(client, q, parts, 7, approx=True, probe=2, rerank=20)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    # With every cell probed and everything re-scored, the approximate search is the exact one.
    got = gd.search(client, q, parts, 7, approx=True, probe=10**6, low_w=10**6, rerank=10**6)
    np.testing.assert_array_equal(got[0], gram.search_index(q, parts, 7)[0])
    assert got[3].all()


def test_a_worker_killed_mid_query_is_retried(client, corpus):
    tmp, q, parts = corpus
    marker = tmp / "killed-once"
    client.register_plugin(KillWorker(str(marker), always=False), name="kill-once")
    try:
        got = gd.search(client, q, parts, 5)
    finally:
        client.unregister_worker_plugin("kill-once")
    assert marker.exists(), "no worker was killed: the test did not test anything"
    want = gram.search_index(q, parts, 5)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_a_part_that_kills_every_worker_fails_the_query_clearly(client, corpus):
    tmp, q, parts = corpus
    client.register_plugin(KillWorker(str(tmp / "killed-always"), always=True), name="kill-always")
    try:
        with pytest.raises(gd.DistributedSearchError, match=r"index part .*p\d: KilledWorker"):
            gd.search(client, q, parts, 5)
    finally:
        client.unregister_worker_plugin("kill-always")
    client.wait_for_workers(2, timeout=60)
    # The cluster recovers: the next query is whole.
    np.testing.assert_array_equal(gd.search(client, q, parts, 5)[0], gram.search_index(q, parts, 5)[0])


def test_a_task_error_names_its_part_after_the_retries(client, corpus):
    tmp, q, parts = corpus
    with pytest.raises(gd.DistributedSearchError, match=r"index part .*nowhere: ValueError: .*not a directory"):
        gd.search(client, q, parts + [str(tmp / "nowhere")], 5, retries=1)


def test_merge_hits_refuses_what_does_not_fit():
    i = np.zeros((2, 3), np.uint32)
    v = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="same shape"):
        gram.merge_hits([(i, v), (i[:1], v[:1])], 3)
    with pytest.raises(ValueError, match="k = 7"):
        gram.merge_hits([(i, v), (i + 3, v)], 7)
