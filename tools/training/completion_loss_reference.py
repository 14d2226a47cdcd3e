#!/usr/bin/python3
"""Reference for completion-only LoRA training: the accumulated, target-normalized loss and its LoRA gradients.

    /usr/bin/python3 tools/training/completion_loss_reference.py [--out tests/fixtures/training]

Plain PyTorch (Debian's python3-torch 1.13, CPU; no transformers/PEFT needed). It

1. reads the tiny Hugging Face checkpoint tests/fixtures/hf/gqa4_window (config.json + model.safetensors, parsed with
   struct + json + numpy) into a re-statement of transformers' MistralForCausalLM (RMSNorm, rotate-half RoPE, GQA,
   sliding-window causal attention with a key padding mask, SiLU MLP), and checks it against the logits transformers
   wrote in that folder's reference.safetensors (plain and left-padded batches) before trusting it;
2. adds LoRA (PEFT's formula: y = W x + B(A x) * alpha / r, no dropout) on all seven projections of both layers with
   fixed seeded A and B (B non-zero so that A gets a gradient too);
3. frames 4 tokenized prompt/target pairs as BOS + prompt + target + EOS, labels -100 on BOS + prompt, right-pads each
   micro-batch of 2 with the pad id (= EOS) (attention mask 0, labels -100), and computes, like transformers >= 4.46
   with num_items_in_batch, loss = sum over both micro-batches of the token cross-entropies / number of target tokens of
   the step, calling backward once per micro-batch (gradient accumulation);
4. writes tests/fixtures/training/completion_loss.json (pairs, options, expected scalars) and completion_loss.safetensors
   (the LoRA weights, the padded micro-batches, the float64 gradients of every LoRA weight).

Everything is computed twice: in float32 (the precision the C# test runs in) and in float64 (the expected values); the
script prints how far float32 is from float64, which is the scale of the C# test's tolerances.
"""
import argparse
import json
import math
import os
import struct

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
MODEL_DIR = os.path.join(ROOT, "tests", "fixtures", "hf", "gqa4_window")

DTYPES = {"F64": np.float64, "F32": np.float32, "I64": np.int64, "I32": np.int32, "U8": np.uint8}
NAMES = {np.dtype(v): k for k, v in DTYPES.items()}

R, ALPHA = 4, 8
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
BOS, EOS = 1, 2
PAD = EOS
BATCH, ACCUMULATION = 2, 2
# (prompt length, target length) of the 4 pairs: micro-batch 1 = pairs 0, 1 (lengths 12, 14: 4 + 10 = 14 targets),
# micro-batch 2 = pairs 2, 3 (lengths 16, 7: 3 + 2 = 5 targets). Sliding window 8 < every row's length but one.
SHAPES = [(7, 3), (3, 9), (12, 2), (4, 1)]


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        arr = np.frombuffer(data[b:e], dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out


def write_safetensors(path, tensors, metadata):
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name].detach().numpy())
        raw = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": NAMES[arr.dtype], "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for raw in blobs:
            f.write(raw)


