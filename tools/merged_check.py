#!/usr/bin/env python3
"""Loads merged checkpoints written by Mistral.NET's `LoadedPipeline.SaveMerged` with transformers and compares logits.

    bash .gpu/run.sh Mistral.Benchmarks mergedcheck --out /tmp/mc --device cuda
    python3 tools/merged_check.py --dir /tmp/mc [--merged7b /tmp/m7b-merged --logits7b /tmp/m7b-merged/merged7b.logits.safetensors]

For each tiny export (LoRA on a float32 base, QLoRA on an NF4 base) it loads DIR/<name> with
`MistralForCausalLM.from_pretrained` (strict: a missing or unexpected key fails) and compares transformers' logits for
the same ids with (a) our logits of the same merged folder and (b) our adapted model's logits before export.
"""
import argparse, json
import torch
from safetensors.torch import load_file
from transformers import MistralForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("--dir", required=True)
ap.add_argument("--merged7b")
ap.add_argument("--logits7b")
a = ap.parse_args()
results = {}
for name in ["merged-lora", "merged-qlora"]:
    ours = load_file(f"{a.dir}/{name}.logits.safetensors")
    model = MistralForCausalLM.from_pretrained(f"{a.dir}/{name}", torch_dtype=torch.float32, attn_implementation="eager")
    model.eval()
    with torch.no_grad():
        hf = model(ours["ids"].long()).logits.float()
    d_ours = (hf - ours["merged_ours"]).abs().max().item()
    d_adapted = (hf - ours["adapted"]).abs().max().item()
    results[name] = {"hf_vs_our_merged_load": d_ours, "hf_vs_our_adapted_model": d_adapted}
    print(f"{name}: transformers vs our load of the merged folder max |dlogit| {d_ours:.3e}; vs our adapted model {d_adapted:.3e}")
if a.merged7b:
    ours = load_file(a.logits7b)
    model = MistralForCausalLM.from_pretrained(a.merged7b, torch_dtype=torch.bfloat16, device_map="cuda")
    model.eval()
    with torch.no_grad():
        hf = model(ours["ids"].long().cuda()).logits.float().cpu()
    ref = ours["merged_ours"].float()
    d = (hf - ref).abs().max().item()
    scale = ref.abs().max().item()
    agree = (hf.argmax(-1) == ref.argmax(-1)).float().mean().item()
    results["merged7b"] = {"max_abs_diff": d, "max_abs_logit": scale, "argmax_agreement": agree}
    print(f"7B merged (bf16): transformers vs ours max |dlogit| {d:.3e} (max |logit| {scale:.2f}); argmax agreement {agree:.3f}")
print(json.dumps(results))
