#!/usr/bin/env bash
# One device call: the GPU test lane, Mistral.NET and HF side by side (issue 13's table), diagnostics and profiles, as
# many of the named steps as the budget allows. Usage on the GPU machine (after
# bash ../shared/gpu/pack.sh benchmarks/Mistral.Benchmarks/Mistral.Benchmarks.csproj):
#   OUT=/some/dir [STEPS="hub_fixture gpucheck train_qlora hf_train ..."] bash tools/gpu_bench_all.sh [budget_seconds]
# Steps (default: all, in this order): hub_fixture nf4_reference gpucheck overhead hf_train train_qlora train_lora
#   hf_train_qv train_qlora_qv train_qlora_unfused gen_bf16 hf_gen gen_nf4 gen_thin checkpoint gen_nf4_ckpt gen_nf4_ckpt_gpuemb train_qlora_ckpt train_qlora_ckpt_exp
#   train_qlora_ckpt_nocache train_qlora_ckpt_unstaged train_qlora_ckpt_gpuemb train_qlora_ckpt_hostemb train_qlora_ckpt_hostemb_exp train_qlora_qv_ckpt train_qlora_qv_ckpt_prof train_qlora_ckpt_nodrop hf_train_tf32 train_lora_tf32 train_qlora_tf32 hf_profile train_lora_noprod train_qlora_ckpt_noprod train_qlora_qv_ckpt_noprod
# A/B of two builds in one call: put the baseline's changed assemblies in .gpu/base/ (e.g. main's Mistral.Peft.dll from
# a second pack) and name swap_base between the steps: the steps after it run the baseline (marked in all_steps.log).
# Appends each step's log to $OUT/all_steps.log as the step ends (a call cut short keeps what finished) and prints a summary last.
set -u
export PYTHONUNBUFFERED=1
L=$(mktemp -d) # the steps' logs; $OUT gets them all in one file (at most 8 files come back from the device)
budget=${1:-560}
S=$(date +%s)
B="bash .gpu/run.sh Mistral.Benchmarks"
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
case "$gpu" in *H200*) peak="--peak-gbs 4800 --peak-tflops 989";; *) peak="--peak-gbs 3350 --peak-tflops 989";; esac
all="hub_fixture nf4_reference gpucheck overhead hf_train train_qlora train_lora hf_train_qv train_qlora_qv train_qlora_unfused gen_bf16 hf_gen gen_nf4 gen_thin checkpoint gen_nf4_ckpt gen_nf4_ckpt_gpuemb train_qlora_ckpt train_qlora_ckpt_exp train_qlora_ckpt_nocache train_qlora_ckpt_unstaged train_qlora_ckpt_gpuemb train_qlora_ckpt_hostemb train_qlora_ckpt_hostemb_exp train_qlora_qv_ckpt train_qlora_qv_ckpt_prof train_qlora_ckpt_nodrop hf_train_tf32 train_lora_tf32 train_qlora_tf32 hf_profile"
left() { echo $(( budget - ($(date +%s) - S) )); }
step() { # name timeout command...
  local name=$1 t=$2; shift 2
  local l; l=$(left)
  if [ "$l" -lt 25 ]; then echo "skipped $name (budget)"; return; fi
  [ "$t" -gt "$l" ] && t=$l
  timeout "$t" "$@" > "$L/$name.txt" 2>&1; echo "$name rc $? at $(( $(date +%s) - S )) s"
  # Appended as each step ends, so a call cut short still brings back the steps that finished.
  { echo "===== $name ====="; cat "$L/$name.txt"; } >> "$OUT/all_steps.log"
}
run_step() {
  case "$1" in
    hub_fixture) step hub_fixture 40 python3 tools/hub/python_cache_fixture.py "$OUT/python_hub_cache.tar.gz";;
    # NF4 bits are compared with a reference made on this device (the double-quant offset's float32 mean depends on it).
    nf4_reference) step nf4_reference 40 python3 tools/nf4/nf4_reference.py --out /tmp/nf4cuda --device cuda;;
    gpucheck) step gpucheck 150 $B gpucheck --device cuda --nf4 /tmp/nf4cuda;;
    overhead) step overhead 60 $B overhead --device cuda;;
    hf_train) step hf_train 80 python3 tools/hf_bench_train.py;;
    train_qlora) step train_qlora 90 $B train --device cuda --mode qlora --breakdown true --profile true --fused-dropout true $peak;;
    train_lora) step train_lora 80 $B train --device cuda --mode lora --breakdown true --profile true --fused-dropout true $peak;;
    # The same steps with LoRA's first product through cuBLAS over a written float32 input (before the fused product kernels).
    train_lora_noprod) step train_lora_noprod 80 $B train --device cuda --mode lora --breakdown true --fused-product false $peak;;
    train_qlora_ckpt_noprod) step train_qlora_ckpt_noprod 150 $B train --device cuda --mode qlora --checkpoint /tmp/ckpt7b --breakdown true --fused-product false --memory-trace true $peak;;
    train_qlora_qv_ckpt_noprod) step train_qlora_qv_ckpt_noprod 120 $B train --device cuda --mode qlora --r 8 --targets qv --checkpoint /tmp/ckpt7b --breakdown true --fused-product false --memory-trace true $peak;;
    # Both sides with TF32 float32 matmuls (the adapters'): PyTorch's allow_tf32, off by default on both.
    hf_train_tf32) step hf_train_tf32 80 python3 tools/hf_bench_train.py --tf32;;
    train_lora_tf32) step train_lora_tf32 80 $B train --device cuda --mode lora --breakdown true --tf32 true $peak;;
    train_qlora_tf32) step train_qlora_tf32 90 $B train --device cuda --mode qlora --breakdown true --tf32 true $peak;;
    hf_train_qv) step hf_train_qv 70 python3 tools/hf_bench_train.py --r 8 --targets qv;;
    train_qlora_qv) step train_qlora_qv 80 $B train --device cuda --mode qlora --r 8 --targets qv --breakdown true --fused-dropout true $peak;;
    train_qlora_qv_ckpt) step train_qlora_qv_ckpt 120 $B train --device cuda --mode qlora --r 8 --targets qv --checkpoint /tmp/ckpt7b --breakdown true --memory-trace true $peak;;
    train_qlora_qv_ckpt_prof) step train_qlora_qv_ckpt_prof 120 $B train --device cuda --mode qlora --r 8 --targets qv --checkpoint /tmp/ckpt7b --breakdown true --profile true $peak;;
    train_qlora_unfused) step train_qlora_unfused 90 $B train --device cuda --mode qlora --fused false $peak;;
    gen_bf16) step gen_bf16 110 $B generate --device cuda --model 7b --batch 1,8 --fused both --fused-decode-attention true --fused-decode-gemv true --runs 2 --new 64 --profile true $peak;;
    hf_gen) step hf_gen 80 python3 tools/hf_bench_generate.py --runs 2 --new 64;;
    # NF4 decoding of the 7B checkpoint loaded as a user loads it (embedding table in pinned host memory, the default),
    # and with the table on the GPU.
    gen_nf4_ckpt) step gen_nf4_ckpt 130 $B generate --device cuda --model 7b --quant nf4 --checkpoint /tmp/ckpt7b --batch 1,8 --fused true --fused-decode-attention true --fused-decode-gemv true --runs 2 --new 64 $peak;;
    gen_nf4_ckpt_gpuemb) step gen_nf4_ckpt_gpuemb 130 $B generate --device cuda --model 7b --quant nf4 --checkpoint /tmp/ckpt7b --host-embeddings false --batch 1,8 --fused true --fused-decode-attention true --fused-decode-gemv true --runs 2 --new 64 $peak;;
    gen_nf4) step gen_nf4 130 $B generate --device cuda --model 7b --quant nf4 --batch 1,8 --fused both --fused-decode-attention true --fused-decode-gemv true --runs 2 --new 64 $peak;;
    gen_thin) step gen_thin 40 $B generate --device cuda --model thin --batch 1 --fused both --runs 3 $peak;;
    checkpoint) step checkpoint 120 python3 tools/make_random_checkpoint.py --out /tmp/ckpt7b;;
    train_qlora_ckpt) step train_qlora_ckpt 150 $B train --device cuda --mode qlora --checkpoint /tmp/ckpt7b --breakdown true --fused-dropout true --memory-trace true $peak;;
    # The loader's old way: each projection read whole to the device before it is quantized (its freed blocks stay in the allocator's cache).
    train_qlora_ckpt_unstaged) step train_qlora_ckpt_unstaged 150 $B train --device cuda --mode qlora --checkpoint /tmp/ckpt7b --stage-host false --fused-dropout true --memory-trace true $peak;;
    # The embedding table on the GPU instead of in pinned host memory (the default); train_qlora_ckpt_hostemb names the
    # default explicitly, as calls 6-8 ran it when the table stayed on the GPU by default.
    train_qlora_ckpt_gpuemb) step train_qlora_ckpt_gpuemb 150 $B train --device cuda --mode qlora --checkpoint /tmp/ckpt7b --host-embeddings false --breakdown true --fused-dropout true --memory-trace true $peak;;
    train_qlora_ckpt_hostemb) step train_qlora_ckpt_hostemb 150 $B train --device cuda --mode qlora --checkpoint /tmp/ckpt7b --host-embeddings true --breakdown true --fused-dropout true --memory-trace true $peak;;
    train_qlora_ckpt_hostemb_exp) step train_qlora_ckpt_hostemb_exp 150 env PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True $B train --device cuda --mode qlora --checkpoint /tmp/ckpt7b --host-embeddings true --breakdown true --fused-dropout true --memory-trace true $peak;;
    # Memory without LoRA dropout (its float32 copies of each projection's input are saved for the adapters' gradients).
    train_qlora_ckpt_nodrop) step train_qlora_ckpt_nodrop 150 $B train --device cuda --mode qlora --checkpoint /tmp/ckpt7b --dropout 0 --memory-trace true $peak;;
    # The same with libtorch's caching allocator mapping memory in expandable segments (PyTorch's documented
    # PYTORCH_CUDA_ALLOC_CONF, read by the libtorch TorchSharp loads): less fragmentation, a lower peak.
    train_qlora_ckpt_exp) step train_qlora_ckpt_exp 150 env PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True $B train --device cuda --mode qlora --checkpoint /tmp/ckpt7b --breakdown true --fused-dropout true --memory-trace true $peak;;
    # Without libtorch's caching allocator every tensor is cudaMalloc'd and freed as it comes and goes, so the sampled
    # process memory follows the live tensors (slow; two steps): the distance to the cached run is the allocator's reserve.
    train_qlora_ckpt_nocache) step train_qlora_ckpt_nocache 150 env PYTORCH_NO_CUDA_MEMORY_CACHING=1 $B train --device cuda --mode qlora --checkpoint /tmp/ckpt7b --steps 2 --warmup 1 --memory-trace true $peak;;
    hf_profile) step hf_profile 90 python3 tools/hf_profile.py --what train;;
    swap_base) if ls .gpu/base/*.dll > /dev/null 2>&1; then cp .gpu/base/*.dll .gpu/Mistral.Benchmarks/
                 echo "===== swap_base: the steps below run the baseline's $(cd .gpu/base && echo *.dll) =====" >> "$OUT/all_steps.log"
               else echo "swap_base: no .gpu/base/*.dll"; fi;;
    *) echo "unknown step $1";;
  esac
}
# CUPTI for the per-kernel profiles of our side (--profile true); it ships with PyTorch's CUDA wheels.
export MISTRAL_CUPTI=${MISTRAL_CUPTI:-$(find $(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null) /usr/local/cuda*/ -name 'libcupti.so*' 2>/dev/null | sort | head -1)}
echo "$gpu; CUPTI ${MISTRAL_CUPTI:-not found}"
for s in ${STEPS:-$all}; do run_step "$s"; done
echo "== summary ($gpu) =="
tail -3 "$L/hub_fixture.txt" 2>/dev/null | cut -c1-200
grep -hE "PASS|FAIL|Unhandled|Exception" "$L/gpucheck.txt" 2>/dev/null | cut -c1-220
grep -hE "us/op|ms/step" "$L/overhead.txt" 2>/dev/null | cut -c1-200
grep -hE "^mistral.net|^hf|fused kernels:|model FLOP|breakdown|memory by phase|after setup|Unhandled|wrote" "$L"/gen_*.txt "$L"/hf_gen.txt "$L"/train_*.txt "$L"/hf_train*.txt "$L"/checkpoint.txt 2>/dev/null | cut -c1-330
grep -hE -A14 "== kernel profile" "$L"/train_*.txt "$L"/gen_*.txt 2>/dev/null | cut -c1-160
grep -hE "^==|^ +[0-9.]+ ms" "$L/hf_profile.txt" 2>/dev/null | head -12 | cut -c1-150
