"""gram's Python volume_matrix against the published PyTorch recipe (same process, same threads)
and against the `gram score` CLI's compute time, on one machine in one run.

Shapes: N × N pairs, k = 3 (anchor + 2 modalities), D = 512, unit vectors. Median of REPS.
Usage: python benches/python/py_volume_matrix.py [--n 4096] [--reps 5] [--gram-bin target/release/gram]
"""
import argparse
import os
import pathlib
import platform
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

import gram

REPO = pathlib.Path(__file__).resolve().parents[2]


def median_time(fn, reps):
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2]


def cli_compute_seconds(bin_path, files, out, reps):
    """`gram score --verbose` reports read/compute/write apart; the median compute time."""
    ts = []
    for _ in range(reps):
        args = [bin_path, "score", "--anchor", files[0]]
        for f in files[1:]:
            args += ["--modality", f]
        r = subprocess.run(args + ["--out", out, "--verbose"], capture_output=True, text=True, check=True)
        ts.append(float(re.search(r"compute ([0-9.]+)s", r.stderr).group(1)))
    return sorted(ts)[len(ts) // 2]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=4096)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--gram-bin", default=str(REPO / "target/release/gram"))
    args = p.parse_args()
    n, d = args.n, 512
    rng = np.random.default_rng(0)

    def unit():
        x = rng.standard_normal((n, d)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    a, m1, m2 = unit(), unit(), unit()
    threads = os.cpu_count()
    print(f"{platform.processor() or platform.machine()}, {threads} threads; N = {n}, k = 3, D = {d}; median of {args.reps}")
    print("| implementation | seconds | pairs/s |")
    print("|---|---|---|")
    row = lambda name, s: print(f"| {name} | {s:.3f} | {n * n / s:.3g} |")  # noqa: E731

    v = gram.volume_matrix(a, [m1, m2])
    row("gram.volume_matrix (Python, float32 in place)", median_time(lambda: gram.volume_matrix(a, [m1, m2]), args.reps))
    if os.path.isfile(args.gram_bin):
        with tempfile.TemporaryDirectory() as tmp:
            files = []
            for name, x in (("a", a), ("m1", m1), ("m2", m2)):
                files.append(os.path.join(tmp, f"{name}.npy"))
                np.save(files[-1], x)
            row("gram score CLI (compute only)", cli_compute_seconds(args.gram_bin, files, os.path.join(tmp, "v.npy"), args.reps))
    else:
        print(f"| gram score CLI | (no binary at {args.gram_bin}) | |")
    try:
        import torch
    except ImportError:
        print("| published recipe, PyTorch | (torch not installed) | |")
        return
    # The published recipe as benches/python/torch_recipe.py has it (device-agnostic).
    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    from torch_recipe import volume_matrix as recipe

    published_recipe = lambda torch, a, mods: recipe(a, mods)  # noqa: E731
    torch.set_num_threads(threads)
    ta, tm = torch.from_numpy(a), [torch.from_numpy(m1), torch.from_numpy(m2)]
    row(f"published recipe, PyTorch {torch.__version__} float32", median_time(lambda: published_recipe(torch, ta, tm), args.reps))
    t64 = [x.double() for x in (ta, *tm)]
    row(f"published recipe, PyTorch {torch.__version__} float64", median_time(lambda: published_recipe(torch, t64[0], t64[1:]), args.reps))
    exact64 = published_recipe(torch, t64[0], t64[1:]).numpy()
    err = np.abs(v - exact64) / exact64
    err32 = np.abs(published_recipe(torch, ta, tm).double().numpy() - exact64) / exact64
    print(f"max relative difference to the float64 recipe: gram {err.max():.2e}, float32 recipe {err32.max():.2e}")


if __name__ == "__main__":
    main()
