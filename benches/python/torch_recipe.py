"""The published GRAM recipe in PyTorch, for comparison with gram on the same GPU.

Volume matrix: Gram matrices from dot products (matmuls for the cross terms), torch.linalg.det,
sqrt(|det|) — chunked over anchors so the [b, N, k, k] Gram tensor fits. Training step: three
bias-free Linear(768 -> 512) heads, L2 normalisation, the volume matrix as above, symmetric
cross-entropy on -V/tau with label smoothing 0.1, backward, AdamW. Timings are medians with
torch.cuda.synchronize(); accuracy on gram's reference cases when numpy is available.

Usage: python3 benches/python/torch_recipe.py [N,N,...]
       python3 benches/python/torch_recipe.py score A.npy M1.npy [M2.npy ...] --out V.npy
           [--device cpu|cuda] [--threads N]   (the recipe as a command, like `gram score`)
"""
import os
import sys
import time

import torch

dev = "cuda"
D = 512


def unit_rows(n, d, gen):
    x = torch.randn(n, d, generator=gen, device=dev)
    return x / x.norm(dim=1, keepdim=True)


def volume_matrix(a, mods, chunk=512):
    n1, n2, k = a.shape[0], mods[0].shape[0], len(mods) + 1
    out = torch.empty(n1, n2, device=a.device, dtype=a.dtype)
    inner = [[(mods[s] * mods[t]).sum(1) for t in range(k - 1)] for s in range(k - 1)]
    for i0 in range(0, n1, chunk):
        ab = a[i0:i0 + chunk]
        b = ab.shape[0]
        g = torch.empty(b, n2, k, k, device=a.device, dtype=a.dtype)
        g[:, :, 0, 0] = (ab * ab).sum(1)[:, None]
        for t in range(k - 1):
            c = ab @ mods[t].T
            g[:, :, 0, t + 1] = c
            g[:, :, t + 1, 0] = c
            for s in range(k - 1):
                g[:, :, s + 1, t + 1] = inner[s][t][None, :]
        out[i0:i0 + b] = torch.linalg.det(g).abs().sqrt()
    return out


def timed(fn, reps):
    ts = []
    for _ in range(reps):
        torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2]


def bench_matrix(ns, k=3, reps=3):
    gen = torch.Generator(device=dev).manual_seed(0)
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}: volume matrix, D = {D}, k = {k}, median of {reps}")
    print("| N | volume matrix (s) | pairs/s |")
    print("|---|---|---|")
    for n in ns:
        a = unit_rows(n, D, gen)
        mods = [unit_rows(n, D, gen) for _ in range(k - 1)]
        volume_matrix(a[:512], mods)  # warm-up
        t = timed(lambda: volume_matrix(a, mods), reps)
        print(f"| {n} | {t:.3f} | {n * n / t:.3e} |")


def reference_accuracy(root):
    try:
        import json
        import numpy as np
    except ImportError:
        print("numpy not available: reference accuracy skipped")
        return
    index = json.load(open(os.path.join(root, "index.json")))
    print("| case | f32 recipe on this GPU: worst rel. error (abs. where exact = 0) |")
    print("|---|---|")
    for name, m in sorted(index.items()):
        a = torch.tensor(np.load(os.path.join(root, f"{name}_anchor.npy")), device=dev)
        mods = [torch.tensor(np.load(os.path.join(root, f"{name}_mod{t}.npy")), device=dev) for t in range(m)]
        exact = np.load(os.path.join(root, f"{name}_exact.npy"))
        v = volume_matrix(a, mods).double().cpu().numpy()
        nz = exact != 0
        with np.errstate(all="ignore"):
            rel = np.max(np.abs(v[nz] - exact[nz]) / exact[nz]) if nz.any() else float("nan")
        ab = np.max(np.abs(v[~nz])) if (~nz).any() else float("nan")
        print(f"| {name} | {rel:.1e} rel, {ab:.1e} abs |")


def bench_train_step(b=256, d_in=768, d_out=512, steps=20):
    torch.manual_seed(0)
    heads = torch.nn.ModuleList([torch.nn.Linear(d_in, d_out, bias=False) for _ in range(3)]).to(dev)
    log_inv_tau = torch.nn.Parameter(torch.tensor(float(torch.log(torch.tensor(1 / 0.07))), device=dev))
    opt = torch.optim.AdamW(list(heads.parameters()) + [log_inv_tau], lr=1e-3, weight_decay=0.05)
    x = [torch.randn(b, d_in, device=dev) for _ in range(3)]
    target = torch.arange(b, device=dev)
    fwd, bwd, optim = [], [], []
    for step in range(steps + 3):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        e = [torch.nn.functional.normalize(h(xi), dim=1) for h, xi in zip(heads, x)]
        v = volume_matrix(e[0], e[1:], chunk=b)
        logits = -v * log_inv_tau.clamp(0, 4.6052).exp()
        loss = 0.5 * (torch.nn.functional.cross_entropy(logits, target, label_smoothing=0.1)
                      + torch.nn.functional.cross_entropy(logits.T, target, label_smoothing=0.1))
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(heads.parameters()) + [log_inv_tau], 1.0)
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        opt.step()
        torch.cuda.synchronize()
        t3 = time.perf_counter()
        if step >= 3:
            fwd.append(t1 - t0)
            bwd.append(t2 - t1)
            optim.append(t3 - t2)
    med = lambda xs: sorted(xs)[len(xs) // 2]
    total = med([f + b_ + o for f, b_, o in zip(fwd, bwd, optim)])
    print(f"training step, B = {b}, {d_in} -> {d_out}, k = 3, GRAM loss (median of {steps}):")
    print("| samples/s | step (ms) | forward (ms) | backward (ms) | optimizer (ms) |")
    print("|---|---|---|---|---|")
    print(f"| {b / total:.0f} | {total * 1e3:.1f} | {med(fwd) * 1e3:.1f} | {med(bwd) * 1e3:.1f} | {med(optim) * 1e3:.1f} |")


def score_files(argv):
    """`score A.npy M1.npy [M2.npy …] --out V.npy [--device cpu|cuda] [--threads N]`: what
    `gram score` does, by the recipe: read the inputs, the volume matrix in float32, write it."""
    import argparse
    import numpy as np
    p = argparse.ArgumentParser(prog="torch_recipe.py score")
    p.add_argument("anchor")
    p.add_argument("modality", nargs="+")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    load = lambda f: torch.from_numpy(np.load(f)).to(a.device, torch.float32)
    anchor, mods = load(a.anchor), [load(m) for m in a.modality]
    t = time.perf_counter()
    v = volume_matrix(anchor, mods).cpu()
    # The compute alone (no interpreter start, import, read or write), for a ratio that does
    # not count Python's start-up against the recipe.
    print(f"volume matrix {time.perf_counter() - t:.3f} s", file=sys.stderr)
    np.save(a.out, v.numpy())


if __name__ == "__main__" and sys.argv[1:2] == ["score"]:
    score_files(sys.argv[2:])
elif __name__ == "__main__":
    ns = [int(x) for x in (sys.argv[1] if len(sys.argv) > 1 else "8192,16384,32768").split(",")]
    bench_matrix(ns)
    reference_accuracy(os.path.join(os.path.dirname(__file__), "..", "..", "testdata", "reference"))
    bench_train_step()
