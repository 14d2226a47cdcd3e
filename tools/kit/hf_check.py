#!/usr/bin/env python3
"""Checks that transformers loads the kit checkpoint and gives Mistral.NET's logits.

    bash .gpu/run.sh Mistral.Benchmarks kitlogits --model kit/model --out /tmp/kit   # our float32 logits for fixed prompts
    python3 tools/kit/hf_check.py --model kit/model --ours /tmp/kit/kit.logits.safetensors

Loads kit/model with MistralForCausalLM.from_pretrained (float32, eager attention; a missing or unexpected key fails),
runs the same ids and prints the largest absolute logit difference (the issue's bound: 1e-4).
"""
import argparse, json
import torch
from safetensors.torch import load_file
from transformers import MistralForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--ours", required=True)
a = ap.parse_args()
ours = load_file(a.ours)
model = MistralForCausalLM.from_pretrained(a.model, torch_dtype=torch.float32, attn_implementation="eager")
model.eval()
mask_long = ours["mask"].long()
positions = (mask_long.cumsum(-1) - 1).masked_fill(mask_long == 0, 1)   # left padding: positions skip the pads, as generate() computes them
with torch.no_grad():
    hf = model(ours["ids"].long(), attention_mask=mask_long, position_ids=positions).logits.float()
mask = ours["mask"].bool()
d = (hf - ours["logits"]).abs()[mask].max().item()
print(json.dumps({"max_abs_logit_diff": d, "max_abs_logit": hf.abs().max().item(), "ok": d <= 1e-4}))
