"""The training step of gram-benches' `train_step` in PyTorch with the published GRAM recipe,
for same-machine comparisons: per modality an optional MLP head (Linear, GELU, Linear) and a
bias-free projection, L2 normalisation, the volume matrix from Gram matrices and
torch.linalg.det (sqrt(|det|)), symmetric cross-entropy on -V/tau with label smoothing 0.1,
backward, gradient clipping at 1, AdamW at a constant learning rate 1e-3. Same random batch
every step; medians of forward / backward / optimizer.

Usage: python3 benches/python/torch_train_step.py [steps] [--device cpu|cuda] [--threads N]
       [--batch 256] [--in 768,768,768] [--hidden 0] [--out 512] [--bf16] [--loss gram|pairwise]
Matched CPU comparison with gram: `800 --in 384,512,256 --hidden 256 --out 64 --threads 2`.
"""
import argparse, time

import torch
import torch.nn as nn
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("steps", type=int, nargs="?", default=20)
p.add_argument("--device", default="cpu")
p.add_argument("--threads", type=int, default=0)
p.add_argument("--batch", type=int, default=256)
p.add_argument("--in", dest="dims", default="768,768,768")
p.add_argument("--hidden", type=int, default=0)
p.add_argument("--out", type=int, default=512)
p.add_argument("--bf16", action="store_true", help="autocast the heads' matmuls to bf16")
p.add_argument("--loss", default="gram", choices=["gram", "pairwise"],
               help="pairwise: CLIP-style symmetric InfoNCE between the anchor and each modality, summed")
a = p.parse_args()
if a.threads:
    torch.set_num_threads(a.threads)
dev = torch.device(a.device)
dims = [int(x) for x in a.dims.split(",")]
B = a.batch
torch.manual_seed(0)


def head(d):
    layers = [nn.Linear(d, a.hidden), nn.GELU(), nn.Linear(a.hidden, a.hidden)] if a.hidden else []
    return nn.Sequential(*layers, nn.Linear(a.hidden or d, a.out, bias=False))


heads = nn.ModuleList([head(d) for d in dims]).to(dev)
log_inv_tau = nn.Parameter(torch.tensor(1 / 0.07, device=dev).log())
params = list(heads.parameters()) + [log_inv_tau]
opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05)
x = [torch.randn(B, d, device=dev) for d in dims]
target = torch.arange(B, device=dev)


def volume_matrix(anchor, others):
    # The published recipe (GRAM's volume_computation): the k x k Gram matrix of every
    # (anchor_i, candidate_j) tuple from einsum dot products, torch.det, sqrt(|det|).
    n1, n2, k = anchor.shape[0], others[0].shape[0], len(others) + 1
    aa = torch.einsum("bi,bi->b", anchor, anchor).unsqueeze(1).expand(-1, n2)
    ao = [torch.einsum("bi,ci->bc", anchor, o) for o in others]
    oo = [[torch.einsum("ci,ci->c", p, q).unsqueeze(0).expand(n1, -1) for q in others] for p in others]
    rows = [torch.stack([aa] + ao, -1)]
    rows += [torch.stack([ao[s]] + oo[s], -1) for s in range(k - 1)]
    gram = torch.stack(rows, -2)
    return torch.sqrt(torch.abs(torch.det(gram.float())))


def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize()


fwd, bwd, upd = [], [], []
for step in range(a.steps + 3):
    sync(); t0 = time.perf_counter()
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.bf16):
        e = [h(xi) for h, xi in zip(heads, x)]
    e = [F.normalize(ei.float(), dim=1) for ei in e]
    scale = log_inv_tau.clamp(0, 4.6052).exp()
    if a.loss == "pairwise":
        loss = 0
        for m in e[1:]:
            logits = e[0] @ m.T * scale
            loss = loss + 0.5 * (F.cross_entropy(logits, target, label_smoothing=0.1) + F.cross_entropy(logits.T, target, label_smoothing=0.1))
    else:
        logits = -volume_matrix(e[0], e[1:]) * scale
        loss = 0.5 * (F.cross_entropy(logits, target, label_smoothing=0.1) + F.cross_entropy(logits.T, target, label_smoothing=0.1))
    sync(); t1 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    sync(); t2 = time.perf_counter()
    opt.step()
    sync(); t3 = time.perf_counter()
    if step >= 3:
        fwd.append(t1 - t0); bwd.append(t2 - t1); upd.append(t3 - t2)
med = lambda xs: sorted(xs)[len(xs) // 2]
total = med([f + b + o for f, b, o in zip(fwd, bwd, upd)])
name = torch.cuda.get_device_name() if dev.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
print(f"torch {torch.__version__} on {name}: B = {B}, in = {dims}, MLP hidden = {a.hidden}, out = {a.out}, "
      f"k = {len(dims)}, {'pairwise InfoNCE' if a.loss == 'pairwise' else 'GRAM recipe'}, bf16 = {a.bf16}, {a.steps} timed steps (median), final loss {loss.item():.4f}")
print("| samples/s | step (ms) | forward (ms) | backward (ms) | optimizer (ms) |")
print("|---|---|---|---|---|")
print(f"| {B / total:.0f} | {total * 1e3:.1f} | {med(fwd) * 1e3:.1f} | {med(bwd) * 1e3:.1f} | {med(upd) * 1e3:.1f} |")
