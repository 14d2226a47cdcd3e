#!/usr/bin/env bash
# A short device call: host overhead per op (default threads and OMP_NUM_THREADS=1), NF4 bits against a CUDA-made
# reference, the huggingface_hub cache fixture, and decode speed beside HF. OUT=dir bash tools/gpu_diag.sh
set -u
export PYTHONUNBUFFERED=1
B="bash .gpu/run.sh Mistral.Benchmarks"
S=$(date +%s)
t() { echo "$1 rc $2 at $(( $(date +%s) - S )) s"; }
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 40 python3 tools/hub/python_cache_fixture.py "$OUT/python_hub_cache.tar.gz" > "$OUT/hub_fixture.txt" 2>&1; t hub $?
timeout 60 $B overhead --device cuda > "$OUT/overhead.txt" 2>&1; t overhead $?
OMP_NUM_THREADS=1 timeout 60 $B overhead --device cuda >> "$OUT/overhead.txt" 2>&1; t overhead_omp1 $?
{ timeout 40 python3 tools/nf4/nf4_reference.py --out /tmp/nf4cuda --device cuda && timeout 60 $B nf4check --fixtures /tmp/nf4cuda --device cuda; } > "$OUT/nf4check.txt" 2>&1; t nf4 $?
timeout 70 $B generate --device cuda --model 7b --batch 1 --fused both --runs 2 --new 32 > "$OUT/gen.txt" 2>&1; t gen $?
timeout 40 python3 tools/hf_bench_generate.py --batch 1 --runs 2 --new 32 > "$OUT/hf_gen.txt" 2>&1; t hf_gen $?
echo "== summary =="
grep -E "rc=|ok=|passed|failed" "$OUT/hub_fixture.txt" | tail -3 | cut -c1-200
grep -hE "us/op|ms/step|^==" "$OUT/overhead.txt" | cut -c1-200
grep -hE "CHECK|OK" "$OUT/nf4check.txt" | cut -c1-200
grep -hE "^mistral.net|^hf trans" "$OUT/gen.txt" "$OUT/hf_gen.txt" | cut -c1-250
