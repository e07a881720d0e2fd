"""Make the Hugging Face parity references under testdata/hf: what transformers' own code
computes, for gram-train's tests (tests/hf_parity.rs) to match.

- ast-tiny/: a random tiny ASTForAudioClassification (the MIT AST's front-end sizes: 128 mel
  bins, 1024 frames, 16x16 patches at stride 10) and ASTFeatureExtractor's config, saved by
  save_pretrained; reference.json: the pooled output on a fixed input pattern and on one
  recording's features (in float32 from both extractor paths, and in float64).
- siglip-tiny/: a random tiny SiglipVisionModel and its SiglipImageProcessor, likewise.
- audio-ref/: ASTFeatureExtractor's input_values for every recording in audio/ (read with
  soundfile, channels averaged, torchaudio.functional.resample to 16 kHz), from its
  torchaudio (Kaldi) path and from its numpy path, the frames before the padding.
- img-ref/: CLIPImageProcessor's and SiglipImageProcessor's pixel_values for every image in
  img/ (PIL decoding and resizing: the "slow" processors).
- pillow-resize.json: Image.resize of a small random RGB image to sizes on both sides of
  Pillow's pass-order rule, with the three filters the processors use.
Usage: python scripts/hf_reference.py testdata/hf   (needs torch, torchaudio, transformers,
soundfile, pillow)"""
import json, math, os, sys
import numpy as np, soundfile, torch, torchaudio, transformers, PIL
from PIL import Image
from transformers import (ASTConfig, ASTFeatureExtractor, ASTForAudioClassification, CLIPImageProcessor,
                          SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel)
from transformers.models.audio_spectrogram_transformer import feature_extraction_audio_spectrogram_transformer as fe

out = sys.argv[1]
produced_by = (f"transformers {transformers.__version__}, torch {torch.__version__}, torchaudio "
               f"{torchaudio.__version__}, Pillow {PIL.__version__}, numpy {np.__version__}, CPU")


