using Mistral.Core.Cuda;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Peft.Lora;

/// <summary>
/// The first step of a LoRA forward in training on CUDA, fused: PEFT's <c>dropout(x.to(float32))</c> over a bfloat16
/// input as one kernel that reads bf16 and writes the kept, scaled float32 values, where libtorch takes a cast, a dropout
/// that also writes a mask, and in backward a masked scale and a cast back. The keep decision of element i is 32 bits of
/// a 64-bit hash of (seed, i / 2) (splitmix64's finaliser; elements 2m and 2m + 1 take its two halves), the seed drawn
/// from libtorch's CUDA generator on the device (no host sync), so backward recomputes the mask instead of storing it,
/// and a checkpointed layer's recomputation — which reseeds the generator as the forward did — draws the same mask. Same
/// distribution as libtorch's dropout (keep with probability 1 − p, kept values times 1/(1 − p) in float32), not the
/// same random stream. Arguments of <c>apply</c>: x (bf16), p (double), the forward kernel from
/// <see cref="TryGetKernel"/> (<see cref="CudaFunction"/>).
/// <para>The same module holds the kernels that make this dropout inside LoRA's float32 products instead of writing it
/// (<see cref="Project"/>, <see cref="ProjectionGradX"/>, <see cref="ProjectionGradA"/>; used by
/// <see cref="LoraInputProjectionFunction"/>, and without a mask by <see cref="LoraOutputCombineFunction"/>): one
/// <c>keep()</c> for all, so every kernel sees the same mask.</para>
/// </summary>
internal sealed class LoraDropoutFunction : autograd.SingleTensorFunction<LoraDropoutFunction>
{
    private const string Source = """
        // The splitmix64 finaliser of (seed, pair): 64 random bits for elements 2·pair (high half) and 2·pair + 1 (low half).
        __device__ __forceinline__ unsigned long long keep_mix(unsigned long long seed, unsigned long long pair)
        {
            unsigned long long z = seed + (pair + 1ull) * 0x9E3779B97F4A7C15ull;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
            return z ^ (z >> 31);
        }

        // Keep element i unless its 32 bits of keep_mix(seed, i / 2) fall below threshold = p · 2^32.
        __device__ __forceinline__ bool keep(unsigned long long seed, unsigned long long i, unsigned int threshold)
        {
            unsigned long long z = keep_mix(seed, i >> 1);
            return (unsigned int)((i & 1ull) ? z : (z >> 32)) >= threshold;
        }

        // keep() of the eight elements i0 .. i0 + 7 (i0 even) from four hashes instead of eight.
        __device__ __forceinline__ void keep8(unsigned long long seed, unsigned long long i0, unsigned int threshold, bool* k)
        {
            #pragma unroll
            for (int m = 0; m < 4; m++)
            {
                unsigned long long z = keep_mix(seed, (i0 >> 1) + m);
                k[2 * m] = (unsigned int)(z >> 32) >= threshold;
                k[2 * m + 1] = (unsigned int)z >= threshold;
            }
        }

        // y = keep ? float(x) * scale : 0, eight elements per thread (16-byte loads, 32-byte stores where aligned).
        extern "C" __global__ void lora_dropout_fwd(const unsigned short* x, const long long* seed_ptr, unsigned int threshold,
            float scale, float* y, long long n)
        {
            long long first = ((long long)blockIdx.x * blockDim.x + threadIdx.x) * 8;
            if (first >= n) return;
            unsigned long long seed = (unsigned long long)seed_ptr[0];
            if (first + 8 <= n && ((((unsigned long long)x | (unsigned long long)y) & 15) == 0))
            {
                uint4 xv = *(const uint4*)(x + first);
                const unsigned short* xs = (const unsigned short*)&xv;
                __align__(16) float o[8];
                bool k[8];
                keep8(seed, first, threshold, k);
                #pragma unroll
                for (int j = 0; j < 8; j++) o[j] = k[j] ? __fmul_rn(bf2f(xs[j]), scale) : 0.0f;
                *(float4*)(y + first) = ((const float4*)o)[0];
                *(float4*)(y + first + 4) = ((const float4*)o)[1];
                return;
            }
            for (long long i = first; i < first + 8 && i < n; i++) y[i] = keep(seed, i, threshold) ? __fmul_rn(bf2f(x[i]), scale) : 0.0f;
        }

        // gx = bf16(keep ? gy * scale : 0): dropout's masked scale and the cast back to the input's dtype in one pass.
        extern "C" __global__ void lora_dropout_bwd(const float* gy, const long long* seed_ptr, unsigned int threshold,
            float scale, unsigned short* gx, long long n)
        {
            long long first = ((long long)blockIdx.x * blockDim.x + threadIdx.x) * 8;
            if (first >= n) return;
            unsigned long long seed = (unsigned long long)seed_ptr[0];
            if (first + 8 <= n && ((((unsigned long long)gy | (unsigned long long)gx) & 15) == 0))
            {
                float4 g0 = *(const float4*)(gy + first);
                float4 g1 = *(const float4*)(gy + first + 4);
                float gs[8] = { g0.x, g0.y, g0.z, g0.w, g1.x, g1.y, g1.z, g1.w };
                __align__(16) unsigned short o[8];
                bool k[8];
                keep8(seed, first, threshold, k);
                #pragma unroll
                for (int j = 0; j < 8; j++) o[j] = f2bf(k[j] ? __fmul_rn(gs[j], scale) : 0.0f);
                *(uint4*)(gx + first) = *(const uint4*)o;
                return;
            }
            for (long long i = first; i < first + 8 && i < n; i++) gx[i] = f2bf(keep(seed, i, threshold) ? __fmul_rn(gy[i], scale) : 0.0f);
        }

        // ---- LoRA's first product with the dropout inside (LoraInputProjectionFunction) ----
        // y[t][k] = keep(seed, t·K + k) ? float(x[t][k]) · scale : 0 exactly as lora_dropout_fwd makes it (threshold 0:
        // every element kept, scale 1: the cast alone), never written out: each kernel makes the part it needs in
        // registers or shared memory. Sums run in float32 with fmaf; the order differs from cuBLAS's, so results agree
        // with the unfused path to float32 rounding, not bit for bit. Shapes: x [rows, K] bf16, A [r, K] float32,
        // g [rows, r] float32; K a multiple of 8, r at most 64, all pointers 16-byte aligned (the host checks).
        __device__ __forceinline__ void lora_y8(const unsigned short* x, long long i0, unsigned long long seed,
            unsigned int threshold, float scale, float* v)
        {
            uint4 xv = *(const uint4*)(x + i0);
            const unsigned short* xh = (const unsigned short*)&xv;
            bool k[8] = { true, true, true, true, true, true, true, true };
            if (threshold != 0u) keep8(seed, i0, threshold, k);
            #pragma unroll
            for (int j = 0; j < 8; j++) v[j] = k[j] ? __fmul_rn(bf2f(xh[j]), scale) : 0.0f;
        }

        // partial[s][t][j] = sum over k in split s of y[t][k] · A[j][k]. Block: 128 rows × 4·rq columns of h
        // (rq = ceil(r / 4), 32·rq threads); thread (tr, tj) owns rows tr + 32·i (i < 4) and columns 4·tj .. 4·tj + 3.
        // Grid: (ceil(rows / 128), splits); split s covers k in [s·k_split, (s + 1)·k_split), k_split a multiple of 32.
        extern "C" __global__ void lora_xa(const unsigned short* x, const long long* seed_ptr, unsigned int threshold, float scale,
            const float* a, float* partial, long long rows, int k_total, int r, int k_split)
        {
            __align__(16) __shared__ float xs[128][36];
            __align__(16) __shared__ float as[64][36];
            const int rq = (r + 3) >> 2;
            const int nthreads = 32 * rq;
            const int tid = threadIdx.x;
            const int tr = tid / rq;
            const int tj = tid - tr * rq;
            const long long row0 = (long long)blockIdx.x * 128;
            const int k_begin = blockIdx.y * k_split;
            const int k_end = k_begin + k_split < k_total ? k_begin + k_split : k_total;
            const unsigned long long seed = threshold != 0u ? (unsigned long long)seed_ptr[0] : 0ull;
            float acc[4][4];
            #pragma unroll
            for (int i = 0; i < 4; i++)
                #pragma unroll
                for (int c = 0; c < 4; c++) acc[i][c] = 0.0f;
            for (int kc = k_begin; kc < k_end; kc += 32)
            {
                for (int idx = tid; idx < 128 * 4; idx += nthreads)
                {
                    const int lr = idx >> 2, seg = idx & 3;
                    const long long row = row0 + lr;
                    const int k = kc + seg * 8;
                    __align__(16) float v[8];
                    if (row < rows && k < k_end) lora_y8(x, row * k_total + k, seed, threshold, scale, v);
                    else
                    {
                        #pragma unroll
                        for (int j = 0; j < 8; j++) v[j] = 0.0f;
                    }
                    *(float4*)&xs[lr][seg * 8] = ((const float4*)v)[0];
                    *(float4*)&xs[lr][seg * 8 + 4] = ((const float4*)v)[1];
                }
                for (int idx = tid; idx < rq * 4 * 8; idx += nthreads)
                {
                    const int j = idx >> 3, seg = idx & 7;
                    const int k = kc + seg * 4;
                    float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                    if (j < r && k < k_end) v = *(const float4*)(a + (long long)j * k_total + k);
                    *(float4*)&as[j][seg * 4] = v;
                }
                __syncthreads();
                for (int kk = 0; kk < 32; kk += 4)
                {
                    float4 xv[4], av[4];
                    #pragma unroll
                    for (int i = 0; i < 4; i++) xv[i] = *(const float4*)&xs[tr + 32 * i][kk];
                    #pragma unroll
                    for (int c = 0; c < 4; c++) av[c] = *(const float4*)&as[tj * 4 + c][kk];
                    #pragma unroll
                    for (int i = 0; i < 4; i++)
                        #pragma unroll
                        for (int c = 0; c < 4; c++)
                        {
                            acc[i][c] = fmaf(xv[i].x, av[c].x, acc[i][c]);
                            acc[i][c] = fmaf(xv[i].y, av[c].y, acc[i][c]);
                            acc[i][c] = fmaf(xv[i].z, av[c].z, acc[i][c]);
                            acc[i][c] = fmaf(xv[i].w, av[c].w, acc[i][c]);
                        }
                }
                __syncthreads();
            }
            #pragma unroll
            for (int i = 0; i < 4; i++)
            {
                const long long row = row0 + tr + 32 * i;
                if (row >= rows) continue;
                #pragma unroll
                for (int c = 0; c < 4; c++)
                {
                    const int j = tj * 4 + c;
                    if (j < r) partial[((long long)blockIdx.y * rows + row) * r + j] = acc[i][c];
                }
            }
        }

        // out[i] = partial[0][i] + partial[1][i] + ... in split order (deterministic).
        extern "C" __global__ void lora_split_sum(const float* partial, int splits, long long n, float* out)
        {
            const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
            if (i >= n) return;
            float s = partial[i];
            for (int k = 1; k < splits; k++) s = __fadd_rn(s, partial[(long long)k * n + i]);
            out[i] = s;
        }

        // gx[t][k] = bf16(keep ? (sum over j of g[t][j] · A[j][k]) · scale : 0): the input gradient through A and the
        // dropout in one pass. Block: 256 threads = 64 groups of 8 columns × 4 groups of 4 rows (16 rows × 512 columns).
        // Grid: (ceil(K / 512), ceil(rows / 16)).
        extern "C" __global__ void lora_grad_x(const float* g, const float* a, const long long* seed_ptr, unsigned int threshold,
            float scale, unsigned short* gx, long long rows, int k_total, int r)
        {
            const int cg = threadIdx.x & 63, rg = threadIdx.x >> 6;
            const int k = (blockIdx.x * 64 + cg) * 8;
            if (k >= k_total) return;
            const long long row0 = (long long)blockIdx.y * 16 + rg * 4;
            if (row0 >= rows) return;
            float acc[4][8];
            #pragma unroll
            for (int i = 0; i < 4; i++)
                #pragma unroll
                for (int c = 0; c < 8; c++) acc[i][c] = 0.0f;
            for (int j = 0; j < r; j++)
            {
                const float4 a0 = *(const float4*)(a + (long long)j * k_total + k);
                const float4 a1 = *(const float4*)(a + (long long)j * k_total + k + 4);
                #pragma unroll
                for (int i = 0; i < 4; i++)
                {
                    const float gv = row0 + i < rows ? g[(row0 + i) * r + j] : 0.0f;
                    acc[i][0] = fmaf(gv, a0.x, acc[i][0]);
                    acc[i][1] = fmaf(gv, a0.y, acc[i][1]);
                    acc[i][2] = fmaf(gv, a0.z, acc[i][2]);
                    acc[i][3] = fmaf(gv, a0.w, acc[i][3]);
                    acc[i][4] = fmaf(gv, a1.x, acc[i][4]);
                    acc[i][5] = fmaf(gv, a1.y, acc[i][5]);
                    acc[i][6] = fmaf(gv, a1.z, acc[i][6]);
                    acc[i][7] = fmaf(gv, a1.w, acc[i][7]);
                }
            }
            const unsigned long long seed = threshold != 0u ? (unsigned long long)seed_ptr[0] : 0ull;
            #pragma unroll
            for (int i = 0; i < 4; i++)
            {
                const long long row = row0 + i;
                if (row >= rows) break;
                const long long i0 = row * k_total + k;
                __align__(16) unsigned short o[8];
                bool kp[8] = { true, true, true, true, true, true, true, true };
                if (threshold != 0u) keep8(seed, i0, threshold, kp);
                #pragma unroll
                for (int c = 0; c < 8; c++) o[c] = f2bf(kp[c] ? __fmul_rn(acc[i][c], scale) : 0.0f);
                *(uint4*)(gx + i0) = *(const uint4*)o;
            }
        }

        // partial[s][j][k] = sum over t in split s of g[t][j] · y[t][k]: A's gradient. Block: 32 groups of 8 columns ×
        // rq groups of 4 rows of A (32·rq threads, 256 columns); rows of x in chunks of 32 staged (y made once per
        // element) in shared memory. Grid: (ceil(K / 256), splits); split s covers t in [s·t_split, (s + 1)·t_split).
        extern "C" __global__ void lora_grad_a(const float* g, const unsigned short* x, const long long* seed_ptr,
            unsigned int threshold, float scale, float* partial, long long rows, int k_total, int r, long long t_split)
        {
            __align__(16) __shared__ float ys[32][264];
            __align__(16) __shared__ float gs[32][68];
            const int rq = (r + 3) >> 2;
            const int nthreads = 32 * rq;
            const int tid = threadIdx.x;
            const int cg = tid & 31, jg = tid >> 5;
            const int k0 = blockIdx.x * 256;
            const long long t_begin = (long long)blockIdx.y * t_split;
            const long long t_end = t_begin + t_split < rows ? t_begin + t_split : rows;
            const unsigned long long seed = threshold != 0u ? (unsigned long long)seed_ptr[0] : 0ull;
            float acc[4][8];
            #pragma unroll
            for (int c = 0; c < 4; c++)
                #pragma unroll
                for (int q = 0; q < 8; q++) acc[c][q] = 0.0f;
            for (long long tc = t_begin; tc < t_end; tc += 32)
            {
                for (int idx = tid; idx < 32 * 32; idx += nthreads)
                {
                    const int lr = idx >> 5, seg = idx & 31;
                    const long long t = tc + lr;
                    const int k = k0 + seg * 8;
                    __align__(16) float v[8];
                    if (t < t_end && k < k_total) lora_y8(x, t * k_total + k, seed, threshold, scale, v);
                    else
                    {
                        #pragma unroll
                        for (int q = 0; q < 8; q++) v[q] = 0.0f;
                    }
                    *(float4*)&ys[lr][seg * 8] = ((const float4*)v)[0];
                    *(float4*)&ys[lr][seg * 8 + 4] = ((const float4*)v)[1];
                }
                for (int idx = tid; idx < 32 * rq * 4; idx += nthreads)
                {
                    const int lr = idx / (rq * 4), j = idx - lr * (rq * 4);
                    const long long t = tc + lr;
                    gs[lr][j] = t < t_end && j < r ? g[t * r + j] : 0.0f;
                }
                __syncthreads();
                for (int lr = 0; lr < 32; lr++)
                {
                    const float4 gv = *(const float4*)&gs[lr][jg * 4];
                    const float4 y0 = *(const float4*)&ys[lr][cg * 8];
                    const float4 y1 = *(const float4*)&ys[lr][cg * 8 + 4];
                    const float gj[4] = { gv.x, gv.y, gv.z, gv.w };
                    #pragma unroll
                    for (int c = 0; c < 4; c++)
                    {
                        acc[c][0] = fmaf(gj[c], y0.x, acc[c][0]);
                        acc[c][1] = fmaf(gj[c], y0.y, acc[c][1]);
                        acc[c][2] = fmaf(gj[c], y0.z, acc[c][2]);
                        acc[c][3] = fmaf(gj[c], y0.w, acc[c][3]);
                        acc[c][4] = fmaf(gj[c], y1.x, acc[c][4]);
                        acc[c][5] = fmaf(gj[c], y1.y, acc[c][5]);
                        acc[c][6] = fmaf(gj[c], y1.z, acc[c][6]);
                        acc[c][7] = fmaf(gj[c], y1.w, acc[c][7]);
                    }
                }
                __syncthreads();
            }
            const int k = k0 + cg * 8;
            if (k >= k_total) return;
            #pragma unroll
            for (int c = 0; c < 4; c++)
            {
                const int j = jg * 4 + c;
                if (j >= r) break;
                float* out = partial + ((long long)blockIdx.y * r + j) * k_total + k;
                *(float4*)out = make_float4(acc[c][0], acc[c][1], acc[c][2], acc[c][3]);
                *(float4*)(out + 4) = make_float4(acc[c][4], acc[c][5], acc[c][6], acc[c][7]);
            }
        }
        """;

