"""gram.torch's training step against the published float32 recipe, on one device.

A step is forward + backward of the volume matrix V [B, B] of k unit float32 embeddings [B, 512]
and the symmetric GRAM loss on −V/τ, by three implementations:

- ``device``: ``gram.torch.volume_matrix(..., path="device")`` — the k×k part in float64 on
  the inputs' device, no host synchronisation;
- ``host``: ``path="host"`` — the k×k part in Rust through host memory;
- ``recipe``: the published recipe (Gram matrices, ``torch.linalg.det``, sqrt(|det|)) in
  float32 (benches/python/torch_recipe.py's ``volume_matrix``).

Each round times one step of each implementation in turn (alternating, after a warm-up step
each), for ROUNDS rounds; prints medians with the range and each implementation's time over the
recipe's (the median and range of each round's ratio), with the CPU (and GPU) named, and writes the table to OUT/step.md when --out is given.

    python benches/python/torch_device_step.py [--device cpu|cuda] [--rounds 5]
        [--batches 256,1024] [--ks 3,4] [--threads N] [--out DIR]
"""
import argparse
import os
import pathlib
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
import gram.torch as gt  # noqa: E402
import torch_recipe  # noqa: E402

D = 512
TAU = 0.07


def loss_of(v):
    target = torch.arange(v.shape[0], device=v.device)
    logits = -v / TAU
    return (torch.nn.functional.cross_entropy(logits, target)
            + torch.nn.functional.cross_entropy(logits.T, target)) / 2


def volumes(impl, a, mods):
    if impl == "recipe":
        return torch_recipe.volume_matrix(a, mods, chunk=a.shape[0])
    return gt.volume_matrix(a, mods, path=impl)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def step_time(impl, xs, device):
    sync(device)
    t = time.perf_counter()
    loss = loss_of(volumes(impl, xs[0], xs[1:]))
    torch.autograd.grad(loss, xs)
    sync(device)
    return time.perf_counter() - t


def machine(device):
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    what = f"CPU: {cpu}, {os.cpu_count()} logical CPUs, {torch.get_num_threads()} torch threads"
    if device.type == "cuda":
        what += f"; GPU: {torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}"
    return what + f"; PyTorch {torch.__version__}"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batches", default="256,1024")
    p.add_argument("--ks", default="3,4")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    impls = ["device", "host", "recipe"]
    lines = [machine(device), time.strftime("%Y-%m-%d"), "",
             f"| B | k | {' | '.join(f'{i} (ms)' for i in impls)} | device / recipe, per round | "
             "host / recipe, per round |",
             "|---|---|" + "---|" * (len(impls) + 2)]
    print("\n".join(lines), flush=True)
    gen = torch.Generator().manual_seed(0)
    for b in (int(x) for x in a.batches.split(",")):
        for k in (int(x) for x in a.ks.split(",")):
            xs = []
            for _ in range(k):
                x = torch.randn(b, D, generator=gen)
                xs.append((x / x.norm(dim=1, keepdim=True)).to(device).requires_grad_())
            times = {i: [] for i in impls}
            for i in impls:
                step_time(i, xs, device)  # warm-up
            for _ in range(a.rounds):
                for i in impls:
                    times[i].append(step_time(i, xs, device) * 1e3)
            med = {i: statistics.median(t) for i, t in times.items()}
            cells = [f"{med[i]:.1f} ({min(times[i]):.1f}–{max(times[i]):.1f})" for i in impls]
            # Each round's own ratio (the sides ran back to back): median and range.
            ratios = []
            for i in ("device", "host"):
                r = [x / y for x, y in zip(times[i], times["recipe"])]
                ratios.append(f"{statistics.median(r):.2f}× ({min(r):.2f}–{max(r):.2f})")
            row = f"| {b} | {k} | {' | '.join(cells)} | {' | '.join(ratios)} |"
            print(row, flush=True)
            lines.append(row)
    lines.append(f"\nmedians of {a.rounds} alternating rounds (range); "
                 f"`python benches/python/torch_device_step.py {' '.join(sys.argv[1:])}`")
    if a.out:
        out = pathlib.Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "step.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
