"""The Python package on an NVIDIA machine: gram's wgpu backend (Vulkan) against its CPU backend on
the reference cases, and gram.torch on CUDA tensors against the published recipe on the same GPU.
Writes a JSON summary to $OUT/gpu-python.json. Usage: python scripts/gpu_python.py
(Not yet run on an NVIDIA machine: Vulkan there needs the debs that scripts/gpu-pack.sh gathers,
unpacked as scripts/gpu-bench.sh does.)
"""
import json
import os
import pathlib
import sys
import time

import numpy as np
import torch

import gram
import gram.torch as gt

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benches" / "python"))
from torch_recipe import volume_matrix as recipe  # noqa: E402

REF = pathlib.Path(__file__).resolve().parents[1] / "testdata" / "reference"
out = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(), "cases": {}}
index = json.loads((REF / "index.json").read_text())
for name, m in sorted(index.items()):
    a = np.load(REF / f"{name}_anchor.npy")
    mods = [np.load(REF / f"{name}_mod{t}.npy") for t in range(m)]
    exact = np.load(REF / f"{name}_exact.npy")
    cpu = gram.volume_matrix(a, mods)
    row = {"cpu_max_rel": float(np.max(np.abs(cpu - exact)[exact > 0] / exact[exact > 0]))}
    try:
        g = gram.volume_matrix(a, mods, backend="gpu")
        row["gpu_max_rel"] = float(np.max(np.abs(g - exact)[exact > 0] / exact[exact > 0]))
        row["gpu_max_abs_at_zero"] = float(np.max(np.abs(g[exact == 0]), initial=0.0))
    except ValueError as e:
        row["gpu_error"] = str(e)
    out["cases"][name] = row
    print(name, row, flush=True)

dev = "cuda"
gen = torch.Generator(device=dev).manual_seed(0)
unit = lambda n, d: torch.nn.functional.normalize(torch.randn(n, d, generator=gen, device=dev, dtype=torch.float64), dim=1)  # noqa: E731
a, m1, m2 = (unit(n, 512).requires_grad_() for n in (256, 512, 512))
ours = gt.volume_matrix(a, [m1, m2])
theirs = recipe(a, [m1, m2])
up = torch.randn(256, 512, generator=gen, device=dev, dtype=torch.float64)
g1 = torch.autograd.grad(ours, (a, m1, m2), up)
g2 = torch.autograd.grad(theirs, (a, m1, m2), up)
out["torch_cuda_f64"] = {
    "device": str(ours.device),
    "max_rel_value": float(((ours - theirs).abs() / theirs).max()),
    "max_rel_grad": [float(((x - y).abs().max() / y.abs().max())) for x, y in zip(g1, g2)],
}
print("gram.torch on CUDA", out["torch_cuda_f64"], flush=True)

rng = np.random.default_rng(0)
x = [rng.standard_normal((4096, 512)).astype(np.float32) for _ in range(3)]
x = [v / np.linalg.norm(v, axis=1, keepdims=True) for v in x]
for backend in ("cpu", "gpu"):
    try:
        gram.volume_matrix(x[0], x[1:], backend=backend)
        t = time.perf_counter()
        gram.volume_matrix(x[0], x[1:], backend=backend)
        out[f"volume_matrix_4096_{backend}_s"] = time.perf_counter() - t
    except ValueError as e:
        out[f"volume_matrix_4096_{backend}_s"] = str(e)
out["cpu_threads"] = os.cpu_count()
print(out, flush=True)
pathlib.Path(os.environ.get("OUT", "."), "gpu-python.json").write_text(json.dumps(out, indent=1))