    private static readonly CudaModule Module = new(
        "lora_dropout", Source, "lora_dropout_fwd", "lora_dropout_bwd", "lora_xa", "lora_split_sum", "lora_grad_x", "lora_grad_a");

    /// <inheritdoc />
    public override string Name => "LoraDropout";

    /// <summary>The compiled module (for tests of its assembled source).</summary>
    internal static CudaModule Kernels => Module;

    /// <summary>
    /// Whether the fused cast + dropout applies (a bf16 CUDA input, 0 &lt; p &lt; 1, kernels compiled), with the forward
    /// <paramref name="kernel"/> for <see cref="Dropout"/> when it does.
    /// </summary>
    public static bool TryGetKernel(Tensor x, double p, out CudaFunction kernel)
    {
        kernel = default;
        return x.device.type == DeviceType.CUDA && x.dtype == ScalarType.BFloat16 && p > 0 && p < 1
            && Module.TryGetFunction(x, "lora_dropout_fwd", out kernel);
    }

    /// <summary>
    /// The fused cast + dropout of <paramref name="x"/> with the forward <paramref name="kernel"/> from
    /// <see cref="TryGetKernel"/>: through autograd when <paramref name="x"/> needs a gradient,
    /// else directly (the same random draw either way, so a checkpointed layer's two forwards agree).
    /// </summary>
    public static Tensor Dropout(CudaFunction kernel, Tensor x, double p)
    {
        if (x.requires_grad && is_grad_enabled())
        {
            return apply(x, p, kernel);
        }

        using var scope = NewDisposeScope();
        var (y, _) = Forward(kernel, x, p);
        return y.MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var x = (Tensor)vars[0];
        double p = (double)vars[1];
        var kernel = (CudaFunction)vars[2];
        using var scope = NewDisposeScope();
        var (y, seed) = Forward(kernel, x, p);
        // TorchSharp makes the saved variable after forward returns: the seed must outlive this scope.
        ctx.save_for_backward([seed.MoveToOuterDisposeScope()]);
        ctx.save_data("p", p);
        return y.MoveToOuterDisposeScope();
    }

