#!/usr/bin/env python3
"""Writes a Mistral-7B-v0.1-shaped HF checkpoint with random bf16 weights (no real weights exist on the GPU machine).

    python3 tools/make_random_checkpoint.py --out DIR [--layers 32]

Uses transformers' own save_pretrained (sharded safetensors + model.safetensors.index.json), so the folder is exactly
what a user downloads from the Hub, minus the trained values. Speed and memory of loading do not depend on the values.
"""
import argparse, time
import torch
from transformers import MistralConfig, MistralForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("--out", required=True)
ap.add_argument("--layers", type=int, default=32)
a = ap.parse_args()
cfg = MistralConfig(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=a.layers,
                    num_attention_heads=32, num_key_value_heads=8, sliding_window=4096, rms_norm_eps=1e-5,
                    max_position_embeddings=32768, tie_word_embeddings=False, dtype="bfloat16")
t = time.time()
with torch.device("cuda"):
    model = MistralForCausalLM(cfg).to(torch.bfloat16)
model.save_pretrained(a.out, max_shard_size="5GB")
n = sum(p.numel() for p in model.parameters())
print(f"wrote {a.out}: {n:,} parameters in {time.time() - t:.1f} s")
