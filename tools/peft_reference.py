#!/usr/bin/env python3
"""PEFT LoRA reference fixtures for Mistral.Peft (run on the lent GPU machine: torch 2.11, transformers 5.17, PEFT 0.21).

    python3 tools/peft_reference.py --model tests/fixtures/hf/gqa4_window --out OUT [--ours OURS_DIR]

(a) Loads the tiny HF checkpoint in --model (float32, CPU), adds a PEFT LoRA adapter with init_lora_weights=False
    (A and B both random, so the adapter is not a no-op), r=4, lora_alpha=8, lora_dropout=0, all 7 projections,
    seeded; saves it with save_pretrained to OUT/peft_adapter; runs the adapted model in train mode (dropout 0, so
    deterministic) on fixed input ids with labels = input ids, and writes OUT/peft_adapter_reference.safetensors:
      input_ids [2, 24] int64, logits [2, 24, vocab] float32, loss [1] float32,
      grad.<key> for every LoRA parameter, <key> being PEFT's saved key
      (base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight, ...), from loss.backward().
    Metadata records the versions and PEFT's trainable/all parameter counts.
(b) With --ours DIR (an adapter folder written by Mistral.Peft's PeftAdapter.Save, plus our_logits.safetensors with
    key "logits" and, optionally, "input_ids"), loads that adapter with PeftModel.from_pretrained onto a fresh base,
    computes its logits (eval mode) for the same input ids (ours if given, else the fixed ones) and writes
    OUT/ours_in_peft_logits.safetensors; prints max |Δ| against our logits.
"""
import argparse
import json
import os
import sys

import torch
from safetensors.torch import load_file, save_file
import transformers
from transformers import MistralForCausalLM
import peft
from peft import LoraConfig, PeftModel, get_peft_model

PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
SEQ = 24
BATCH = 2


def load_base(folder):
    model = MistralForCausalLM.from_pretrained(folder, dtype=torch.float32)
    return model.to("cpu").float()


def fixed_input_ids(vocab_size, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, vocab_size, (BATCH, SEQ), generator=g)


def saved_key(param_name):
    # PEFT's parameter name carries the adapter name ("lora_A.default.weight"); saved keys do not.
    key = param_name.replace(".lora_A.default.", ".lora_A.").replace(".lora_B.default.", ".lora_B.")
    assert ".default." not in key, param_name
    return key


def make_reference(args):
    base = load_base(args.model)
    vocab = base.config.vocab_size
    ids = fixed_input_ids(vocab, args.seed + 1)

    torch.manual_seed(args.seed)
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=PROJECTIONS, bias="none",
                        init_lora_weights=False, task_type="CAUSAL_LM")
    model = get_peft_model(base, config)
    model.print_trainable_parameters()
    trainable, total = model.get_nb_trainable_parameters()

    adapter_dir = os.path.join(args.out, "peft_adapter")
    model.save_pretrained(adapter_dir)
    saved = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))

    model.train()
    model.zero_grad(set_to_none=True)
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()

    ref = {
        "input_ids": ids.contiguous(),
        "logits": out.logits.detach().float().contiguous(),
        "loss": out.loss.detach().float().reshape(1).contiguous(),
    }
    grad_keys = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        key = saved_key(name)
        if key not in saved:
            sys.exit(f"trainable parameter {name} (key {key}) is not in the saved adapter")
        if p.grad is None:
            sys.exit(f"no gradient for {name}")
        ref["grad." + key] = p.grad.detach().float().contiguous()
        grad_keys.append(key)
    if sorted(grad_keys) != sorted(saved.keys()):
        sys.exit(f"saved keys and trainable parameters differ: {sorted(set(saved) ^ set(grad_keys))}")

    meta = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "seed": str(args.seed),
        "trainable_params": str(trainable),
        "all_params": str(total),
    }
    ref_path = os.path.join(args.out, "peft_adapter_reference.safetensors")
    save_file(ref, ref_path, metadata=meta)
    return ids, {
        "adapter": os.path.relpath(adapter_dir, args.out),
        "reference": os.path.relpath(ref_path, args.out),
        "lora_tensors": len(saved),
        "loss": ref["loss"].item(),
        "logits_max_abs": ref["logits"].abs().max().item(),
        "trainable_params": trainable,
        "all_params": total,
    }


def check_ours(args, ids):
    ours_logits_path = os.path.join(args.ours, "our_logits.safetensors")
    ours = load_file(ours_logits_path) if os.path.exists(ours_logits_path) else {}
    if "input_ids" in ours:
        ids = ours["input_ids"].to(torch.long)
    base = load_base(args.model)
    model = PeftModel.from_pretrained(base, args.ours)
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float()
    out_path = os.path.join(args.out, "ours_in_peft_logits.safetensors")
    save_file({"input_ids": ids.contiguous(), "logits": logits.contiguous()}, out_path,
              metadata={"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__})
    result = {"ours_in_peft_logits": os.path.relpath(out_path, args.out)}
    if "logits" in ours:
        if tuple(ours["logits"].shape) != tuple(logits.shape):
            sys.exit(f"our_logits.safetensors logits shape {tuple(ours['logits'].shape)} != PEFT's {tuple(logits.shape)}")
        result["max_abs_delta_vs_our_logits"] = (ours["logits"].float() - logits).abs().max().item()
    else:
        result["max_abs_delta_vs_our_logits"] = f"not computed: no 'logits' in {ours_logits_path}"
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="HF checkpoint folder of a tiny MistralForCausalLM")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--ours", help="adapter folder written by Mistral.Peft (with our_logits.safetensors)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.use_deterministic_algorithms(True, warn_only=True)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}")

    ids, summary = make_reference(args)
    if args.ours:
        summary.update(check_ours(args, ids))
    with open(os.path.join(args.out, "peft_summary.json"), "w") as f:
        json.dump({"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
                   **summary}, f, indent=2)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
