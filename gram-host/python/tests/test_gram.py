"""The gram package against exact references, against the `gram` CLI, on every error, and with threads."""
import json
import os
import subprocess
import threading

import numpy as np
import pytest

import gram
from conftest import REFERENCE, reference_cases

CASES = list(reference_cases())


def rel_tol(name):
    # The CLI's accuracy contract (gram-host/tests/cli.rs): 1e-5 relative, 1e-3 where the
    # float32 inputs themselves are within 1e-4 of collinear.
    return 1e-3 if name in ("near_collinear_0.0001", "near_collinear_1e-05") else 1e-5


@pytest.mark.parametrize("name,anchor,mods,exact", CASES, ids=[c[0] for c in CASES])
def test_volume_matrix_meets_the_accuracy_contract(name, anchor, mods, exact):
    v = gram.volume_matrix(anchor, mods)
    assert v.dtype == np.float32 and v.shape == exact.shape
    zero = exact == 0
    assert np.all(np.abs(v[zero]) <= 1e-6), name
    err = np.abs(v[~zero].astype(np.float64) - exact[~zero]) / exact[~zero]
    assert np.all(err <= rel_tol(name)), (name, err.max())


@pytest.mark.parametrize("name,anchor,mods,exact", CASES, ids=[c[0] for c in CASES])
def test_volume_of_one_tuple_is_exact_to_float64(name, anchor, mods, exact):
    # float32 rows are read in place; the exact value is of those very float32 numbers.
    for i, j in [(0, 0), (anchor.shape[0] - 1, mods[0].shape[0] - 1)]:
        rows = np.stack([anchor[i]] + [m[j] for m in mods])
        assert rows.dtype == np.float32
        got = gram.volume(rows)
        if exact[i, j] == 0:
            assert got == 0.0 and gram.log_volume(rows) == -np.inf
        else:
            assert abs(got - exact[i, j]) <= 1e-12 * exact[i, j], (name, got, exact[i, j])
            assert abs(gram.log_volume(rows) - np.log(exact[i, j])) <= 1e-12


def test_float64_and_other_layouts_follow_the_documented_rule():
    name, anchor, mods, _ = CASES[[c[0] for c in CASES].index("random_k3")]
    base = gram.volume_matrix(anchor, mods)
    # float64 and Fortran order are converted once to C-contiguous float32: the same values.
    assert np.array_equal(gram.volume_matrix(anchor.astype(np.float64), mods), base)
    assert np.array_equal(gram.volume_matrix(np.asfortranarray(anchor), mods), base)
    assert np.array_equal(gram.volume_matrix(anchor.tolist(), [m.tolist() for m in mods]), base)
    # A strided view is converted too.
    wide = np.repeat(anchor, 2, axis=0)[::2]
    assert np.array_equal(gram.volume_matrix(wide, mods), base)
    # One tuple in float64 is read in place at float64 precision.
    rows = np.stack([anchor[0].astype(np.float64) + 1e-12, mods[0][0], mods[1][0]])
    assert rows.dtype == np.float64
    assert gram.volume(rows) != gram.volume(rows.astype(np.float32))


def test_loss_matches_the_exact_reference_and_its_gradient_finite_differences():
    a = np.load(REFERENCE / "loss_anchor.npy")
    mods = [np.load(REFERENCE / f"loss_mod{t}.npy") for t in range(2)]
    expected = json.loads((REFERENCE / "loss_expected.json").read_text())
    for key, value in expected.items():
        tau, ls = (float(p.split("=")[1]) for p in key.split(","))
        out = gram.loss(a, mods, temperature=tau, label_smoothing=ls)
        # V meets the 1e-5 contract; the CLI checks the loss to 1e-6 too (gram-host/tests/cli.rs).
        assert abs(out["loss"] - value) <= 1e-6, key
        assert out["loss"] == pytest.approx((out["anchor_to_data"] + out["data_to_anchor"]) / 2, rel=1e-15)
        assert out["grad"].shape == (16, 16) and out["grad"].dtype == np.float64
    # ∂loss/∂V against a central difference of the loss through gram's own volume matrix.
    v = gram.volume_matrix(a, mods).astype(np.float64)
    g = gram.loss(a, mods)["grad"]

    def ce(z):
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        q = 0.9 * np.eye(16) + 0.1 / 16
        return -(q * logp).sum(axis=1).mean()

    f = lambda v: (ce(-v / 0.07) + ce(-v.T / 0.07)) / 2  # noqa: E731
    for i, j in [(0, 0), (3, 7), (15, 2)]:
        e = np.zeros_like(v)
        e[i, j] = 1e-6
        fd = (f(v + e) - f(v - e)) / 2e-6
        assert abs(fd - g[i, j]) <= 1e-6, (i, j, fd, g[i, j])


