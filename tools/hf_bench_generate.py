#!/usr/bin/env python3
"""HF transformers greedy `generate` speed on the Mistral-7B architecture with random bf16 weights (lent H200).

    python3 tools/hf_bench_generate.py [--batch 1,8] [--prompt 128] [--new 128] [--runs 3]

Same measurement as `Mistral.Benchmarks generate --device cuda`: warm-up, CUDA-synchronised wall time, median of runs.
"""
import argparse, statistics, time
import torch
from transformers import MistralConfig, MistralForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("--batch", default="1,8")
ap.add_argument("--prompt", type=int, default=128)
ap.add_argument("--new", type=int, default=128)
ap.add_argument("--runs", type=int, default=3)
ap.add_argument("--load", default=None, help="also time from_pretrained(DIR) in bf16 onto the GPU")
a = ap.parse_args()
cfg = MistralConfig(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                    num_attention_heads=32, num_key_value_heads=8, sliding_window=4096, rms_norm_eps=1e-5,
                    max_position_embeddings=32768, tie_word_embeddings=False)
if a.load:
    torch.cuda.synchronize(); t = time.time()
    m = MistralForCausalLM.from_pretrained(a.load, dtype=torch.bfloat16, device_map="cuda")
    torch.cuda.synchronize()
    print(f"hf bf16 from_pretrained of {a.load}: {time.time() - t:.1f} s, peak allocated {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB, reserved {torch.cuda.max_memory_reserved() / 2**20:.0f} MiB")
    del m; torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
t0 = time.time()
with torch.device("cuda"):
    model = MistralForCausalLM(cfg).to(torch.bfloat16).eval()
print(f"hf model built in {time.time() - t0:.1f} s; attn {cfg._attn_implementation}")
model.generation_config.eos_token_id = None
model.generation_config.pad_token_id = 0
g = torch.Generator().manual_seed(7)
rows = []
for b in [int(x) for x in a.batch.split(",")]:
    ids = torch.randint(3, 32000, (b, a.prompt), generator=g).cuda()
    mask = torch.ones_like(ids)
    with torch.inference_mode():
        model.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=False)
        times = []
        for _ in range(a.runs):
            torch.cuda.synchronize(); t = time.time()
            model.generate(ids, attention_mask=mask, max_new_tokens=a.new, do_sample=False)
            torch.cuda.synchronize(); times.append(time.time() - t)
    m = statistics.median(times)
    rows.append(f"hf transformers 7b bf16 batch {b}: prompt {a.prompt} new {a.new}: {m:.2f} s total, end-to-end {b * a.new / m:.1f} tok/s (median of {a.runs})")
print("== hf generate ==")
print("\n".join(rows))
