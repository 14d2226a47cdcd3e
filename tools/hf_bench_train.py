#!/usr/bin/env python3
"""HF transformers + PEFT LoRA training step on the Mistral-7B architecture with random bf16 weights (lent H200).

    python3 tools/hf_bench_train.py [--r 16] [--targets all|qv] [--seq 512] [--batch 4] [--steps 5] [--tf32]

--tf32 sets torch.backends.cuda.matmul.allow_tf32 (the float32 LoRA matmuls on tensor cores; PyTorch's default is off),
to compare with `Mistral.Benchmarks train --tf32 true`.

Same measurement as `Mistral.Benchmarks train --mode lora --device cuda`: bf16 base, float32 LoRA (alpha 16,
dropout 0.1), gradient checkpointing, AdamW lr 2e-4 on the adapters, clip 0.3; median of the steps after 2 warm-up
steps, CUDA-synchronised. (QLoRA needs bitsandbytes, which is not installed on that machine.)
"""
import argparse, statistics, time
import torch
from transformers import MistralConfig, MistralForCausalLM
from peft import LoraConfig, get_peft_model

ap = argparse.ArgumentParser()
ap.add_argument("--r", type=int, default=16)
ap.add_argument("--targets", default="all")
ap.add_argument("--seq", type=int, default=512)
ap.add_argument("--batch", type=int, default=4)
ap.add_argument("--steps", type=int, default=5)
ap.add_argument("--tf32", action="store_true")
a = ap.parse_args()
torch.backends.cuda.matmul.allow_tf32 = a.tf32
cfg = MistralConfig(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                    num_attention_heads=32, num_key_value_heads=8, sliding_window=4096, rms_norm_eps=1e-5,
                    max_position_embeddings=32768, tie_word_embeddings=False)
torch.manual_seed(1234)
with torch.device("cuda"):
    model = MistralForCausalLM(cfg).to(torch.bfloat16)
model.gradient_checkpointing_enable()
model.enable_input_require_grads()
targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] if a.targets == "all" else ["q_proj", "v_proj"]
model = get_peft_model(model, LoraConfig(r=a.r, lora_alpha=16, lora_dropout=0.1, target_modules=targets, task_type="CAUSAL_LM"))
model.train()
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=2e-4)
ids = torch.randint(3, 32000, (a.batch, a.seq), device="cuda")
torch.cuda.reset_peak_memory_stats()
times, losses = [], []
for step in range(a.steps + 2):
    torch.cuda.synchronize(); t = time.time()
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 0.3)
    opt.step(); opt.zero_grad()
    torch.cuda.synchronize()
    losses.append(out.loss.item())
    if step >= 2:
        times.append(time.time() - t)
m = statistics.median(times)
print("== hf train step ==")
print(f"hf+peft LoRA bf16 7b r {a.r} {a.targets}, seq {a.seq} x batch {a.batch}, checkpointing True, tf32 {a.tf32}: {m:.3f} s/step, "
      f"{a.batch * a.seq / m:.0f} tokens/s, peak allocated {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB, "
      f"reserved {torch.cuda.max_memory_reserved() / 2**20:.0f} MiB, losses {' '.join(f'{l:.4f}' for l in losses)}")