def test_search_and_evaluate_agree_with_the_volume_matrix():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((40, 16)).astype(np.float32)
    mods = [a + 0.3 * rng.standard_normal((40, 16)).astype(np.float32) for _ in range(2)]
    v = gram.volume_matrix(a, mods)
    idx, vol = gram.search(a, mods, 5)
    assert idx.dtype == np.uint32 and vol.dtype == np.float32 and idx.shape == (40, 5)
    order = np.lexsort((np.arange(40)[None, :].repeat(40, 0), v), axis=1)[:, :5]
    assert np.array_equal(idx, order)
    assert np.array_equal(vol, np.take_along_axis(v, order, axis=1))
    r = gram.evaluate(a, mods)
    ranks = 1 + (v <= np.diag(v)[:, None]).sum(axis=1) - 1
    assert r["anchor_to_data"]["r1"] == pytest.approx(100 * np.mean(ranks == 1))
    assert r["anchor_to_data"]["meanr"] == pytest.approx(ranks.mean())


def _run_cli(cli, args, cwd):
    return subprocess.run([cli, *args], cwd=cwd, capture_output=True, text=True)


def test_results_equal_the_cli(gram_cli, tmp_path):
    for name, anchor, mods, _ in CASES:
        args = ["--anchor", str(REFERENCE / f"{name}_anchor.npy")]
        for t in range(len(mods)):
            args += ["--modality", str(REFERENCE / f"{name}_mod{t}.npy")]
        out = tmp_path / f"{name}.npy"
        r = _run_cli(gram_cli, ["score", *args, "--out", str(out)], tmp_path)
        assert r.returncode == 0, r.stderr
        assert np.array_equal(np.load(out), gram.volume_matrix(anchor, mods)), name
        if anchor.shape[0] == mods[0].shape[0]:
            r = _run_cli(gram_cli, ["eval", *args, "--json"], tmp_path)
            assert json.loads(r.stdout) == gram.evaluate(anchor, mods), name
            r = _run_cli(gram_cli, ["loss", *args, "--json"], tmp_path)
            cli = json.loads(r.stdout)
            py = gram.loss(anchor, mods)
            assert all(cli[k] == py[k] for k in cli), name
        k = min(3, mods[0].shape[0])
        r = _run_cli(gram_cli, ["search", *args, "--top-k", str(k), "--out", str(tmp_path / "hits")], tmp_path)
        assert r.returncode == 0, r.stderr
        idx, vol = gram.search(anchor, mods, k)
        assert np.array_equal(np.load(tmp_path / "hits/indices.npy"), idx), name
        assert np.array_equal(np.load(tmp_path / "hits/volumes.npy"), vol), name


GOOD = np.eye(4, 6, dtype=np.float32)


def _bad_inputs():
    """(label, anchor, modalities, command) whose error the CLI reports for the same files."""
    nan = GOOD.copy()
    nan[2, 3] = np.nan
    inf = GOOD.copy()
    inf[1, 0] = -np.inf
    return [
        ("nan", nan, [GOOD], "eval"),
        ("inf in a modality", GOOD, [GOOD, inf], "eval"),
        ("empty", np.zeros((0, 6), np.float32), [GOOD], "eval"),
        ("dimension", GOOD, [GOOD[:, :5]], "eval"),
        ("rows", GOOD, [GOOD, GOOD[:3]], "eval"),
        ("not square", GOOD[:3], [GOOD], "eval"),
        ("not square (loss)", GOOD[:3], [GOOD], "loss"),
        ("1-D", GOOD[0], [GOOD], "eval"),
        ("3-D", GOOD[None], [GOOD], "eval"),
        ("too many modalities", GOOD, [GOOD] * 16, "eval"),
    ]