def jitter_norms(model):
    """Random LayerNorm scales and biases, so the tests see them (init makes them 1 and 0)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))


def recording(path):
    """Samples at 16 kHz: soundfile's floats (integers / 2^(bits-1)), channels averaged,
    torchaudio's resample in float64 (on float32 its kernel and sums round at ~1e-6, which the
    log lifts to ~1e-3 in the near-silent top bins), then float32 as the extractor takes them."""
    x, sr = soundfile.read(path, dtype="float32", always_2d=True)
    mono = torch.from_numpy(x.mean(axis=1).astype(np.float64))
    return torchaudio.functional.resample(mono, sr, 16000).numpy().astype(np.float32), sr, x.shape[1]


def numpy_features(x):
    """ASTFeatureExtractor on its numpy path (as where torchaudio is not installed)."""
    saved = fe.is_speech_available
    fe.is_speech_available = lambda: False
    try:
        return ASTFeatureExtractor()(x, sampling_rate=16000, return_tensors="np").input_values[0]
    finally:
        fe.is_speech_available = saved


def audio_refs():
    os.makedirs(f"{out}/audio-ref", exist_ok=True)
    kaldi = ASTFeatureExtractor()
    summary = {}
    for name in sorted(os.listdir(f"{out}/audio")):
        x, sr, ch = recording(f"{out}/audio/{name}")
        frames = 1 + (len(x) - 400) // 160
        a = kaldi(x, sampling_rate=16000, return_tensors="np").input_values[0]
        b = numpy_features(x)
        stem = name.rsplit(".", 1)[0]
        np.save(f"{out}/audio-ref/{stem}.kaldi.npy", a[:frames].astype(np.float32))
        np.save(f"{out}/audio-ref/{stem}.numpy.npy", b[:frames].astype(np.float32))
        summary[name] = {"sample_rate": sr, "channels": ch, "samples_16k": len(x), "frames": frames,
                         "padding_value": float(a[-1, 0]),
                         "kaldi_vs_numpy_max_abs": float(np.abs(a - b).max())}
    # The resampler alone, on a short chirp.
    t = np.arange(300) / 44100.0
    chirp = np.sin(2 * math.pi * (300 + 4000 * t) * t).astype(np.float32).astype(np.float64)
    summary["resample_44100_to_16000"] = {
        "input": "sin(2*pi*(300 + 4000 t) t), t = n/44100, n < 300, rounded to float32; resampled in float64",
        "output": torchaudio.functional.resample(torch.from_numpy(chirp), 44100, 16000).tolist(),
        "output_float32": torchaudio.functional.resample(torch.from_numpy(chirp).float(), 44100, 16000).tolist()}
    return summary


def ast_tiny():
    d = f"{out}/ast-tiny"
    torch.manual_seed(0)
    cfg = ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                    num_labels=3)
    model = ASTForAudioClassification(cfg).eval()
    jitter_norms(model)
    model.save_pretrained(d, safe_serialization=True)
    ASTFeatureExtractor().save_pretrained(d)
    pattern = torch.tensor([[[math.sin(0.013 * (b + 1) * t + 0.07 * f) for f in range(128)]
                             for t in range(1024)] for b in range(2)], dtype=torch.float32)
    x, _, _ = recording(f"{out}/audio/speech-22050-mono-s16.wav")
    kaldi = torch.from_numpy(ASTFeatureExtractor()(x, sampling_rate=16000, return_tensors="np").input_values)
    plain = torch.from_numpy(numpy_features(x)[None])
    with torch.no_grad():
        base = model.audio_spectrogram_transformer
        pooled = base(input_values=pattern).pooler_output
        speech = base(input_values=kaldi).pooler_output
        speech_numpy = base(input_values=plain).pooler_output
        # The same in float64: the f32 runs above differ from it by ~1e-5 (PyTorch's rounding).
        speech_f64 = base.double()(input_values=plain.double()).pooler_output
    json.dump({"produced_by": produced_by,
               "pattern": "sin(0.013*(b+1)*t + 0.07*f), shape [2, 1024, 128]",
               "pooled": pooled.tolist(),
               "speech": "speech-22050-mono-s16.wav through ASTFeatureExtractor (torchaudio path; numpy path)",
               "speech_pooled": speech.tolist(),
               "speech_pooled_numpy": speech_numpy.tolist(),
               "speech_pooled_float64": speech_f64.tolist()}, open(f"{d}/reference.json", "w"))


def siglip_tiny():
    d = f"{out}/siglip-tiny"
    torch.manual_seed(0)
    cfg = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                             image_size=32, patch_size=8)
    model = SiglipVisionModel(cfg).eval()
    jitter_norms(model)
    with torch.no_grad():  # the probe and head are zero-free at init already; shake the biases too
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(d, safe_serialization=True)
    proc = SiglipImageProcessor(size={"height": 32, "width": 32})
    proc.save_pretrained(d)
    pixels = torch.tensor([[[[math.sin(0.37 * (b + 1) * x + 0.11 * y + c) for x in range(32)] for y in range(32)]
                            for c in range(3)] for b in range(2)], dtype=torch.float32)
    image = proc(Image.open(f"{out}/img/chelsea-300x200.png"), return_tensors="pt").pixel_values
    with torch.no_grad():
        pooled = model(pixel_values=pixels).pooler_output
        cat = model(pixel_values=image).pooler_output
    json.dump({"produced_by": produced_by,
               "pixels": "sin(0.37*(b+1)*x + 0.11*y + c), shape [2, 3, 32, 32]",
               "pooled": pooled.tolist(),
               "image": "img/chelsea-300x200.png through the folder's SiglipImageProcessor",
               "image_pooled": cat.tolist()}, open(f"{d}/reference.json", "w"))


def image_refs():
    os.makedirs(f"{out}/img-ref", exist_ok=True)
    procs = {"clip64": CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}),
             "siglip64": SiglipImageProcessor(size={"height": 64, "width": 64})}
    summary = {}
    for name in sorted(os.listdir(f"{out}/img")):
        img = Image.open(f"{out}/img/{name}")
        summary[name] = {"size": list(img.size), "mode": img.mode}
        for tag, proc in procs.items():
            px = proc(img, return_tensors="np").pixel_values[0].astype(np.float32)
            np.save(f"{out}/img-ref/{name.rsplit('.', 1)[0]}.{tag}.npy", px)
    # The full-size CLIP processor (openai/clip-vit-base-patch32's settings) on one photo.
    px = CLIPImageProcessor()(Image.open(f"{out}/img/grace-hopper-256x300.jpg"), return_tensors="np").pixel_values[0]
    np.save(f"{out}/img-ref/grace-hopper-256x300.clip224.npy", px.astype(np.float32))
    return summary


def pillow_refs():
    rng = np.random.default_rng(0)
    src = rng.integers(0, 256, (23, 37, 3), dtype=np.uint8)
    img = Image.fromarray(src)
    cases = []
    for size in [(16, 9), (20, 5), (36, 8), (50, 30), (74, 11), (12, 40), (37, 6), (5, 23)]:
        for code in (1, 2, 3):
            cases.append({"size": list(size), "resample": code,
                          "pixels": np.asarray(img.resize(size, resample=code)).flatten().tolist()})
    json.dump({"produced_by": produced_by, "width": 37, "height": 23,
               "source": src.flatten().tolist(), "cases": cases}, open(f"{out}/pillow-resize.json", "w"))


pillow_refs()
summary = {"produced_by": produced_by, "audio": audio_refs(), "images": image_refs()}
ast_tiny()
siglip_tiny()
json.dump(summary, open(f"{out}/reference.json", "w"), indent=1)
print(json.dumps({k: v for k, v in summary["audio"].items() if k.endswith(".wav")}, indent=1))
