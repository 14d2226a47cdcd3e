#!/usr/bin/env bash
# One device call: the GPU test lane, then Mistral.NET and HF side by side (issue 13's table), then profiles while
# time is left. Usage on the GPU machine (after bash ../shared/gpu/pack.sh benchmarks/Mistral.Benchmarks/...):
#   OUT=/some/dir bash tools/gpu_bench_all.sh [budget_seconds]
# Writes one log per part under $OUT and prints a summary last.
set -u
export PYTHONUNBUFFERED=1
budget=${1:-560}
S=$(date +%s)
B="bash .gpu/run.sh Mistral.Benchmarks"
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
case "$gpu" in *H200*) peak="--peak-gbs 4800 --peak-tflops 989";; *) peak="--peak-gbs 3350 --peak-tflops 989";; esac
left() { echo $(( budget - ($(date +%s) - S) )); }
step() { # name timeout command...
  local name=$1 t=$2; shift 2
  local l; l=$(left)
  if [ "$l" -lt 25 ]; then echo "skipped $name (budget)"; return; fi
  [ "$t" -gt "$l" ] && t=$l
  timeout "$t" "$@" > "$OUT/$name.txt" 2>&1; echo "$name rc $? at $(( $(date +%s) - S )) s"
}
echo "$gpu"
[ -f tools/hub/python_cache_fixture.py ] && step hub_fixture 40 python3 tools/hub/python_cache_fixture.py "$OUT/python_hub_cache.tar.gz"
# NF4 bits are compared with a reference made on this device (the double-quant offset's float32 mean depends on it).
step nf4_reference 40 python3 tools/nf4/nf4_reference.py --out /tmp/nf4cuda --device cuda
step gpucheck 150 $B gpucheck --device cuda --nf4 /tmp/nf4cuda
step gen_bf16 110 $B generate --device cuda --model 7b --batch 1,8 --fused both --runs 2 --new 64 $peak
step hf_gen 80 python3 tools/hf_bench_generate.py --runs 2 --new 64
step train_qlora 90 $B train --device cuda --mode qlora --breakdown true $peak
step hf_train 80 python3 tools/hf_bench_train.py
step gen_nf4 130 $B generate --device cuda --model 7b --quant nf4 --batch 1,8 --fused both --runs 2 --new 64 $peak
step train_lora 80 $B train --device cuda --mode lora --breakdown true $peak
step gen_thin 40 $B generate --device cuda --model thin --batch 1 --fused both --runs 3 $peak
step train_qlora_unfused 90 $B train --device cuda --mode qlora --fused false $peak
step hf_profile 90 python3 tools/hf_profile.py --what train
echo "== summary ($gpu) =="
tail -3 "$OUT/hub_fixture.txt" 2>/dev/null | cut -c1-200
grep -hE "PASS|FAIL|Unhandled|Exception" "$OUT/gpucheck.txt" | cut -c1-220
grep -hE "^mistral.net|^hf |fused kernels:|model FLOP|breakdown|Unhandled" "$OUT"/gen_*.txt "$OUT"/hf_gen.txt "$OUT"/train_*.txt "$OUT"/hf_train.txt 2>/dev/null | cut -c1-330
grep -hE "^==|^ +[0-9.]+ ms" "$OUT/hf_profile.txt" 2>/dev/null | head -12 | cut -c1-150
