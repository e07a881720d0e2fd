"""The pretraining step of `pretrain_step` (gram-benches) in PyTorch, for a same-machine
comparison: MiniLM-L6 text encoder (transformers), a CLIP ViT vision tower with the small
configuration over 4 frames of 32x32, a ViT over a 64x128 log-mel "image" (AST-style, non-
overlapping 16x16 patches), 512-d projection heads, GRAM loss by the published recipe
(torch.det of the k x k Gram matrices) + DAM head with hard negatives, AdamW. Inputs are
pre-made tensors (the loader is not timed here; in gram it overlaps the step).

Usage: python torch_pretrain.py MINILM_DIR [--batch 64] [--steps 5] [--threads N] [--device cpu|cuda]
       [--vision small|vit-b16]
--vision vit-b16: a ViT-B/16-size CLIP vision tower (768 wide, 12 layers) at 224x224, random weights.
Needs: torch, transformers.
"""
import argparse, statistics, time
import torch, torch.nn as nn, torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer, CLIPVisionConfig, CLIPVisionModel, ViTConfig, ViTModel

p = argparse.ArgumentParser()
p.add_argument("minilm")
p.add_argument("--batch", type=int, default=64)
p.add_argument("--steps", type=int, default=5)
p.add_argument("--threads", type=int, default=0)
p.add_argument("--device", default="cpu")
p.add_argument("--vision", default="small", choices=["small", "vit-b16"])
p.add_argument("--bf16", action="store_true", help="autocast encoders and heads to bf16")
a = p.parse_args()
if a.threads:
    torch.set_num_threads(a.threads)
dev = torch.device(a.device)
torch.manual_seed(0)

text = AutoModel.from_pretrained(a.minilm).to(dev)
tok = AutoTokenizer.from_pretrained(a.minilm)
if a.vision == "vit-b16":
    vcfg = CLIPVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
        num_attention_heads=12, image_size=224, patch_size=16)
else:
    vcfg = CLIPVisionConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=4, image_size=32, patch_size=8)
vision = CLIPVisionModel(vcfg).to(dev)
audio = ViTModel(ViTConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
    image_size=(64, 128), patch_size=16, num_channels=1, hidden_act="gelu"), add_pooling_layer=False).to(dev)
heads = nn.ModuleList([nn.Linear(384, 512, bias=False), nn.Linear(vcfg.hidden_size, 512, bias=False), nn.Linear(128, 512, bias=False)]).to(dev)
dam = nn.Sequential(nn.Linear(3 * 512, 256), nn.GELU(), nn.Linear(256, 1)).to(dev)
log_inv_tau = nn.Parameter(torch.tensor(1 / 0.07).log().to(dev))
enc_params = list(text.parameters()) + list(vision.parameters()) + list(audio.parameters())
opt = torch.optim.AdamW([{"params": enc_params, "lr": 1e-5},
                         {"params": list(heads.parameters()) + list(dam.parameters()) + [log_inv_tau], "lr": 1e-4}],
                        weight_decay=0.05)

B = a.batch
# Captions of the form gram-train's generated dataset uses (data/rawgen.rs), so both sides run
# the text encoder on the same padded length (13 tokens once a "very high" one is in the batch).
colours, shapes = ["red", "green", "blue", "yellow", "purple", "orange"], ["circle", "square", "triangle", "cross"]
motions, pitches = ["right", "left", "down", "up"], ["low", "middle", "high", "very high"]
captions = [f"a {colours[i % 6]} {shapes[(i // 6) % 4]} moving {motions[(i // 2) % 4]} with a "
            f"{['steady', 'pulsing'][i % 2]} {pitches[(i // 3) % 4]} tone" for i in range(B)]
enc = tok(captions, padding=True, return_tensors="pt").to(dev)
frames = torch.randn(B * 4, 3, vcfg.image_size, vcfg.image_size, device=dev)
mels = torch.randn(B, 1, 64, 128, device=dev)

def mean_pool(states, mask):
    m = mask.unsqueeze(-1).float()
    return (states * m).sum(1) / m.sum(1).clamp(min=1e-9)

def volume_matrix(anchor, others):
    # The published recipe: Gram matrices of every (anchor_i, candidate_j) tuple, det, sqrt.
    k = 1 + len(others)
    n1, n2 = anchor.shape[0], others[0].shape[0]
    vecs = torch.stack([anchor.unsqueeze(1).expand(n1, n2, -1)] + [o.unsqueeze(0).expand(n1, n2, -1) for o in others], 2)
    gram = vecs @ vecs.transpose(-1, -2)
    return torch.sqrt(torch.abs(torch.det(gram)))

def step():
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.bf16):
        t = mean_pool(text(**enc).last_hidden_state, enc["attention_mask"])
        v = vision(pixel_values=frames).pooler_output.view(B, 4, -1).mean(1)
        s = audio(pixel_values=mels).last_hidden_state[:, 0]
        e = [h(x) for h, x in zip(heads, [t, v, s])]
    e = [F.normalize(x.float(), dim=-1) for x in e]
    vol = volume_matrix(e[0], e[1:])
    logits = -vol * log_inv_tau.clamp(0, 4.6052).exp()
    labels = torch.arange(B, device=dev)
    loss = (F.cross_entropy(logits, labels, label_smoothing=0.1) + F.cross_entropy(logits.t(), labels, label_smoothing=0.1)) / 2
    with torch.no_grad():
        p_row = F.softmax(-vol.detach().clone().fill_diagonal_(float("inf")), 1)
        p_col = F.softmax(-vol.detach().t().clone().fill_diagonal_(float("inf")), 1)
        neg_j = torch.multinomial(p_row, 1).squeeze(1)
        neg_i = torch.multinomial(p_col, 1).squeeze(1)
    ai = torch.cat([labels, labels, neg_i]); dj = torch.cat([labels, neg_j, labels])
    joined = torch.cat([e[0][ai], e[1][dj], e[2][dj]], 1)
    target = torch.cat([torch.ones(B), torch.zeros(2 * B)]).to(dev)
    loss = loss + 0.1 * F.binary_cross_entropy_with_logits(dam(joined).squeeze(1), target)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(enc_params + list(heads.parameters()) + list(dam.parameters()) + [log_inv_tau], 1.0)
    opt.step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return loss.item()

times = []
for i in range(a.steps + 2):
    t0 = time.perf_counter()
    l = step()
    dt = time.perf_counter() - t0
    print(f"step {i}: loss {l:.4f}, {dt:.2f} s", flush=True)
    if i >= 2:
        times.append(dt)
med = statistics.median(times)
n_params = sum(p.numel() for p in enc_params) + sum(p.numel() for p in heads.parameters()) + sum(p.numel() for p in dam.parameters()) + 1
peak = torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else float("nan")
print(f"vision = {a.vision}, bf16 = {a.bf16}, peak GPU memory {peak:.2f} GiB")
print(f"PyTorch {torch.__version__} on {dev} ({torch.get_num_threads()} threads), B = {B}, {enc['input_ids'].shape[1]} text tokens, {n_params} parameters: "
      f"{B / med:.1f} samples/s, step {med:.3f} s (median of {len(times)})")