    /// <summary>The float32 dropout of <paramref name="x"/> with a new seed drawn from libtorch's CUDA generator.</summary>
    internal static (Tensor Y, Tensor Seed) Forward(CudaFunction kernel, Tensor x, double p)
    {
        Tensor seed = DrawSeed(x, p);
        return (Replay(kernel, x, seed, p), seed);
    }

    /// <summary>
    /// The seed of a new mask, drawn from libtorch's generator on <paramref name="x"/>'s device (one tiny kernel, no
    /// sync; a checkpointed layer reseeds that generator alike for its forward and recomputation, so both draw the same
    /// seed); with p = 0 an empty tensor and nothing drawn. Every fused path draws its seed here, one per call, so the
    /// path a layer's first forward takes and the one its recomputation takes consume the generator alike.
    /// </summary>
    internal static Tensor DrawSeed(Tensor x, double p) =>
        p > 0 ? randint(long.MaxValue, [1], ScalarType.Int64, x.device) : empty(0, ScalarType.Int64, x.device);

    /// <summary>
    /// <see cref="Project"/> over any leading dimensions with a new seed (<see cref="DrawSeed"/>): h [.., r] and the seed
    /// that makes its mask again. Requires <see cref="CanProject"/>.
    /// </summary>
    internal static (Tensor H, Tensor Seed) ProjectWithNewSeed(Tensor x, double p, Tensor a)
    {
        Tensor seed = DrawSeed(x, p);
        long[] shape = [.. x.shape[..^1], a.size(0)];
        return (Project(x.view(-1, a.size(1)), seed, p, a).view(shape), seed);
    }

