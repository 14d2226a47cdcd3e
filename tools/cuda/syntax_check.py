#!/usr/bin/env python3
"""Compiles every NVRTC kernel source of the repository for sm_90 with clang's CUDA front end, without a CUDA toolkit:
catches undefined identifiers, type errors and typos before a GPU run (this machine has no GPU and no NVRTC).

    python3 tools/cuda/syntax_check.py        # exit 1 on any error

The sources are the C# raw string constants that hold `__global__` kernels; each module gets the shared bf16 prelude
(CudaPrelude.Bf16) first, as CudaModule does. A small shim declares the CUDA built-ins the kernels use (types,
intrinsics, thread indices), so a kernel calling anything else fails here as it would in NVRTC.
"""
import glob, os, re, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIM = r'''
#define __device__ __attribute__((device))
#define __global__ __attribute__((global))
#define __shared__ __attribute__((shared))
#define __forceinline__ __attribute__((always_inline)) inline
#define __align__(n) __attribute__((aligned(n)))
struct __attribute__((aligned(8))) uint2 { unsigned int x, y; };
struct __attribute__((aligned(16))) uint4 { unsigned int x, y, z, w; };
struct __attribute__((aligned(16))) float4 { float x, y, z, w; };
struct __attribute__((aligned(8))) float2 { float x, y; };
__device__ float4 make_float4(float, float, float, float);
__device__ float2 make_float2(float, float);
struct __uint3 { unsigned int x, y, z; };
extern __device__ const __uint3 threadIdx, blockIdx, blockDim, gridDim;
__device__ float __fmul_rn(float, float); __device__ float __fadd_rn(float, float); __device__ float __fdiv_rn(float, float);
__device__ float __fsub_rn(float, float); __device__ float __fmaf_rn(float, float, float); __device__ float __fsqrt_rn(float);
__device__ float __expf(float); __device__ float expf(float); __device__ float rsqrtf(float); __device__ float sqrtf(float);
__device__ float fmaf(float, float, float); __device__ float fmaxf(float, float); __device__ float fminf(float, float);
__device__ float fabsf(float); __device__ float logf(float); __device__ float __logf(float);
__device__ double sqrt(double);
__device__ float __shfl_xor_sync(unsigned int, float, int); __device__ float __shfl_down_sync(unsigned int, float, int);
__device__ void __syncthreads(); __device__ void __trap();
__device__ float __int_as_float(int); __device__ float __uint_as_float(unsigned int); __device__ unsigned int __float_as_uint(float);
__device__ int __float_as_int(float);
'''

def sources():
    prelude = None
    found = []
    for path in sorted(glob.glob(os.path.join(ROOT, "src", "**", "*.cs"), recursive=True)):
        text = open(path, encoding="utf-8").read()
        for m in re.finditer(r'(?:const string|string)\s+(\w+)\s*=\s*"""\n(.*?)\n\s*""";', text, re.S):
            name, body = m.group(1), m.group(2)
            if path.endswith("CudaPrelude.cs") and name == "Bf16":
                prelude = body
            elif "__global__" in body or "__device__" in body:
                found.append((os.path.relpath(path, ROOT), name, body))
    return prelude, found

def modules():
    """(prelude, [(path, body)]): each NVRTC module's source as CudaModule gets it, without the prelude. A module that
    joins two constants (FusedNf4Dequantizer: KernelSource + Nf4Gemv.Source) is one entry."""
    prelude, found = sources()
    by_file = {}
    for path, name, body in found:
        by_file.setdefault(path, []).append(body)
    gemv = [b for p, n, b in found if p.endswith("Nf4Gemv.cs")]
    return prelude, [(path, "\n\n".join(bodies + (gemv if path.endswith("FusedNf4Dequantizer.cs") else [])))
                     for path, bodies in by_file.items() if not path.endswith("Nf4Gemv.cs")]

def main():
    prelude, assembled = modules()
    if prelude is None:
        print("CudaPrelude.Bf16 not found"); return 1
    failures = 0
    for path, body in assembled:
        with tempfile.NamedTemporaryFile("w", suffix=".cu", delete=False) as f:
            f.write(SHIM + "\n" + prelude + "\n\n" + body)
        r = subprocess.run(["clang-14", "-x", "cuda", "--cuda-device-only", "--cuda-gpu-arch=sm_80", "-nocudainc", "-nocudalib",
                            "-fsyntax-only", "-Wno-unknown-cuda-version", f.name], capture_output=True, text=True)
        os.unlink(f.name)
        print(f"{'OK  ' if r.returncode == 0 else 'FAIL'} {path} ({body.count('__global__')} kernels)")
        for l in r.stderr.splitlines()[:30] if r.returncode else []:
            print("   ", l)
        failures += r.returncode != 0
    return 1 if failures else 0

if __name__ == "__main__":
    sys.exit(main())
