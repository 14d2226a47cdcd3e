#!/usr/bin/env python3
"""Reference fixtures from Hugging Face transformers' MistralForCausalLM (run on the lent GPU machine).

    python3 tools/hf_reference.py --out DIR

Builds small random MistralForCausalLM models (seeded), saves each as a HF checkpoint folder (config.json +
model.safetensors), and next to it `reference.safetensors` with inputs and expected outputs computed by HF on CPU in
float32 (and bfloat16), plus greedy `generate` ids. The C# tests in tests/Mistral.Core.Tests read these folders.

Models:
  gqa4_window: heads 8 / kv heads 2 (GQA ratio 4), sliding_window 8 < sequence length 24, top-level rope_theta.
  mha_full:    heads 4 / kv heads 4, no sliding window, no head_dim in config (derived), rope_theta 500000.
"""
import argparse, inspect, json, os, sys, time

import torch
from safetensors.torch import save_file
import transformers
from transformers import MistralConfig, MistralForCausalLM

MODELS = {
    "gqa4_window": dict(vocab_size=320, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                        num_attention_heads=8, num_key_value_heads=2, head_dim=8, sliding_window=8,
                        rope_theta=10000.0, rms_norm_eps=1e-5, max_position_embeddings=256),
    "mha_full": dict(vocab_size=256, hidden_size=48, intermediate_size=96, num_hidden_layers=3,
                     num_attention_heads=4, num_key_value_heads=4, sliding_window=None,
                     rope_theta=500000.0, rms_norm_eps=1e-6, max_position_embeddings=256),
}
SEQ = 24


def build(name, spec, seed):
    torch.manual_seed(seed)
    spec = dict(spec)
    theta = spec.pop("rope_theta")
    if "rope_parameters" in inspect.signature(MistralConfig.__init__).parameters:
        spec["rope_parameters"] = {"rope_type": "default", "rope_theta": theta}
    else:
        spec["rope_theta"] = theta
    cfg = MistralConfig(bos_token_id=1, eos_token_id=2, tie_word_embeddings=False, **spec)
    model = MistralForCausalLM(cfg).eval()
    d = cfg.head_dim if getattr(cfg, "head_dim", None) else cfg.hidden_size // cfg.num_attention_heads
    inv = model.model.rotary_emb.inv_freq
    assert abs(inv[1].item() - theta ** (-2.0 / d)) < 1e-6 * theta ** (-2.0 / d) + 1e-9, (inv[1].item(), theta, d)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    model.generation_config.bos_token_id = 1
    print(name, "attn:", getattr(cfg, "_attn_implementation", "?"))
    # Larger-than-default weights so that the logits are not all ~0 and errors are visible.
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.08)
    return cfg, model


def left_padded_batch(vocab, g):
    lengths = [SEQ, 17, 9]
    ids = torch.zeros(len(lengths), SEQ, dtype=torch.long)
    mask = torch.zeros(len(lengths), SEQ, dtype=torch.long)
    for r, n in enumerate(lengths):
        ids[r, SEQ - n:] = torch.randint(3, vocab, (n,), generator=g)
        mask[r, SEQ - n:] = 1
    pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
    labels = ids.masked_fill(mask == 0, -100)
    return ids, mask, pos, labels


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    summary = {}
    for seed, (name, spec) in enumerate(MODELS.items(), start=1):
        folder = os.path.join(args.out, name)
        cfg, model = build(name, spec, 1000 + seed)
        model.save_pretrained(folder, safe_serialization=True)
        cj = os.path.join(folder, "config.json")
        with open(cj) as f:
            conf = json.load(f)
        if name == "gqa4_window":
            # Exercise the older top-level rope_theta form as well as the newer rope_parameters one.
            rp = conf.pop("rope_parameters", None)
            conf["rope_theta"] = spec["rope_theta"]
            if rp is not None:
                conf["rope_scaling"] = None
        else:
            conf.pop("head_dim", None)
        with open(cj, "w") as f:
            json.dump(conf, f, indent=2)
        g = torch.Generator().manual_seed(7 + seed)
        ref = {}
        with torch.no_grad():
            ids = torch.randint(3, cfg.vocab_size, (2, SEQ), generator=g)
            out = model(input_ids=ids, labels=ids)
            ref["plain.input_ids"] = ids
            ref["plain.logits"] = out.logits.float()
            ref["plain.loss"] = out.loss.float().reshape(1)

            pids, pmask, ppos, plabels = left_padded_batch(cfg.vocab_size, g)
            out = model(input_ids=pids, attention_mask=pmask, position_ids=ppos, labels=plabels)
            ref["padded.input_ids"] = pids
            ref["padded.attention_mask"] = pmask
            ref["padded.position_ids"] = ppos
            ref["padded.labels"] = plabels
            ref["padded.logits"] = out.logits.float()
            ref["padded.loss"] = out.loss.float().reshape(1)

            mb = MistralForCausalLM(cfg).eval()
            mb.load_state_dict(model.state_dict())
            mb = mb.to(torch.bfloat16)
            ref["plain.logits_bf16"] = mb(input_ids=ids).logits.float()
            ref["padded.logits_bf16"] = mb(input_ids=pids, attention_mask=pmask, position_ids=ppos).logits.float()

            # Greedy generation crossing the sliding window several times.
            prompt = torch.randint(3, cfg.vocab_size, (1, 5), generator=g)
            gen = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=40, do_sample=False)
            ref["generate.prompt"] = prompt
            ref["generate.output"] = gen
            # Batched, left-padded greedy generation.
            bids = torch.zeros(2, 7, dtype=torch.long)
            bmask = torch.zeros(2, 7, dtype=torch.long)
            bids[0] = torch.randint(3, cfg.vocab_size, (7,), generator=g)
            bmask[0] = 1
            bids[1, 3:] = torch.randint(3, cfg.vocab_size, (4,), generator=g)
            bmask[1, 3:] = 1
            bgen = model.generate(bids, attention_mask=bmask, max_new_tokens=20, do_sample=False)
            ref["generate_batch.input_ids"] = bids
            ref["generate_batch.attention_mask"] = bmask
            ref["generate_batch.output"] = bgen
        save_file({k: v.contiguous() for k, v in ref.items()}, os.path.join(folder, "reference.safetensors"),
                  metadata={"transformers": transformers.__version__, "torch": torch.__version__})
        summary[name] = {"plain.loss": ref["plain.loss"].item(), "padded.loss": ref["padded.loss"].item(),
                         "bf16_vs_fp32_max_abs": (ref["plain.logits_bf16"] - ref["plain.logits"]).abs().max().item(),
                         "logits_max_abs": ref["plain.logits"].abs().max().item()}
        print(name, summary[name])
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump({"torch": torch.__version__, "transformers": transformers.__version__, "models": summary}, f, indent=2)


if __name__ == "__main__":
    main()