@pytest.mark.parametrize("label,anchor,mods,command", _bad_inputs(), ids=[b[0] for b in _bad_inputs()])
def test_errors_are_value_errors_with_the_cli_text(label, anchor, mods, command, gram_cli, tmp_path):
    fn = gram.evaluate if command == "eval" else gram.loss
    with pytest.raises(ValueError) as e:
        fn(anchor, mods)
    # The CLI names files; the same arrays saved under the argument names give the same line.
    np.save(tmp_path / "anchor.npy", anchor)
    os.rename(tmp_path / "anchor.npy", tmp_path / "anchor")
    args = [command, "--anchor", "anchor"]
    for t, m in enumerate(mods):
        np.save(tmp_path / "m.npy", m)
        os.rename(tmp_path / "m.npy", tmp_path / f"modalities[{t}]")
        args += ["--modality", f"modalities[{t}]"]
    r = _run_cli(gram_cli, args, tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip() == f"error: {e.value}", label


def test_every_other_error():
    a = np.eye(3, 4, dtype=np.float32)
    cases = [
        (TypeError, "unsupported dtype int64", lambda: gram.volume_matrix(a.astype(np.int64), [a])),
        (TypeError, "unsupported dtype complex128", lambda: gram.volume(np.eye(2, dtype=complex))),
        (TypeError, "modalities: must be a list", lambda: gram.volume_matrix(a, 3)),
        (TypeError, "cannot be read as a numpy array", lambda: gram.volume_matrix(a, [[[1.0], [1.0, 2.0]]])),
        (ValueError, "no modalities given", lambda: gram.volume_matrix(a, [])),
        (ValueError, "k=0: must be between 1", lambda: gram.search(a, [a], 0)),
        (ValueError, "k=4", lambda: gram.search(a, [a], 4)),
        (ValueError, "temperature=0: must be a positive number", lambda: gram.loss(a, [a], temperature=0.0)),
        (ValueError, "temperature=NaN", lambda: gram.loss(a, [a], temperature=float("nan"))),
        (ValueError, "label_smoothing=1.5", lambda: gram.loss(a, [a], label_smoothing=1.5)),
        (ValueError, "backend 'tpu'", lambda: gram.volume_matrix(a, [a], backend="tpu")),
        (ValueError, "vectors: ", lambda: gram.volume(np.full((2, 3), np.nan))),
        (ValueError, "vectors: ", lambda: gram.volume(np.ones((17, 20)))),
        (ValueError, "vectors: ", lambda: gram.volume(np.ones((0, 3)))),
        (ValueError, "vectors: ", lambda: gram.volume(1e300 * np.eye(2, 3))),
        (ValueError, "anchor: infinity at row 0, column 0", lambda: gram.volume_matrix(np.full((1, 4), 1e300), [a])),
        (ValueError, "a volume exceeds the float32 range", lambda: gram.volume_matrix(1e30 * np.eye(1, 4), [3e30 * np.eye(3, 4, k=1)])),
    ]
    for exc, text, call in cases:
        with pytest.raises(exc) as e:
            call()
        assert text in str(e.value), (text, str(e.value))
    for text, call in [("--", lambda: gram.search(a, [a], 0)), ("--", lambda: gram.volume_matrix(a, []))]:
        with pytest.raises(ValueError) as e:
            call()
        assert text not in str(e.value), f"a Python error quotes a CLI flag: {e.value}"
    assert gram.log_volume(1e300 * np.eye(2, 3)) == pytest.approx(2 * np.log(1e300), rel=1e-15)


def test_gpu_backend_matches_the_cpu():
    if not gram.HAS_GPU:
        pytest.skip("this build has no gpu feature")
    name, anchor, mods, _ = CASES[[c[0] for c in CASES].index("random_k3")]
    try:
        v = gram.volume_matrix(anchor, mods, backend="gpu")
    except RuntimeError as e:
        if os.environ.get("GRAM_REQUIRE_GPU") == "1":
            raise
        pytest.skip(f"no GPU adapter: {e}")
    assert np.allclose(v, gram.volume_matrix(anchor, mods), rtol=1e-4, atol=0)
    idx, _ = gram.search(anchor, mods, 3, backend="gpu")
    assert np.array_equal(idx, gram.search(anchor, mods, 3)[0])


def test_calls_release_the_gil_while_they_compute():
    # Python keeps running while calls compute on other threads: with the GIL held for the
    # whole call the loop below would not advance at all. (How much two calls overlap is a
    # timing question for the benchmarks, not for a test on a shared machine.)
    rng = np.random.default_rng(1)
    a = rng.standard_normal((200, 256)).astype(np.float32)
    mods = [rng.standard_normal((12000, 256)).astype(np.float32) for _ in range(2)]
    want = gram.volume_matrix(a, mods)
    results = [None, None]

    def call(i):
        results[i] = gram.volume_matrix(a, mods)

    counter = 0
    workers = [threading.Thread(target=call, args=(i,)) for i in range(2)]
    for w in workers:
        w.start()
    while any(w.is_alive() for w in workers):
        counter += 1
    for w in workers:
        w.join()
    assert counter > 1000, counter
    assert all(np.array_equal(r, want) for r in results)


def test_tie_rules_on_hand_made_ties():
    # V = [[0, 0, 1], [0, 0, 1], [1, 1, 0]]: pairs 0 and 1 tie (see gram-host/tests/cli.rs).
    x = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)
    r1 = {t: gram.evaluate(x, [x], ties=t)["anchor_to_data"]["r1"] for t in ("pessimistic", "optimistic", "stable")}
    assert r1 == pytest.approx({"pessimistic": 100 / 3, "optimistic": 100.0, "stable": 200 / 3})
    assert gram.evaluate(x, [x]) == gram.evaluate(x, [x], ties="pessimistic")
    with pytest.raises(ValueError, match="ties 'random'"):
        gram.evaluate(x, [x], ties="random")


