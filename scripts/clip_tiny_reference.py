"""Make testdata/clip-tiny: a randomly initialised (seed 0) tiny CLIP vision tower saved by
transformers' own save_pretrained (config.json + model.safetensors), and its pooled output on a
fixed pixel pattern (reference.json), for gram-train's vision-encoder parity test.
Usage: python scripts/clip_tiny_reference.py testdata/clip-tiny   (needs torch, transformers)"""
import json, math, sys
import torch, transformers
from transformers import CLIPVisionConfig, CLIPVisionModel

out = sys.argv[1]
torch.manual_seed(0)
cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                       image_size=32, patch_size=8, projection_dim=32)
model = CLIPVisionModel(cfg).eval()
# Random LayerNorm scales/biases too, so the test sees them (init would make them 1 and 0).
with torch.no_grad():
    for name, p in model.named_parameters():
        if "layer_norm" in name or "layrnorm" in name or "layernorm" in name:
            p.add_(0.1 * torch.randn_like(p))
model.save_pretrained(out, safe_serialization=True)
pixels = torch.tensor([[[[math.sin(0.37 * (b + 1) * x + 0.11 * y + c) for x in range(32)] for y in range(32)]
                        for c in range(3)] for b in range(2)], dtype=torch.float32)
with torch.no_grad():
    pooled = model(pixel_values=pixels).pooler_output
json.dump({"produced_by": f"transformers {transformers.__version__}, torch {torch.__version__}, CPU",
           "pixels": "sin(0.37*(b+1)*x + 0.11*y + c), shape [2, 3, 32, 32]",
           "pooled": pooled.tolist()}, open(f"{out}/reference.json", "w"))
print(pooled.shape)