class Mistral:
    """transformers' MistralForCausalLM forward, restated; `lora` maps module names to (A, B) for y += B(A x) * scaling."""

    def __init__(self, cfg, weights, dtype):
        self.cfg = cfg
        self.w = {k: v.to(dtype) for k, v in weights.items()}
        self.dtype = dtype
        self.lora = {}
        self.scaling = ALPHA / R

    def linear(self, name, x):
        y = x @ self.w[name + ".weight"].T
        if name in self.lora:
            a, b = self.lora[name]
            y = y + ((x @ a.T) @ b.T) * self.scaling
        return y

    def rms(self, name, x):
        eps = self.cfg["rms_norm_eps"]
        h = x.to(torch.float32) if self.dtype == torch.float32 else x
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
        return self.w[name + ".weight"] * h.to(x.dtype)

    def forward(self, ids, mask=None, positions=None):
        cfg = self.cfg
        b, t = ids.shape
        heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
        d = cfg.get("head_dim") or cfg["hidden_size"] // heads
        theta = cfg.get("rope_theta") or cfg["rope_parameters"]["rope_theta"]
        window = cfg.get("sliding_window")
        if positions is None:
            positions = torch.arange(t).unsqueeze(0).expand(b, t)
        inv = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
        freqs = positions.float().unsqueeze(-1) * inv
        emb = torch.cat([freqs, freqs], dim=-1)
        cos, sin = emb.cos().to(self.dtype).unsqueeze(1), emb.sin().to(self.dtype).unsqueeze(1)
        i = torch.arange(t).view(-1, 1)
        j = torch.arange(t).view(1, -1)
        allowed = j <= i
        if window is not None:
            allowed = allowed & (j > i - window)
        allowed = allowed.view(1, 1, t, t)
        if mask is not None:
            allowed = allowed & mask.bool().view(b, 1, 1, t)
        # A query that may see no key at all (left padding; or, with right padding and a sliding window, a padding
        # query more than W past the row's last real token) gets zero attention output, as libtorch's SDPA and
        # transformers give, and a finite gradient (a plain softmax over all -inf would give NaN in both passes).
        anything = allowed.any(-1, keepdim=True)

        def rot(x):
            h = x.shape[-1] // 2
            return torch.cat([-x[..., h:], x[..., :h]], dim=-1)

        x = self.w["model.embed_tokens.weight"][ids]
        for layer in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{layer}."
            h = self.rms(p + "input_layernorm", x)
            q = self.linear(p + "self_attn.q_proj", h).view(b, t, heads, d).transpose(1, 2)
            k = self.linear(p + "self_attn.k_proj", h).view(b, t, kv, d).transpose(1, 2)
            v = self.linear(p + "self_attn.v_proj", h).view(b, t, kv, d).transpose(1, 2)
            q = q * cos + rot(q) * sin
            k = k * cos + rot(k) * sin
            k = k.repeat_interleave(heads // kv, dim=1)
            v = v.repeat_interleave(heads // kv, dim=1)
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(d)
            scores = scores.masked_fill(~allowed, float("-inf")).masked_fill(~anything, 0.0)
            probs = torch.softmax(scores, dim=-1) * anything  # float32 for a float32 model, as transformers upcasts
            attn = (probs @ v).transpose(1, 2).reshape(b, t, heads * d)
            x = x + self.linear(p + "self_attn.o_proj", attn)
            h = self.rms(p + "post_attention_layernorm", x)
            m = torch.nn.functional.silu(self.linear(p + "mlp.gate_proj", h)) * self.linear(p + "mlp.up_proj", h)
            x = x + self.linear(p + "mlp.down_proj", m)
        x = self.rms("model.norm", x)
        return (x @ self.w["lm_head.weight"].T).float() if self.dtype == torch.float32 else x @ self.w["lm_head.weight"].T


def check_against_transformers(cfg, weights):
    """The restated model must reproduce transformers' own logits (written by tools/hf_reference.py)."""
    ref = read_safetensors(os.path.join(MODEL_DIR, "reference.safetensors"))
    model = Mistral(cfg, weights, torch.float32)
    with torch.no_grad():
        plain = model.forward(ref["plain.input_ids"])
        padded = model.forward(ref["padded.input_ids"], ref["padded.attention_mask"], ref["padded.position_ids"])
    d1 = (plain - ref["plain.logits"]).abs().max().item()
    d2 = (padded - ref["padded.logits"]).abs().max().item()
    print(f"restated model vs transformers' logits: max |dlogits| plain {d1:.2e}, left-padded {d2:.2e}")
    assert d1 < 2e-5 and d2 < 2e-5, (d1, d2)
    return max(d1, d2)


def make_lora(cfg, gen):
    lora = {}
    h, inter = cfg["hidden_size"], cfg["intermediate_size"]
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d = cfg.get("head_dim") or h // heads
    dims = {"q_proj": (h, heads * d), "k_proj": (h, kv * d), "v_proj": (h, kv * d), "o_proj": (heads * d, h),
            "gate_proj": (h, inter), "up_proj": (h, inter), "down_proj": (inter, h)}
    for layer in range(cfg["num_hidden_layers"]):
        for target in TARGETS:
            block = "mlp" if target in ("gate_proj", "up_proj", "down_proj") else "self_attn"
            fan_in, fan_out = dims[target]
            a = (torch.rand(R, fan_in, generator=gen, dtype=torch.float64) * 2 - 1) / math.sqrt(fan_in)
            b = torch.randn(fan_out, R, generator=gen, dtype=torch.float64) * 0.05
            lora[f"model.layers.{layer}.{block}.{target}"] = (a.float(), b.float())
    return lora


def peft_key(module, matrix):
    return f"base_model.model.{module}.{matrix}.weight"


def frame(pairs):
    """BOS + prompt + target + EOS; labels -100 on BOS + prompt."""
    seqs = []
    for prompt, target in pairs:
        ids = [BOS] + prompt + target + [EOS]
        labels = [-100] * (1 + len(prompt)) + target + [EOS]
        seqs.append((ids, labels))
    return seqs


def micro_batches(seqs):
    out = []
    for first in range(0, len(seqs), BATCH):
        group = seqs[first:first + BATCH]
        cols = max(len(ids) for ids, _ in group)
        ids = torch.full((len(group), cols), PAD, dtype=torch.int64)
        mask = torch.zeros((len(group), cols), dtype=torch.int64)
        labels = torch.full((len(group), cols), -100, dtype=torch.int64)
        for r, (i, l) in enumerate(group):
            ids[r, :len(i)] = torch.tensor(i)
            mask[r, :len(i)] = 1
            labels[r, :len(l)] = torch.tensor(l)
        out.append((ids, mask, labels))
    return out


def accumulated(cfg, weights, lora, batches, dtype):
    """transformers >= 4.46: each micro-batch's loss = sum of token CE / num_items_in_batch; backward each; sum."""
    model = Mistral(cfg, weights, dtype)
    params = {}
    for name, (a, b) in lora.items():
        pa = a.to(dtype).clone().requires_grad_(True)
        pb = b.to(dtype).clone().requires_grad_(True)
        model.lora[name] = (pa, pb)
        params[peft_key(name, "lora_A")] = pa
        params[peft_key(name, "lora_B")] = pb
    items = sum(int((labels[:, 1:] != -100).sum()) for _, _, labels in batches)
    total = 0.0
    means = []
    for ids, mask, labels in batches:
        logits = model.forward(ids, mask)
        v = logits.shape[-1]
        shift_logits = logits[:, :-1].reshape(-1, v)
        shift_labels = labels[:, 1:].reshape(-1)
        token_sum = torch.nn.functional.cross_entropy(shift_logits, shift_labels, ignore_index=-100, reduction="sum")
        loss = token_sum / items
        loss.backward()
        total += loss.item()
        means.append(token_sum.item() / int((shift_labels != -100).sum()))
    grads = {k: p.grad.detach().clone() for k, p in params.items()}
    norm = math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads.values()))
    return total, grads, norm, items, sum(means) / len(means)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "training"))
    args = ap.parse_args()
    with open(os.path.join(MODEL_DIR, "config.json")) as f:
        cfg = json.load(f)
    weights = read_safetensors(os.path.join(MODEL_DIR, "model.safetensors"))
    hf_gap = check_against_transformers(cfg, weights)

    gen = torch.Generator().manual_seed(20240611)
    pairs = [(torch.randint(3, cfg["vocab_size"], (p,), generator=gen).tolist(),
              torch.randint(3, cfg["vocab_size"], (t,), generator=gen).tolist()) for p, t in SHAPES]
    lora = make_lora(cfg, gen)
    batches = micro_batches(frame(pairs))

    loss32, grads32, norm32, items, _ = accumulated(cfg, weights, lora, batches, torch.float32)
    loss64, grads64, norm64, items64, mean_of_means = accumulated(cfg, weights, lora, batches, torch.float64)
    assert items == items64
    rel = max(float(((grads32[k].double() - grads64[k]).abs().max()) / grads64[k].abs().max()) for k in grads64)
    print(f"target tokens {items} ({[int((l[:, 1:] != -100).sum()) for _, _, l in batches]} per micro-batch)")
    print(f"loss float64 {loss64!r}, float32 {loss32!r} (rel {abs(loss32 - loss64) / loss64:.2e}); mean of micro-batch means {mean_of_means!r}")
    print(f"grad norm float64 {norm64!r}, float32 {norm32!r}; worst per-tensor max|dgrad|/max|grad| float32 vs float64 {rel:.2e}")

    tensors = {}
    for name, (a, b) in lora.items():
        tensors["weight." + peft_key(name, "lora_A")] = a
        tensors["weight." + peft_key(name, "lora_B")] = b
    for k, g in grads64.items():
        tensors["grad." + k] = g
    for n, (ids, mask, labels) in enumerate(batches):
        tensors[f"batch{n}.input_ids"] = ids
        tensors[f"batch{n}.attention_mask"] = mask
        tensors[f"batch{n}.labels"] = labels
    os.makedirs(args.out, exist_ok=True)
    write_safetensors(os.path.join(args.out, "completion_loss.safetensors"), tensors, {"format": "pt", "torch": torch.__version__})
    summary = {
        "made_by": "tools/training/completion_loss_reference.py",
        "torch": torch.__version__,
        "model": "hf/gqa4_window",
        "restated_model_vs_transformers_max_abs_logits": hf_gap,
        "lora": {"r": R, "alpha": ALPHA, "dropout": 0.0, "target_modules": TARGETS},
        "options": {"bos_id": BOS, "eos_id": EOS, "pad_id": PAD, "per_device_batch_size": BATCH,
                    "gradient_accumulation_steps": ACCUMULATION, "shuffle": False},
        "pairs": [{"prompt": p, "target": t} for p, t in pairs],
        "target_tokens": items,
        "loss": loss64,
        "loss_float32": loss32,
        "loss_mean_of_micro_batch_means": mean_of_means,
        "grad_norm": norm64,
        "grad_float32_vs_float64_max_rel": rel,
    }
    with open(os.path.join(args.out, "completion_loss.json"), "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