    /// <summary>The float32 dropout of <paramref name="x"/> under a given <paramref name="seed"/>: the same values as the forward that drew it.</summary>
    internal static Tensor Replay(CudaFunction kernel, Tensor x, Tensor seed, double p)
    {
        Tensor input = x.is_contiguous() ? x : x.contiguous();
        Tensor y = empty_like(input, ScalarType.Float32);
        Launch(kernel, input, seed, p, y);
        return y;
    }

    /// <summary>Dropout's backward under <paramref name="seed"/>: <c>bf16(keep ? grad · scale : 0)</c>.</summary>
    internal static Tensor Backward(Tensor gradOutput, Tensor seed, double p)
    {
        Tensor grad = gradOutput.is_contiguous() ? gradOutput : gradOutput.contiguous();
        Tensor gradX = empty_like(grad, ScalarType.BFloat16);
        Launch(Module.GetFunction(grad, "lora_dropout_bwd"), grad, seed, p, gradX);
        return gradX;
    }

    /// <summary>
    /// Whether LoRA's first product can run as the fused kernels (<see cref="Project"/>, <see cref="ProjectionGradX"/>,
    /// <see cref="ProjectionGradA"/>): x bfloat16, contiguous, on CUDA, at least one row; A float32, contiguous, [r ≤ 64,
    /// K] on the same device with K a multiple of 8 and x's last dimension; both 16-byte aligned; the kernels compiled.
    /// </summary>
    internal static bool CanProject(Tensor x, Tensor a)
    {
        if (x.device.type != DeviceType.CUDA || x.dtype != ScalarType.BFloat16 || a.dtype != ScalarType.Float32
            || a.dim() != 2 || x.dim() < 1 || !x.is_contiguous() || !a.is_contiguous()
            || !Mistral.Core.Modeling.DeviceComparison.IsSameDevice(x.device, a.device))
        {
            return false;
        }

        long k = a.size(1);
        long r = a.size(0);
        return x.size(-1) == k && k % 8 == 0 && k <= int.MaxValue && r is >= 1 and <= MaxProjectionRank && x.numel() > 0
            && Aligned16(x) && Aligned16(a) && Module.TryGetFunction(x, "lora_xa", out _);
    }