def test_search_index_equals_search_and_refuses_a_damaged_index(gram_cli, tmp_path):
    rng = np.random.default_rng(5)
    v = rng.standard_normal((300, 16)).astype(np.float32)
    a = rng.standard_normal((300, 16)).astype(np.float32)
    q = rng.standard_normal((20, 16)).astype(np.float32)
    np.save(tmp_path / "v.npy", v)
    np.save(tmp_path / "a.npy", a)
    for name, rows in [("p0", "0:120"), ("p1", "120:300")]:
        r = _run_cli(gram_cli, ["index", "build", "--modality", "v.npy", "--modality", "a.npy",
                                "--rows", rows, "--shard-rows", "50", "--out", name], tmp_path)
        assert r.returncode == 0, r.stderr
    want = gram.search(q, [v, a], 7)
    got = gram.search_index(q, [tmp_path / "p0", str(tmp_path / "p1")], 7)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    shard = tmp_path / "p1" / "shard-00001.safetensors"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="shard-00001.safetensors: checksum .* damaged"):
        gram.search_index(q, [tmp_path / "p0", tmp_path / "p1"], 7)
    with pytest.raises(ValueError, match="dimension 3 does not match the index's dimension 16"):
        gram.search_index(np.zeros((2, 3), np.float32) + 1, tmp_path / "p0", 7)
    with pytest.raises(TypeError, match="index: must be a path"):
        gram.search_index(q, 7, 7)
    # A file that cannot be opened is an OSError (a file problem), not a ValueError.
    shard.unlink()
    with pytest.raises(OSError, match="shard-00001.safetensors: cannot open"):
        gram.search_index(q, [tmp_path / "p0", tmp_path / "p1"], 7)


def test_search_index_approx_certifies_and_refuses_an_index_without_ann(gram_cli, tmp_path):
    rng = np.random.default_rng(8)
    v = rng.standard_normal((400, 8)).astype(np.float32)
    a = rng.standard_normal((400, 8)).astype(np.float32)
    q = rng.standard_normal((15, 8)).astype(np.float32)
    np.save(tmp_path / "v.npy", v)
    np.save(tmp_path / "a.npy", a)
    for name, extra in [("plain", []), ("ann", ["--ann"])]:
        r = _run_cli(gram_cli, ["index", "build", "--modality", "v.npy", "--modality", "a.npy",
                                "--out", name] + extra, tmp_path)
        assert r.returncode == 0, r.stderr
    want = gram.search_index(q, tmp_path / "ann", 4)
    idx, vol, bound, certified = gram.search_index_approx(q, tmp_path / "ann", 4, probe=10**6,
                                                          low_w=10**6, rerank=10**6)
    np.testing.assert_array_equal(idx, want[0])
    np.testing.assert_array_equal(vol, want[1])
    assert certified.dtype == np.bool_ and certified.all() and np.isinf(bound).all()
    idx, vol, bound, certified = gram.search_index_approx(q, tmp_path / "ann", 4, probe=1, rerank=4)
    assert idx.shape == (15, 4) and bound.shape == (15,)
    # A certified row is the exact one.
    np.testing.assert_array_equal(idx[certified], want[0][certified])
    with pytest.raises(ValueError, match="built without --ann"):
        gram.search_index_approx(q, tmp_path / "plain", 4)
