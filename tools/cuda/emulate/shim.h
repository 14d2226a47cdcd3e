// Host emulation of the CUDA built-ins the repository's NVRTC kernels use, so the kernels' indexing, vector paths,
// shared memory and warp reductions can be run and checked on a machine without a GPU (tools/cuda/emulate_check.py).
// Blocks run one after another; a block's threads run either one after another (kernels without barriers or shuffles)
// or as real host threads with block and warp barriers (Launch::Threads). Float arithmetic is IEEE single precision
// with round-to-nearest like the _rn intrinsics; __expf is expf (the GPU's fast exponential differs in the last bits).
#pragma once
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#define __device__
#define __global__
#define __forceinline__ inline
#define __shared__ static
#define __align__(n) alignas(n)

struct alignas(8) uint2 { unsigned int x, y; };
struct alignas(16) uint4 { unsigned int x, y, z, w; };
struct alignas(16) float4 { float x, y, z, w; };
inline float4 make_float4(float a, float b, float c, float d) { return float4{a, b, c, d}; }
struct dim3e { unsigned int x = 0, y = 0, z = 0; };

inline thread_local dim3e threadIdx;
inline dim3e blockIdx;
inline dim3e blockDim;
alignas(16) inline unsigned char dyn_shared[64 * 1024];

inline float __fmul_rn(float a, float b) { volatile float r = a * b; return r; }
inline float __fadd_rn(float a, float b) { volatile float r = a + b; return r; }
inline float __fdiv_rn(float a, float b) { volatile float r = a / b; return r; }
inline float __fsqrt_rn(float x) { volatile float r = std::sqrt(x); return r; }
inline float __expf(float x) { return std::exp(x); }
inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline float __uint_as_float(unsigned int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline unsigned int __float_as_uint(float f) { unsigned int i; std::memcpy(&i, &f, 4); return i; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }

// Threaded blocks: a barrier for the block and one per warp, and a warp's exchange slots for shuffles.
struct BlockSync
{
    std::unique_ptr<std::barrier<>> block;
    std::vector<std::unique_ptr<std::barrier<>>> warps;
    std::vector<float> slots;
};
inline BlockSync* sync_state = nullptr;

// A device-side trap: the emulation throws, so a check can expect it.
struct device_trap {};
inline void __trap() { throw device_trap{}; }
inline void __syncthreads() { if (sync_state) sync_state->block->arrive_and_wait(); }
inline float __shfl_xor_sync(unsigned int, float v, int off)
{
    if (!sync_state) return v; // one thread per block: the kernels only shuffle in reductions
    unsigned int t = threadIdx.x;
    auto& bar = *sync_state->warps[t / 32];
    sync_state->slots[t] = v;
    bar.arrive_and_wait();
    float r = sync_state->slots[(t & ~31u) | ((t & 31u) ^ (unsigned int)off)];
    bar.arrive_and_wait();
    return r;
}

enum class Launch { Sequential, Threads };

// Runs kernel() over grid (gx, gy) × block bx, as the CUDA launch would.
inline void launch(Launch mode, unsigned gx, unsigned gy, unsigned bx, const std::function<void()>& kernel)
{
    blockDim = dim3e{bx, 1, 1};
    for (unsigned y = 0; y < gy; y++)
        for (unsigned x = 0; x < gx; x++)
        {
            blockIdx = dim3e{x, y, 0};
            if (mode == Launch::Sequential)
            {
                for (unsigned t = 0; t < bx; t++) { threadIdx = dim3e{t, 0, 0}; kernel(); }
                continue;
            }
            BlockSync s;
            s.block = std::make_unique<std::barrier<>>(bx);
            for (unsigned w = 0; w < (bx + 31) / 32; w++) s.warps.push_back(std::make_unique<std::barrier<>>(std::min(32u, bx - 32 * w)));
            s.slots.resize(bx);
            sync_state = &s;
            std::vector<std::thread> threads;
            for (unsigned t = 0; t < bx; t++) threads.emplace_back([t, &kernel] { threadIdx = dim3e{t, 0, 0}; kernel(); });
            for (auto& th : threads) th.join();
            sync_state = nullptr;
        }
}