    /// <summary>The largest rank the fused product kernels take (their shared-memory tiles hold 64 rows of A).</summary>
    internal const int MaxProjectionRank = 64;

    // Blocks a launch should reach before it is split further: four per SM of an H100 or H200 (132 SMs), so that an SM
    // has other blocks' warps to run while one waits on its loads (measured on an H100 at two per SM: lora_xa 47 µs and
    // lora_grad_a 46 µs per 7B projection, latency-bound). More splits add partial sums to write and add.
    private const int TargetBlocks = 528;

    /// <summary>
    /// <c>h = dropout(x.to(float32)) · Aᵀ</c> for x [rows, K] (bf16) and A [r, K] (float32): the dropout of
    /// <see cref="Replay"/> under <paramref name="seed"/> (p = 0: the cast alone) made inside the product, never written
    /// out. Returns h [rows, r] float32. Requires <see cref="CanProject"/>.
    /// </summary>
    internal static Tensor Project(Tensor x, Tensor seed, double p, Tensor a)
    {
        var (ps, threshold, scale) = MaskArguments(seed, p);
        return ProjectCore(x, ps, threshold, scale, a);
    }

    /// <summary>
    /// <c>(x.to(float32) · scale) · Aᵀ</c> without a mask, for x [rows, K] bf16 and A [r, K] float32 (LoRA-B's input
    /// gradient <c>(grad · s) · B</c> with A = Bᵀ). Requires <see cref="CanProject"/>. Returns [rows, r] float32.
    /// </summary>
    internal static Tensor ScaledProject(Tensor x, float scale, Tensor a) => ProjectCore(x, IntPtr.Zero, 0, scale, a);

