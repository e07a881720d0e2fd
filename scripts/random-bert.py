"""Write a BERT folder with the architecture of CONFIG_DIR (config.json + tokenizer files) and
random weights, via transformers' save_pretrained: the same shapes and parameter names as the
pretrained model, for throughput runs on machines where the weights cannot be fetched.

Usage: python scripts/random-bert.py CONFIG_DIR OUT_DIR
"""
import shutil, sys
from pathlib import Path

import torch
from transformers import BertConfig, BertModel

src, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)
BertModel(BertConfig.from_pretrained(src)).save_pretrained(out, safe_serialization=True)
for f in src.iterdir():
    if f.name not in ("config.json",) and f.suffix in (".json", ".txt"):
        shutil.copy(f, out / f.name)
print(f"random BERT in {out}")
