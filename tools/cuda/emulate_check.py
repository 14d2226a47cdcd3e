#!/usr/bin/env python3
"""Runs the repository's NVRTC kernels on the CPU: every kernel source (as CudaModule assembles it, prelude first) is
compiled as host C++ against tools/cuda/emulate/shim.h (blocks in turn, threads in turn or as host threads with
block and warp barriers), and tools/cuda/emulate/check.cpp runs them against element-wise references — vector paths,
tails, misaligned pointers, strided rows, the NF4 shared codebook, the decoding attention's warp reductions.

    python3 tools/cuda/emulate_check.py      # exit 1 on any failure; needs clang++-14 (C++20)

It checks the kernels' logic, not the GPU's arithmetic (__expf is expf here); the GPU test lane
(`Mistral.Benchmarks gpucheck`) checks them on the device against libtorch.
"""
import os, subprocess, sys, tempfile
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from syntax_check import modules

NAMESPACES = {"FusedOps.cs": "m_fused", "LoraCombineFunction.cs": "m_lora_combine", "LoraDropoutFunction.cs": "m_lora_dropout",
              "FusedNf4Dequantizer.cs": "m_nf4", "FlatAdamW.cs": "m_adamw", "TokenEmbedding.cs": "m_embed",
              "GradientClipping.cs": "m_gradnorm"}

def main():
    prelude, assembled = modules()
    parts = []
    for path, body in assembled:
        ns = NAMESPACES.get(os.path.basename(path))
        if ns is None:
            print(f"no namespace for {path}: add it to NAMESPACES and a check to check.cpp"); return 1
        body = body.replace("extern __shared__ float scores[];", "float* scores = (float*)dyn_shared;")
        parts.append(f"namespace {ns} {{\n{prelude}\n\n{body}\n}}\n")
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "emulate")
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "kernels.inc"), "w") as f:
            f.write("\n".join(parts))
        exe = os.path.join(tmp, "check")
        r = subprocess.run(["clang++-14", "-std=c++20", "-O1", "-pthread", "-w", "-I", here, "-I", tmp,
                            os.path.join(here, "check.cpp"), "-o", exe], capture_output=True, text=True)
        if r.returncode != 0:
            print(r.stderr[:6000]); return 1
        r = subprocess.run([exe], capture_output=True, text=True, timeout=600)
        print(r.stdout, end="")
        print(r.stderr, end="")
        return r.returncode

sys.exit(main())