    private static unsafe Tensor ProjectCore(Tensor x, IntPtr ps, uint threshold, float scale, Tensor a)
    {
        using var scope = NewDisposeScope();
        int k = (int)a.size(1);
        int r = (int)a.size(0);
        long rows = x.numel() / k;
        long rowBlocks = (rows + 127) / 128;
        var (splits, split) = Splits(k, rowBlocks);
        int kSplit = (int)split;
        Tensor h = empty([rows, r], ScalarType.Float32, x.device);
        Tensor partial = splits == 1 ? h : empty([splits, rows, r], ScalarType.Float32, x.device);
        var f = Module.GetFunction(x, "lora_xa");
        IntPtr px = CudaFunction.Pointer(x);
        IntPtr pa = CudaFunction.Pointer(a);
        IntPtr pp = CudaFunction.Pointer(partial);
        IntPtr* args = stackalloc IntPtr[10];
        args[0] = (IntPtr)(&px);
        args[1] = (IntPtr)(&ps);
        args[2] = (IntPtr)(&threshold);
        args[3] = (IntPtr)(&scale);
        args[4] = (IntPtr)(&pa);
        args[5] = (IntPtr)(&pp);
        args[6] = (IntPtr)(&rows);
        args[7] = (IntPtr)(&k);
        args[8] = (IntPtr)(&r);
        args[9] = (IntPtr)(&kSplit);
        f.Launch((uint)rowBlocks, (uint)splits, 1, (uint)(32 * ((r + 3) / 4)), args);
        if (splits > 1)
        {
            SplitSum(x, partial, splits, rows * r, h);
        }

        return h.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The input gradient of <see cref="Project"/>: <c>bf16(keep ? (g · A) · scale : 0)</c> for g [rows, r] float32,
    /// as the unfused <c>g.mm(A)</c> followed by <see cref="Backward"/> computes it (to float32 summation order).
    /// Returns [rows, K] bfloat16.
    /// </summary>
    internal static unsafe Tensor ProjectionGradX(Tensor g, Tensor a, Tensor seed, double p)
    {
        int k = (int)a.size(1);
        int r = (int)a.size(0);
        long rows = g.size(0);
        Tensor gradX = empty([rows, k], ScalarType.BFloat16, g.device);
        var f = Module.GetFunction(g, "lora_grad_x");
        IntPtr pg = CudaFunction.Pointer(g);
        IntPtr pa = CudaFunction.Pointer(a);
        IntPtr po = CudaFunction.Pointer(gradX);
        var (ps, threshold, scale) = MaskArguments(seed, p);
        IntPtr* args = stackalloc IntPtr[9];
        args[0] = (IntPtr)(&pg);
        args[1] = (IntPtr)(&pa);
        args[2] = (IntPtr)(&ps);
        args[3] = (IntPtr)(&threshold);
        args[4] = (IntPtr)(&scale);
        args[5] = (IntPtr)(&po);
        args[6] = (IntPtr)(&rows);
        args[7] = (IntPtr)(&k);
        args[8] = (IntPtr)(&r);
        f.Launch((uint)((k + 511) / 512), (uint)((rows + 15) / 16), 1, 256, args);
        return gradX;
    }

    /// <summary>
    /// A's gradient through <see cref="Project"/>: <c>gᵀ · dropout(x.to(float32))</c> for g [rows, r] float32 and x
    /// [rows, K] bfloat16, the dropout made again from <paramref name="seed"/>. Returns [r, K] float32.
    /// </summary>
    internal static Tensor ProjectionGradA(Tensor g, Tensor x, Tensor seed, double p)
    {
        var (ps, threshold, scale) = MaskArguments(seed, p);
        return GradACore(g, x, ps, threshold, scale);
    }

    /// <summary>
    /// <c>gᵀ · (x.to(float32) · scale)</c> without a mask for g [rows, r] float32 and x [rows, K] bf16 (LoRA-B's weight
    /// gradient transposed: <c>hᵀ · (grad · s)</c>). Returns [r, K] float32.
    /// </summary>
    internal static Tensor ScaledGradA(Tensor g, Tensor x, float scale) => GradACore(g, x, IntPtr.Zero, 0, scale);

    private static unsafe Tensor GradACore(Tensor g, Tensor x, IntPtr ps, uint threshold, float scale)
    {
        using var scope = NewDisposeScope();
        int r = (int)g.size(1);
        long rows = g.size(0);
        int k = (int)(x.numel() / rows);
        long columnBlocks = (k + 255) / 256;
        var (splits, tSplit) = Splits(rows, columnBlocks);
        Tensor gradA = empty([r, k], ScalarType.Float32, g.device);
        Tensor partial = splits == 1 ? gradA : empty([splits, r, k], ScalarType.Float32, g.device);
        var f = Module.GetFunction(g, "lora_grad_a");
        IntPtr pg = CudaFunction.Pointer(g);
        IntPtr px = CudaFunction.Pointer(x);
        IntPtr pp = CudaFunction.Pointer(partial);
        IntPtr* args = stackalloc IntPtr[10];
        args[0] = (IntPtr)(&pg);
        args[1] = (IntPtr)(&px);
        args[2] = (IntPtr)(&ps);
        args[3] = (IntPtr)(&threshold);
        args[4] = (IntPtr)(&scale);
        args[5] = (IntPtr)(&pp);
        args[6] = (IntPtr)(&rows);
        args[7] = (IntPtr)(&k);
        args[8] = (IntPtr)(&r);
        args[9] = (IntPtr)(&tSplit);
        f.Launch((uint)columnBlocks, (uint)splits, 1, (uint)(32 * ((r + 3) / 4)), args);
        if (splits > 1)
        {
            SplitSum(g, partial, splits, (long)r * k, gradA);
        }

        return gradA.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// How a launch of <paramref name="otherBlocks"/> blocks cuts its summed dimension of <paramref name="extent"/> into
    /// splits of a multiple of 32 (the kernels' chunk) so that the grid reaches <see cref="TargetBlocks"/>: the number of
    /// splits and each one's size (the last may be shorter).
    /// </summary>
    private static (int Splits, long Size) Splits(long extent, long otherBlocks)
    {
        long splits = Math.Clamp((TargetBlocks + otherBlocks - 1) / otherBlocks, 1, (extent + 31) / 32);
        long size = (((extent + splits - 1) / splits) + 31) / 32 * 32;
        return ((int)((extent + size - 1) / size), size);
    }

    /// <summary>Whether <paramref name="t"/>'s data starts on a 16-byte boundary (the kernels' vector loads need it).</summary>
    internal static bool Aligned16(Tensor t) => (CudaFunction.Pointer(t) & 15) == 0;

    private static unsafe void SplitSum(Tensor onDevice, Tensor partial, int splits, long n, Tensor output)
    {
        var f = Module.GetFunction(onDevice, "lora_split_sum");
        IntPtr pp = CudaFunction.Pointer(partial);
        IntPtr po = CudaFunction.Pointer(output);
        IntPtr* args = stackalloc IntPtr[4];
        args[0] = (IntPtr)(&pp);
        args[1] = (IntPtr)(&splits);
        args[2] = (IntPtr)(&n);
        args[3] = (IntPtr)(&po);
        f.Launch((uint)((n + 255) / 256), 1, 1, 256, args);
    }

    // The mask's kernel arguments: the seed's device address (null for p = 0, where DrawSeed drew none and the kernels
    // read none), the keep threshold (p · 2^32) and the kept values' scale 1 / (1 − p); p = 0: threshold 0 (every element
    // kept), scale 1.
    private static (IntPtr Seed, uint Threshold, float Scale) MaskArguments(Tensor seed, double p) =>
        (p > 0 ? CudaFunction.Pointer(seed) : IntPtr.Zero,
         (uint)Math.Min(uint.MaxValue, Math.Round(p * 4294967296.0)),
         (float)(1.0 / (1.0 - p)));

    /// <inheritdoc />
    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
    {
        double p = (double)ctx.get_data("p");
        Tensor gradX;
        using (var scope = NewDisposeScope())
        {
            Tensor seed = ctx.get_saved_variables()[0];
            gradX = Backward(grad_output, seed, p).MoveToOuterDisposeScope();
        }

        return Mistral.Core.Modeling.GradientHandOff.Return(grad_output, [gradX, null!, null!]);
    }

    private static unsafe void Launch(CudaFunction f, Tensor input, Tensor seed, double p, Tensor output)
    {
        IntPtr pin = CudaFunction.Pointer(input);
        IntPtr pout = CudaFunction.Pointer(output);
        var (pseed, threshold, scale) = MaskArguments(seed, p); // every caller has p > 0
        long n = input.numel();
        IntPtr* args = stackalloc IntPtr[6];
        args[0] = (IntPtr)(&pin);
        args[1] = (IntPtr)(&pseed);
        args[2] = (IntPtr)(&threshold);
        args[3] = (IntPtr)(&scale);
        args[4] = (IntPtr)(&pout);
        args[5] = (IntPtr)(&n);
        if (n > 0)
        {
            f.Launch((uint)((((n + 7) / 8) + 255) / 256), 1, 1, 256, args); // eight elements per thread
        }
    }
}
