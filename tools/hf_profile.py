#!/usr/bin/env python3
"""Where the time goes in HF transformers (+ PEFT) on the Mistral-7B architecture (random bf16 weights).

    python3 tools/hf_profile.py [--what decode,train] [--out DIR]

torch.profiler over (a) one greedy decode step at batch 1 after a 128-token prompt and (b) one LoRA r16 all-linear
training step, seq 512 x 4, gradient checkpointing: CUDA kernels launched, summed kernel time vs wall time, and
the kernels that take the most time. The counterpart for Mistral.NET is `Mistral.Benchmarks generate --model thin`
(host overhead) plus ncu's per-kernel summary (tools/gpu_profile.sh).
"""
import argparse, collections, time
import torch
from torch.profiler import profile, ProfilerActivity
from transformers import MistralConfig, MistralForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("--what", default="decode,train")
ap.add_argument("--out", default=None)
a = ap.parse_args()
cfg = MistralConfig(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                    num_attention_heads=32, num_key_value_heads=8, sliding_window=4096, rms_norm_eps=1e-5,
                    max_position_embeddings=32768, tie_word_embeddings=False)


def report(prof, label, wall, per=1):
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    total = sum(e.device_time for e in kernels) / 1e3  # us -> ms
    by = collections.defaultdict(lambda: [0, 0.0])
    for e in kernels:
        by[e.name][0] += 1
        by[e.name][1] += e.device_time / 1e3
    print(f"== hf {label}: {len(kernels) // per} kernels per iteration, kernel time {total / per:.2f} ms vs wall {wall / per * 1e3:.2f} ms per iteration")
    for name, (n, ms) in sorted(by.items(), key=lambda kv: -kv[1][1])[:18]:
        print(f"   {ms / per:8.2f} ms {n // per:6d}x  {name[:110]}")
    if a.out:
        prof.export_chrome_trace(f"{a.out}/hf_{label}.json")


torch.manual_seed(0)
if "decode" in a.what:
    with torch.device("cuda"):
        model = MistralForCausalLM(cfg).to(torch.bfloat16).eval()
    ids = torch.randint(3, 32000, (1, 128), device="cuda")
    with torch.inference_mode():
        out = model(ids, use_cache=True)
        past = out.past_key_values
        nxt = out.logits[:, -1:].argmax(-1)
        for _ in range(3):
            o = model(nxt, past_key_values=past, use_cache=True); nxt = o.logits[:, -1:].argmax(-1)
        torch.cuda.synchronize()
        steps = 8
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            t = time.time()
            for _ in range(steps):
                o = model(nxt, past_key_values=past, use_cache=True); nxt = o.logits[:, -1:].argmax(-1)
            torch.cuda.synchronize(); wall = time.time() - t
        report(prof, "decode_step_b1", wall, steps)
    del model, past, o, out
    torch.cuda.empty_cache()

if "train" in a.what:
    from peft import LoraConfig, get_peft_model
    with torch.device("cuda"):
        model = MistralForCausalLM(cfg).to(torch.bfloat16)
    model.gradient_checkpointing_enable(); model.enable_input_require_grads()
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=16, lora_dropout=0.1, task_type="CAUSAL_LM",
                                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4)
    ids = torch.randint(3, 32000, (4, 512), device="cuda")

    def step():
        out = model(input_ids=ids, labels=ids); out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 0.3); opt.step(); opt.zero_grad()

    for _ in range(2):
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t = time.time(); step(); torch.cuda.synchronize(); wall = time.time() - t
    report(prof, "train_step_lora_r16_all", wall)
