using Mistral.Core.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Core.Cuda;

/// <summary>
/// Fused bfloat16 CUDA kernels: RMSNorm and the SiLU-gated product (forward and, through autograd functions, backward,
/// for training), and for forwards without autograd (generation, evaluation) the rotary embedding with the q/k/v split
/// into head-major layout. Each computes what the libtorch ops it replaces
/// compute, rounding to bfloat16 wherever they round (RMSNorm's float32 sum of squares may differ in summation order).
/// Every method returns null when it does not apply (not CUDA, not bfloat16, a gradient it cannot give, NVRTC missing),
/// and the caller runs its libtorch ops.
/// </summary>
internal static class FusedOps
{
    private const string Source = """
        // out[r, :] = w * bf16(x[r, :] * rsqrt(mean(x[r, :]^2) + eps)): HF's MistralRMSNorm in bf16.
        extern "C" __global__ void rms_norm_bf16(const unsigned short* x, const unsigned short* w, unsigned short* out, int cols, float eps)
        {
            __shared__ float partial[32];
            const unsigned short* xr = x + (long long)blockIdx.x * cols;
            unsigned short* o = out + (long long)blockIdx.x * cols;
            float s = 0.0f;
            for (int i = threadIdx.x; i < cols; i += blockDim.x) { float v = bf2f(xr[i]); s = fmaf(v, v, s); }
            for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
            if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = s;
            __syncthreads();
            if (threadIdx.x < 32)
            {
                float t = threadIdx.x < (blockDim.x >> 5) ? partial[threadIdx.x] : 0.0f;
                for (int off = 16; off > 0; off >>= 1) t += __shfl_xor_sync(0xffffffffu, t, off);
                if (threadIdx.x == 0) partial[0] = t;
            }
            __syncthreads();
            float r = rsqrtf(__fadd_rn(__fdiv_rn(partial[0], (float)cols), eps));
            for (int i = threadIdx.x; i < cols; i += blockDim.x)
            {
                unsigned short normed = f2bf(__fmul_rn(bf2f(xr[i]), r));
                o[i] = f2bf(__fmul_rn(bf2f(w[i]), bf2f(normed)));
            }
        }

        // q/k/v rows of [B*T, *] (row strides given) -> q [B, H, T, D] and k [B, KV, T, D] rotated, v [B, KV, T, D] copied.
        // rot(x)[j] = x[j]*cos[j] - x[j+D/2]*sin[j]; rot(x)[j+D/2] = x[j+D/2]*cos[j+D/2] + x[j]*sin[j+D/2],
        // each product and the sum rounded to bf16 as libtorch's bf16 ops round. Grid (B*T, H + 2*KV), D/2 threads.
        extern "C" __global__ void rope_split_bf16(const unsigned short* qs, const unsigned short* ks, const unsigned short* vs,
            long long q_stride, long long k_stride, long long v_stride, const unsigned short* cos, const unsigned short* sin,
            unsigned short* q, unsigned short* k, unsigned short* v, int T, int H, int KV, int D, int kv_len, const long long* slots)
        {
            // k and v are [B, KV, kv_len, D]: kv_len = T with slot = t, or a KV cache's capacity with slot = slots[t].
            int row = blockIdx.x;
            int head = blockIdx.y;
            int j = threadIdx.x;
            int half = D / 2;
            int b = row / T;
            int t = row % T;
            long long slot = slots ? slots[t] : t;
            const unsigned short* src;
            unsigned short* dst;
            if (head < H) { src = qs + row * q_stride + head * D; dst = q + (((long long)b * H + head) * T + t) * D; }
            else if (head < H + KV) { int h = head - H; src = ks + row * k_stride + h * D; dst = k + (((long long)b * KV + h) * kv_len + slot) * D; }
            else { int h = head - H - KV; src = vs + row * v_stride + h * D; dst = v + (((long long)b * KV + h) * kv_len + slot) * D; dst[j] = src[j]; dst[j + half] = src[j + half]; return; }
            const unsigned short* c = cos + (long long)row * D;
            const unsigned short* s = sin + (long long)row * D;
            float x1 = bf2f(src[j]);
            float x2 = bf2f(src[j + half]);
            float a0 = bf2f(f2bf(__fmul_rn(x1, bf2f(c[j]))));
            float b0 = bf2f(f2bf(__fmul_rn(-x2, bf2f(s[j]))));
            float a1 = bf2f(f2bf(__fmul_rn(x2, bf2f(c[j + half]))));
            float b1 = bf2f(f2bf(__fmul_rn(x1, bf2f(s[j + half]))));
            dst[j] = f2bf(__fadd_rn(a0, b0));
            dst[j + half] = f2bf(__fadd_rn(a1, b1));
        }

        // The input gradient of training's rotary embedding (rope_split_bf16 over one projection, KV = 0), as autograd
        // forms it through HF's ops (x·cos + cat(−x2, x1)·sin): g·cos rounded to bf16,
        // plus g·sin rounded to bf16 and moved back through cat, neg and the two slices (j takes g[j+D/2]·sin[j+D/2],
        // j+D/2 takes −g[j]·sin[j]), summed in bf16 with the zero-filled gradient of the other slice (so a zero is +0).
        // g is [B, H, T, D] contiguous; gx [B*T, H*D] contiguous.
        extern "C" __global__ void rope_bwd_bf16(const unsigned short* g, const unsigned short* cos, const unsigned short* sin,
            unsigned short* gx, int T, int H, int D)
        {
            int row = blockIdx.x;
            int head = blockIdx.y;
            int j = threadIdx.x;
            int half = D / 2;
            int b = row / T;
            int t = row % T;
            const unsigned short* src = g + (((long long)b * H + head) * T + t) * D;
            unsigned short* dst = gx + ((long long)row * H + head) * D;
            const unsigned short* c = cos + (long long)row * D;
            const unsigned short* s = sin + (long long)row * D;
            float g1 = bf2f(src[j]);
            float g2 = bf2f(src[j + half]);
            float p0 = bf2f(f2bf(__fmul_rn(g1, bf2f(c[j]))));
            float q0 = bf2f(f2bf(__fmul_rn(g2, bf2f(s[j + half]))));
            float p1 = bf2f(f2bf(__fmul_rn(g2, bf2f(c[j + half]))));
            float q1 = bf2f(f2bf(__fmul_rn(g1, bf2f(s[j]))));
            // + 0: autograd also adds the other slice's zero-filled gradient, which turns a −0 sum into +0.
            dst[j] = f2bf(__fadd_rn(__fadd_rn(p0, q0), 0.0f));
            dst[j + half] = f2bf(__fadd_rn(__fadd_rn(p1, -q1), 0.0f));
        }

        // RMSNorm backward with a frozen weight: the gradient of x through HF's ops (mul by w in bf16, cast, x·r, rsqrt,
        // mean of squares), one block per row.
        extern "C" __global__ void rms_norm_bwd_bf16(const unsigned short* x, const unsigned short* w, const unsigned short* gy,
            unsigned short* gx, int cols, float eps)
        {
            __shared__ float partial[2][32];
            const unsigned short* xr = x + (long long)blockIdx.x * cols;
            const unsigned short* gr = gy + (long long)blockIdx.x * cols;
            unsigned short* o = gx + (long long)blockIdx.x * cols;
            float sq = 0.0f;
            float dot = 0.0f;
            for (int i = threadIdx.x; i < cols; i += blockDim.x)
            {
                float v = bf2f(xr[i]);
                float gn = bf2f(f2bf(__fmul_rn(bf2f(gr[i]), bf2f(w[i]))));
                sq = fmaf(v, v, sq);
                dot = fmaf(gn, v, dot);
            }
            for (int off = 16; off > 0; off >>= 1) { sq += __shfl_xor_sync(0xffffffffu, sq, off); dot += __shfl_xor_sync(0xffffffffu, dot, off); }
            if ((threadIdx.x & 31) == 0) { partial[0][threadIdx.x >> 5] = sq; partial[1][threadIdx.x >> 5] = dot; }
            __syncthreads();
            if (threadIdx.x < 32)
            {
                float a = threadIdx.x < (blockDim.x >> 5) ? partial[0][threadIdx.x] : 0.0f;
                float b = threadIdx.x < (blockDim.x >> 5) ? partial[1][threadIdx.x] : 0.0f;
                for (int off = 16; off > 0; off >>= 1) { a += __shfl_xor_sync(0xffffffffu, a, off); b += __shfl_xor_sync(0xffffffffu, b, off); }
                if (threadIdx.x == 0) { partial[0][0] = a; partial[1][0] = b; }
            }
            __syncthreads();
            float r = rsqrtf(__fadd_rn(__fdiv_rn(partial[0][0], (float)cols), eps));
            // d/dx of x·r(x): r·g − x·r³·(Σ g·x)/cols
            float coef = -partial[1][0] * r * r * r / (float)cols;
            for (int i = threadIdx.x; i < cols; i += blockDim.x)
            {
                float gn = bf2f(f2bf(__fmul_rn(bf2f(gr[i]), bf2f(w[i]))));
                o[i] = f2bf(fmaf(gn, r, coef * bf2f(xr[i])));
            }
        }

        // Backward of out = bf16(bf16(silu(g)) * u): gg = bf16(bf16(go*u) * silu'(g)), gu = bf16(go * bf16(silu(g))).
        __device__ __forceinline__ void silu_mul_bwd_one(unsigned short g, unsigned short u, unsigned short go,
            unsigned short* gg, unsigned short* gu)
        {
            float gv = bf2f(g);
            float sig = __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-gv)));
            float silu = bf2f(f2bf(__fdiv_rn(gv, __fadd_rn(1.0f, expf(-gv)))));
            float gov = bf2f(go);
            float gs = bf2f(f2bf(__fmul_rn(gov, bf2f(u))));
            *gg = f2bf(gs * sig * (1.0f + gv * (1.0f - sig)));
            *gu = f2bf(__fmul_rn(gov, silu));
        }

        // Eight elements per thread: 16-byte loads and stores where the pointers allow, element by element otherwise.
        extern "C" __global__ void silu_mul_bwd_bf16(const unsigned short* g, const unsigned short* u, const unsigned short* go,
            unsigned short* gg, unsigned short* gu, long long n)
        {
            long long first = ((long long)blockIdx.x * blockDim.x + threadIdx.x) * 8;
            if (first >= n) return;
            bool vec = first + 8 <= n && ((((unsigned long long)g | (unsigned long long)u | (unsigned long long)go
                | (unsigned long long)gg | (unsigned long long)gu) & 15) == 0);
            if (vec)
            {
                uint4 gv = *(const uint4*)(g + first);
                uint4 uv = *(const uint4*)(u + first);
                uint4 ov = *(const uint4*)(go + first);
                __align__(16) unsigned short a[8];
                __align__(16) unsigned short b[8];
                const unsigned short* gs = (const unsigned short*)&gv;
                const unsigned short* us = (const unsigned short*)&uv;
                const unsigned short* os = (const unsigned short*)&ov;
                #pragma unroll
                for (int j = 0; j < 8; j++) silu_mul_bwd_one(gs[j], us[j], os[j], &a[j], &b[j]);
                *(uint4*)(gg + first) = *(const uint4*)a;
                *(uint4*)(gu + first) = *(const uint4*)b;
                return;
            }
            for (long long i = first; i < first + 8 && i < n; i++) silu_mul_bwd_one(g[i], u[i], go[i], &gg[i], &gu[i]);
        }

        // out[r, i] = bf16(bf16(silu(g[r, i])) * u[r, i]) (silu_mul_one, in the prelude); g and u rows with their own strides.
        // Eight consecutive elements of one row per thread (16-byte loads and stores) when the row length, the strides and
        // the pointers allow it; element by element otherwise.
        extern "C" __global__ void silu_mul_bf16(const unsigned short* g, const unsigned short* u, long long g_stride, long long u_stride,
            unsigned short* out, long long rows, int cols)
        {
            long long first = ((long long)blockIdx.x * blockDim.x + threadIdx.x) * 8;
            long long n = rows * cols;
            if (first >= n) return;
            bool vec = (cols & 7) == 0 && (g_stride & 7) == 0 && (u_stride & 7) == 0
                && ((((unsigned long long)g | (unsigned long long)u | (unsigned long long)out) & 15) == 0);
            if (vec)
            {
                long long r = first / cols;
                int c = (int)(first - r * cols);
                uint4 gv = *(const uint4*)(g + r * g_stride + c);
                uint4 uv = *(const uint4*)(u + r * u_stride + c);
                __align__(16) unsigned short o[8];
                const unsigned short* gs = (const unsigned short*)&gv;
                const unsigned short* us = (const unsigned short*)&uv;
                #pragma unroll
                for (int j = 0; j < 8; j++) o[j] = silu_mul_one(gs[j], us[j]);
                *(uint4*)(out + first) = *(const uint4*)o;
                return;
            }
            for (long long i = first; i < first + 8 && i < n; i++)
            {
                long long r = i / cols;
                int c = (int)(i % cols);
                out[i] = silu_mul_one(g[r * g_stride + c], u[r * u_stride + c]);
            }
        }

        // Attention of one new token per row over the cached keys (decoding): grid (B, H), blockDim = D·R threads (D a
        // multiple of 32, R key groups). Query head h reads key/value head h / (H / KV) in place (no repeated K/V).
        // Scores in float32 (q·k · scale, masked to −inf; each warp takes every (blockDim/32)-th key), softmax in float32,
        // probabilities times V summed in float32 (thread (g, d) over keys g, g + R, ..., then the R partial sums in
        // order), one bf16 rounding at the end; a row whose keys are all masked gets zeros (as libtorch's SDPA gives).
        // q [B, H, D] (strides qb, qh); k, v [B, KV, S, D] (strides kb, kh, kr; D contiguous); mask bool [B or 1, S]
        // (stride mb, 0 when shared); out [B, H·D]. Dynamic shared memory: S scores, then R·D partial sums.
        #define NEG_INF __int_as_float(0xff800000)
        extern "C" __global__ void decode_attention_bf16(const unsigned short* q, long long qb, long long qh,
            const unsigned short* k, const unsigned short* v, long long kb, long long kh, long long kr,
            const unsigned char* mask, long long mb, unsigned short* out, int H, int KV, int S, int D, float scale)
        {
            extern __shared__ float scores[];
            __shared__ float red[32];
            int row = blockIdx.x;
            int h = blockIdx.y;
            int kvh = h / (H / KV);
            int tid = threadIdx.x;
            int lane = tid & 31;
            int warp = tid >> 5;
            int warps = blockDim.x >> 5;
            const unsigned short* qr = q + row * qb + h * qh;
            const unsigned short* kbase = k + row * kb + kvh * kh;
            const unsigned short* vbase = v + row * kb + kvh * kh;
            const unsigned char* m = mask + row * mb;
            // Each warp takes keys warp, warp + warps, ...; each lane D/32 dimensions.
            for (int j = warp; j < S; j += warps)
            {
                const unsigned short* kr_ = kbase + j * kr;
                float dot = 0.0f;
                for (int d = lane; d < D; d += 32) dot = fmaf(bf2f(qr[d]), bf2f(kr_[d]), dot);
                for (int off = 16; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
                if (lane == 0) scores[j] = m[j] ? dot * scale : NEG_INF;
            }
            __syncthreads();
            float mx = NEG_INF;
            for (int j = tid; j < S; j += blockDim.x) mx = fmaxf(mx, scores[j]);
            for (int off = 16; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
            if (lane == 0) red[warp] = mx;
            __syncthreads();
            if (warp == 0)
            {
                float t = lane < warps ? red[lane] : NEG_INF;
                for (int off = 16; off > 0; off >>= 1) t = fmaxf(t, __shfl_xor_sync(0xffffffffu, t, off));
                if (lane == 0) red[0] = t;
            }
            __syncthreads();
            mx = red[0];
            __syncthreads();
            float sum = 0.0f;
            for (int j = tid; j < S; j += blockDim.x)
            {
                float e = mx == NEG_INF ? 0.0f : __expf(scores[j] - mx);
                scores[j] = e;
                sum += e;
            }
            for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
            if (lane == 0) red[warp] = sum;
            __syncthreads();
            if (warp == 0)
            {
                float t = lane < warps ? red[lane] : 0.0f;
                for (int off = 16; off > 0; off >>= 1) t += __shfl_xor_sync(0xffffffffu, t, off);
                if (lane == 0) red[0] = t;
            }
            __syncthreads();
            float total = red[0];
            int groups = blockDim.x / D;
            int g = tid / D;
            int d = tid - g * D;
            float acc = 0.0f;
            for (int j = g; j < S; j += groups) acc = fmaf(scores[j], bf2f(vbase[j * kr + d]), acc);
            float* partial = scores + S;
            partial[tid] = acc;
            __syncthreads();
            if (g == 0)
            {
                float sum_v = 0.0f;
                for (int i = 0; i < groups; i++) sum_v += partial[i * D + d];
                out[((long long)row * H + h) * D + d] = f2bf(total > 0.0f ? sum_v / total : 0.0f);
            }
        }

        // Decoding projections, x [M, K] (M ≤ 8, contiguous) times up to three weights [n_i, K] in one launch, one warp per
        // output feature, 16-byte loads (K a multiple of 8), float32 sums, one bf16 rounding (what linear gives, up to the
        // summation order). Plain: y[m, r] over the features of w0, then w1, then w2 (q, k and v side by side, row
        // stride ldy). silu_up (n1 = n0, no w2): y[m, r] = bf16(bf16(silu(bf16(x·w0[r]))) · bf16(x·w1[r])), the MLP's gated
        // product without writing gate and up. With resid (same layout as y), y = bf16(resid + bf16(projection)): the
        // decoder layer's residual add in the same pass.
        extern "C" __global__ void gemv_bf16(const unsigned short* x, int M, int K, const unsigned short* w0, int n0,
            const unsigned short* w1, int n1, const unsigned short* w2, int n2, unsigned short* y, int ldy, int silu_up,
            const unsigned short* resid)
        {
            int lane = threadIdx.x & 31;
            long long r = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
            if (r >= (silu_up ? n0 : (long long)n0 + n1 + n2)) return;
            const unsigned short* wa = silu_up || r < n0 ? w0 + r * K : r < (long long)n0 + n1 ? w1 + (r - n0) * K : w2 + (r - n0 - n1) * K;
            const unsigned short* wb = silu_up ? w1 + r * K : wa;
            float acc[8];
            float accb[8];
            #pragma unroll
            for (int m = 0; m < 8; m++) { acc[m] = 0.0f; accb[m] = 0.0f; }
            #pragma unroll 4
            for (int k0 = lane * 8; k0 < K; k0 += 256)
            {
                uint4 av = *(const uint4*)(wa + k0);
                uint4 bv = silu_up ? *(const uint4*)(wb + k0) : av;
                unsigned int aw[4] = { av.x, av.y, av.z, av.w };
                unsigned int bw[4] = { bv.x, bv.y, bv.z, bv.w };
                #pragma unroll
                for (int m = 0; m < 8; m++)
                {
                    if (m < M)
                    {
                        uint4 xv = *(const uint4*)(x + (long long)m * K + k0);
                        unsigned int xw[4] = { xv.x, xv.y, xv.z, xv.w };
                        #pragma unroll
                        for (int e = 0; e < 4; e++)
                        {
                            float x0 = __uint_as_float(xw[e] << 16);
                            float x1 = __uint_as_float(xw[e] & 0xffff0000u);
                            acc[m] = fmaf(x0, __uint_as_float(aw[e] << 16), acc[m]);
                            acc[m] = fmaf(x1, __uint_as_float(aw[e] & 0xffff0000u), acc[m]);
                            if (silu_up)
                            {
                                accb[m] = fmaf(x0, __uint_as_float(bw[e] << 16), accb[m]);
                                accb[m] = fmaf(x1, __uint_as_float(bw[e] & 0xffff0000u), accb[m]);
                            }
                        }
                    }
                }
            }

            gemv_store(acc, accb, M, lane, silu_up, y, ldy, r, resid);
        }
        """;

    private static readonly CudaModule Module = new("mistral_fused", Source, "rms_norm_bf16", "rope_split_bf16", "rope_bwd_bf16", "silu_mul_bf16", "rms_norm_bwd_bf16", "silu_mul_bwd_bf16", "decode_attention_bf16", "gemv_bf16");

    /// <summary>Why the fused kernels are or are not in use.</summary>
    public static string Status => Module.Status;

    /// <summary>The compiled module (for tests of its assembled source).</summary>
    internal static CudaModule Kernels => Module;

    private static bool Applies(Tensor x) => IsCudaBf16(x) && !NeedsGrad(x);

    private static bool IsCudaBf16(Tensor x) => x.device.type == DeviceType.CUDA && x.dtype == ScalarType.BFloat16;

    private static bool NeedsGrad(Tensor x) => x.requires_grad && is_grad_enabled();

    /// <summary>
    /// RMSNorm of the last dimension of <paramref name="input"/> with <paramref name="weight"/>, or null. With autograd
    /// the input's gradient comes from a fused backward kernel; a weight that needs a gradient takes the libtorch ops.
    /// </summary>
    public static Tensor? RmsNorm(Tensor input, Tensor weight, double eps)
    {
        if (!IsCudaBf16(input) || weight.dtype != ScalarType.BFloat16 || NeedsGrad(weight) || input.numel() == 0
            || input.size(-1) > int.MaxValue || input.numel() / input.size(-1) > int.MaxValue
            || !Module.TryGetFunction(input, "rms_norm_bf16", out CudaFunction f))
        {
            return null;
        }

        return NeedsGrad(input) ? RmsNormFunction.apply(input, weight, eps) : RmsNormForward(f, input, weight, eps);
    }

    internal static unsafe Tensor RmsNormForward(CudaFunction f, Tensor input, Tensor weight, double eps)
    {
        using var scope = NewDisposeScope();
        Tensor x = input.is_contiguous() ? input : input.contiguous();
        Tensor w = weight.is_contiguous() ? weight : weight.contiguous();
        Tensor output = empty_like(x);
        long cols = x.size(-1);
        long rows = x.numel() / cols;
        IntPtr px = CudaFunction.Pointer(x);
        IntPtr pw = CudaFunction.Pointer(w);
        IntPtr po = CudaFunction.Pointer(output);
        int c = (int)cols;
        float e = (float)eps;
        IntPtr* args = stackalloc IntPtr[5];
        args[0] = (IntPtr)(&px);
        args[1] = (IntPtr)(&pw);
        args[2] = (IntPtr)(&po);
        args[3] = (IntPtr)(&c);
        args[4] = (IntPtr)(&e);
        f.Launch((uint)rows, 1, 1, cols >= 1024 ? 1024u : 256u, args);
        return output.MoveToOuterDisposeScope();
    }

    internal static unsafe Tensor RmsNormBackward(Tensor input, Tensor weight, Tensor gradOutput, double eps)
    {
        CudaFunction f = Module.GetFunction(input, "rms_norm_bwd_bf16");

        using var scope = NewDisposeScope();
        Tensor x = input.is_contiguous() ? input : input.contiguous();
        Tensor w = weight.is_contiguous() ? weight : weight.contiguous();
        Tensor gy = gradOutput.is_contiguous() ? gradOutput : gradOutput.contiguous();
        Tensor gx = empty_like(x);
        long cols = x.size(-1);
        long rows = x.numel() / cols;
        IntPtr px = CudaFunction.Pointer(x);
        IntPtr pw = CudaFunction.Pointer(w);
        IntPtr pg = CudaFunction.Pointer(gy);
        IntPtr po = CudaFunction.Pointer(gx);
        int c = (int)cols;
        float e = (float)eps;
        IntPtr* args = stackalloc IntPtr[6];
        args[0] = (IntPtr)(&px);
        args[1] = (IntPtr)(&pw);
        args[2] = (IntPtr)(&pg);
        args[3] = (IntPtr)(&po);
        args[4] = (IntPtr)(&c);
        args[5] = (IntPtr)(&e);
        f.Launch((uint)rows, 1, 1, cols >= 1024 ? 1024u : 256u, args);
        return gx.MoveToOuterDisposeScope();
    }

    /// <summary>The most cached keys <see cref="DecodeAttention"/> takes (its scores and partial sums sit in 48 KiB of shared memory).</summary>
    internal const int DecodeAttentionMaxKeys = 11000;

    // Threads of a decoding attention block: D per key group, up to 512 in all (more warps scoring keys, more groups summing V).
    internal static int DecodeAttentionThreads(int headDim) => headDim >= 512 ? headDim : headDim * (512 / headDim);

    /// <summary>
    /// Attention of one new token per row over its cached keys, grouped-query heads read in place: q [B, H, 1, D],
    /// keys and values [B, KV, S, D] (views of the cache are fine: the head dimension must be contiguous), mask bool
    /// [B or 1, 1, 1, S]. Returns the merged heads [B, 1, H·D], or null when the kernel does not apply (then the caller
    /// uses scaled_dot_product_attention). Float32 scores, softmax and sums, one bf16 rounding.
    /// </summary>
    public static unsafe Tensor? DecodeAttention(Tensor q, Tensor keys, Tensor values, Tensor mask, int heads, int kvHeads, int headDim)
    {
        if (!Applies(q) || keys.dtype != ScalarType.BFloat16 || values.dtype != ScalarType.BFloat16 || mask.dtype != ScalarType.Bool
            || q.dim() != 4 || q.size(2) != 1 || keys.dim() != 4 || values.dim() != 4 || mask.dim() != 4
            || headDim % 32 != 0 || headDim > 1024 || heads % kvHeads != 0)
        {
            return null;
        }

        long b = q.size(0);
        long s = keys.size(2);
        if (s < 1 || s > DecodeAttentionMaxKeys || q.size(1) != heads || q.size(3) != headDim
            || keys.size(0) != b || keys.size(1) != kvHeads || keys.size(3) != headDim || !SameLayout(keys, values) || keys.stride(3) != 1 || q.stride(3) != 1
            || mask.size(1) != 1 || mask.size(2) != 1 || mask.size(3) != s || (mask.size(0) != b && mask.size(0) != 1)
            || b > int.MaxValue || !Module.TryGetFunction(q, "decode_attention_bf16", out CudaFunction f))
        {
            return null;
        }

        using var scope = NewDisposeScope();
        Tensor m = mask.reshape(mask.size(0), s);
        m = m.stride(1) == 1 ? m : m.contiguous();
        Tensor output = empty([b, 1, heads * headDim], ScalarType.BFloat16, q.device);
        IntPtr pq = CudaFunction.Pointer(q);
        IntPtr pk = CudaFunction.Pointer(keys);
        IntPtr pv = CudaFunction.Pointer(values);
        IntPtr pm = CudaFunction.Pointer(m);
        IntPtr po = CudaFunction.Pointer(output);
        long qb = q.stride(0);
        long qh = q.stride(1);
        long kb = keys.stride(0);
        long kh = keys.stride(1);
        long kr = keys.stride(2);
        long mb = m.size(0) == 1 ? 0 : m.stride(0);
        int h = heads;
        int kv = kvHeads;
        int keysCount = (int)s;
        int d = headDim;
        float scale = 1.0f / MathF.Sqrt(headDim);
        IntPtr* args = stackalloc IntPtr[16];
        args[0] = (IntPtr)(&pq);
        args[1] = (IntPtr)(&qb);
        args[2] = (IntPtr)(&qh);
        args[3] = (IntPtr)(&pk);
        args[4] = (IntPtr)(&pv);
        args[5] = (IntPtr)(&kb);
        args[6] = (IntPtr)(&kh);
        args[7] = (IntPtr)(&kr);
        args[8] = (IntPtr)(&pm);
        args[9] = (IntPtr)(&mb);
        args[10] = (IntPtr)(&po);
        args[11] = (IntPtr)(&h);
        args[12] = (IntPtr)(&kv);
        args[13] = (IntPtr)(&keysCount);
        args[14] = (IntPtr)(&d);
        args[15] = (IntPtr)(&scale);
        int threads = DecodeAttentionThreads(headDim);
        f.Launch((uint)b, (uint)heads, 1, (uint)threads, args, (uint)((s + threads) * sizeof(float)));
        return output.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Rotates q and k and lays q, k, v out head-major: from projections [B, T, H·D], [B, T, KV·D], [B, T, KV·D] (each may
    /// be a column slice of one fused projection) and cos/sin [B, T, D] to q [B, H, T, D], k and v [B, KV, T, D]; or null.
    /// With <paramref name="cacheKeys"/>, <paramref name="cacheValues"/> (contiguous [B, KV, capacity, D]) and
    /// <paramref name="slots"/> (int64 [T]) k and v are written straight into the cache at those slots (what
    /// <c>index_copy_</c> would do) and the cache tensors are returned as K and V.
    /// </summary>
    public static (Tensor Q, Tensor K, Tensor V)? RotaryHeads(Tensor qp, Tensor kp, Tensor vp, Tensor cos, Tensor sin, int heads, int kvHeads, int headDim,
        Tensor? cacheKeys = null, Tensor? cacheValues = null, Tensor? slots = null)
    {
        if (!Applies(qp) || !Applies(kp) || !Applies(vp) || cos.dtype != ScalarType.BFloat16 || sin.dtype != ScalarType.BFloat16
            || headDim % 2 != 0 || headDim > 2048 || qp.dim() != 3 || !Module.TryGetFunction(qp, "rope_split_bf16", out CudaFunction f))
        {
            return null;
        }

        bool intoCache = cacheKeys is not null;
        if (intoCache && (cacheValues is null || slots is null || cacheKeys!.dtype != ScalarType.BFloat16 || cacheValues.dtype != ScalarType.BFloat16
            || !cacheKeys.is_contiguous() || !cacheValues.is_contiguous() || !SameLayout(cacheKeys, cacheValues)
            || cacheKeys.dim() != 4 || cacheKeys.size(0) != qp.size(0) || cacheKeys.size(1) != kvHeads || cacheKeys.size(3) != headDim
            || slots.dtype != ScalarType.Int64 || slots.dim() != 1 || slots.size(0) != qp.size(1) || !slots.is_contiguous()
            || !slots.device.IsSameDevice(qp.device) || !cacheKeys.device.IsSameDevice(qp.device)))
        {
            return null;
        }

        long b = qp.size(0);
        long t = qp.size(1);
        if (!RowsOf(qp, b, t, heads * headDim) || !RowsOf(kp, b, t, kvHeads * headDim) || !RowsOf(vp, b, t, kvHeads * headDim)
            || b * t > int.MaxValue || cos.size(0) != b || cos.size(1) != t || cos.size(2) != headDim)
        {
            return null;
        }

        using var scope = NewDisposeScope();
        Tensor c = cos.is_contiguous() ? cos : cos.contiguous();
        Tensor s = sin.is_contiguous() ? sin : sin.contiguous();
        Tensor q = empty([b, heads, t, headDim], ScalarType.BFloat16, qp.device);
        Tensor k = intoCache ? cacheKeys! : empty([b, kvHeads, t, headDim], ScalarType.BFloat16, qp.device);
        Tensor v = intoCache ? cacheValues! : empty([b, kvHeads, t, headDim], ScalarType.BFloat16, qp.device);
        int kvLength = intoCache ? (int)cacheKeys!.size(2) : (int)t;
        IntPtr pSlots = intoCache ? CudaFunction.Pointer(slots!) : IntPtr.Zero;
        LaunchRopeSplit(f, qp, kp, vp, c, s, q, k, v, heads, kvHeads, headDim, kvLength, pSlots);
        return intoCache ? (q.MoveToOuterDisposeScope(), k, v) : (q.MoveToOuterDisposeScope(), k.MoveToOuterDisposeScope(), v.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Training's rotary embedding of one projection <paramref name="xp"/> ([B, T, heads·D], rows possibly strided) into a
    /// new [B, heads, T, D] tensor, forward and input gradient one kernel each, bit-identical to
    /// <see cref="Modeling.RotaryEmbedding.Apply"/> over <c>xp.view(B, T, heads, D).transpose(1, 2)</c>; or null where it does not
    /// apply (not CUDA bf16, cos/sin not [B, T, D] bf16, an odd or over-large head size).
    /// </summary>
    public static Tensor? Rotary(Tensor xp, Tensor cos, Tensor sin, int heads, int headDim)
    {
        if (!IsCudaBf16(xp) || cos.dtype != ScalarType.BFloat16 || sin.dtype != ScalarType.BFloat16 || headDim % 2 != 0 || headDim > 2048
            || heads <= 0 || heads > 65535 || !Module.TryGetFunction(xp, "rope_split_bf16", out CudaFunction f))
        {
            return null;
        }

        long b = xp.size(0);
        long t = xp.size(1);
        if (!RowsOf(xp, b, t, (long)heads * headDim) || b * t > int.MaxValue || b * t == 0 || cos.dim() != 3 || !SameSizes(cos, sin)
            || cos.size(0) != b || cos.size(1) != t || cos.size(2) != headDim || !cos.device.IsSameDevice(xp.device) || !sin.device.IsSameDevice(xp.device))
        {
            return null;
        }

        return NeedsGrad(xp) ? RotaryFunction.apply(xp, cos, sin, heads, headDim) : RotaryForward(f, xp, cos, sin, heads, headDim);
    }

    // rope_split_bf16 over one projection: its q rows are xp's, no k or v heads (KV = 0, so the k/v arguments are unused).
    internal static Tensor RotaryForward(CudaFunction f, Tensor xp, Tensor cos, Tensor sin, int heads, int headDim)
    {
        using var scope = NewDisposeScope();
        Tensor c = cos.is_contiguous() ? cos : cos.contiguous();
        Tensor s = sin.is_contiguous() ? sin : sin.contiguous();
        Tensor output = empty([xp.size(0), heads, xp.size(1), headDim], ScalarType.BFloat16, xp.device);
        LaunchRopeSplit(f, xp, xp, xp, c, s, output, output, output, heads, 0, headDim, (int)xp.size(1), IntPtr.Zero);
        return output.MoveToOuterDisposeScope();
    }

    // rope_split_bf16 over the rows of qp/kp/vp ([B, T, *], rows possibly strided) with contiguous [B, T, D] cos and sin:
    // q [B, heads, T, D], and k, v [B, kvHeads, kvLength, D] at slot t, or at slots[t] when slots is not null.
    private static unsafe void LaunchRopeSplit(CudaFunction f, Tensor qp, Tensor kp, Tensor vp, Tensor cos, Tensor sin, Tensor q, Tensor k, Tensor v,
        int heads, int kvHeads, int headDim, int kvLength, IntPtr slots)
    {
        IntPtr pqs = CudaFunction.Pointer(qp);
        IntPtr pks = CudaFunction.Pointer(kp);
        IntPtr pvs = CudaFunction.Pointer(vp);
        long qStride = qp.stride(1);
        long kStride = kp.stride(1);
        long vStride = vp.stride(1);
        IntPtr pc = CudaFunction.Pointer(cos);
        IntPtr ps = CudaFunction.Pointer(sin);
        IntPtr pq = CudaFunction.Pointer(q);
        IntPtr pk = CudaFunction.Pointer(k);
        IntPtr pv = CudaFunction.Pointer(v);
        long rows = qp.size(0) * qp.size(1);
        int tt = (int)qp.size(1);
        int h = heads;
        int kv = kvHeads;
        int d = headDim;
        IntPtr* args = stackalloc IntPtr[17];
        args[0] = (IntPtr)(&pqs);
        args[1] = (IntPtr)(&pks);
        args[2] = (IntPtr)(&pvs);
        args[3] = (IntPtr)(&qStride);
        args[4] = (IntPtr)(&kStride);
        args[5] = (IntPtr)(&vStride);
        args[6] = (IntPtr)(&pc);
        args[7] = (IntPtr)(&ps);
        args[8] = (IntPtr)(&pq);
        args[9] = (IntPtr)(&pk);
        args[10] = (IntPtr)(&pv);
        args[11] = (IntPtr)(&tt);
        args[12] = (IntPtr)(&h);
        args[13] = (IntPtr)(&kv);
        args[14] = (IntPtr)(&d);
        args[15] = (IntPtr)(&kvLength);
        args[16] = (IntPtr)(&slots);
        f.Launch((uint)rows, (uint)(heads + (2 * kvHeads)), 1, (uint)(headDim / 2), args);
    }

    internal static unsafe Tensor RotaryBackward(Tensor gradOutput, Tensor cos, Tensor sin, int heads, int headDim)
    {
        CudaFunction f = Module.GetFunction(gradOutput, "rope_bwd_bf16");

        using var scope = NewDisposeScope();
        Tensor g = gradOutput.is_contiguous() ? gradOutput : gradOutput.contiguous();
        long b = g.size(0);
        long t = g.size(2);
        Tensor c = cos.is_contiguous() ? cos : cos.contiguous();
        Tensor s = sin.is_contiguous() ? sin : sin.contiguous();
        Tensor gx = empty([b, t, (long)heads * headDim], ScalarType.BFloat16, g.device);
        IntPtr pg = CudaFunction.Pointer(g);
        IntPtr pc = CudaFunction.Pointer(c);
        IntPtr ps = CudaFunction.Pointer(s);
        IntPtr pgx = CudaFunction.Pointer(gx);
        int tt = (int)t;
        int h = heads;
        int d = headDim;
        IntPtr* args = stackalloc IntPtr[7];
        args[0] = (IntPtr)(&pg);
        args[1] = (IntPtr)(&pc);
        args[2] = (IntPtr)(&ps);
        args[3] = (IntPtr)(&pgx);
        args[4] = (IntPtr)(&tt);
        args[5] = (IntPtr)(&h);
        args[6] = (IntPtr)(&d);
        f.Launch((uint)(b * t), (uint)heads, 1, (uint)(headDim / 2), args);
        return gx.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// <c>silu(gate) · up</c> for [rows, I] inputs whose rows may be strided (column slices of one fused projection); or
    /// null. With autograd (contiguous inputs) the gradients come from one fused backward kernel.
    /// </summary>
    public static Tensor? SiluMul(Tensor gate, Tensor up)
    {
        if (!IsCudaBf16(gate) || !IsCudaBf16(up) || gate.dim() != 2 || up.dim() != 2 || gate.size(0) != up.size(0) || gate.size(1) != up.size(1)
            || gate.stride(1) != 1 || up.stride(1) != 1 || gate.size(1) > int.MaxValue || gate.numel() == 0
            || !Module.TryGetFunction(gate, "silu_mul_bf16", out CudaFunction f))
        {
            return null;
        }

        if (NeedsGrad(gate) || NeedsGrad(up))
        {
            return gate.is_contiguous() && up.is_contiguous() ? SiluMulFunction.apply(gate, up) : null;
        }

        return SiluMulForward(f, gate, up);
    }

    internal static unsafe Tensor SiluMulForward(CudaFunction f, Tensor gate, Tensor up)
    {
        long rows = gate.size(0);
        long cols = gate.size(1);
        Tensor output = empty([rows, cols], ScalarType.BFloat16, gate.device);
        IntPtr pg = CudaFunction.Pointer(gate);
        IntPtr pu = CudaFunction.Pointer(up);
        long gs = gate.stride(0);
        long us = up.stride(0);
        IntPtr po = CudaFunction.Pointer(output);
        int c = (int)cols;
        IntPtr* args = stackalloc IntPtr[7];
        args[0] = (IntPtr)(&pg);
        args[1] = (IntPtr)(&pu);
        args[2] = (IntPtr)(&gs);
        args[3] = (IntPtr)(&us);
        args[4] = (IntPtr)(&po);
        args[5] = (IntPtr)(&rows);
        args[6] = (IntPtr)(&c);
        long total = rows * cols;
        f.Launch((uint)((((total + 7) / 8) + 255) / 256), 1, 1, 256, args); // eight elements per thread
        return output;
    }

    internal static unsafe (Tensor GradGate, Tensor GradUp) SiluMulBackward(Tensor gate, Tensor up, Tensor gradOutput)
    {
        CudaFunction f = Module.GetFunction(gate, "silu_mul_bwd_bf16");

        using var scope = NewDisposeScope();
        Tensor go = gradOutput.is_contiguous() ? gradOutput : gradOutput.contiguous();
        Tensor gg = empty_like(gate);
        Tensor gu = empty_like(up);
        IntPtr pg = CudaFunction.Pointer(gate);
        IntPtr pu = CudaFunction.Pointer(up);
        IntPtr pgo = CudaFunction.Pointer(go);
        IntPtr pgg = CudaFunction.Pointer(gg);
        IntPtr pgu = CudaFunction.Pointer(gu);
        long n = gate.numel();
        IntPtr* args = stackalloc IntPtr[6];
        args[0] = (IntPtr)(&pg);
        args[1] = (IntPtr)(&pu);
        args[2] = (IntPtr)(&pgo);
        args[3] = (IntPtr)(&pgg);
        args[4] = (IntPtr)(&pgu);
        args[5] = (IntPtr)(&n);
        f.Launch((uint)((((n + 7) / 8) + 255) / 256), 1, 1, 256, args); // eight elements per thread
        return (gg.MoveToOuterDisposeScope(), gu.MoveToOuterDisposeScope());
    }

    /// <summary>Most rows of x the decoding projection kernel takes (a decoding step's batch).</summary>
    internal const int DecodeProjectionMaxRows = 8;

    /// <summary>
    /// Decoding projections in one launch, or null when the kernel does not apply (not CUDA bf16 without autograd, more than
    /// <see cref="DecodeProjectionMaxRows"/> rows, a width not a multiple of 8, unaligned or non-contiguous tensors).
    /// Plain: <c>x @ [w0; w1; w2]^T</c> as one [M, n0 + n1 + n2] tensor (q, k and v side by side). With
    /// <paramref name="siluUp"/>: <c>silu(x @ w0^T) · (x @ w1^T)</c>, [M, n0], each rounded as the separate ops round.
    /// With <paramref name="residual"/> ([M, N], contiguous): <c>residual + projection</c>, each rounded to bf16.
    /// </summary>
    public static unsafe Tensor? DecodeProjection(Tensor x, Tensor w0, Tensor? w1, Tensor? w2, bool siluUp, Tensor? residual = null)
    {
        if (!Applies(x) || x.dim() != 2 || x.size(0) < 1 || x.size(0) > DecodeProjectionMaxRows || x.size(1) % 8 != 0
            || !x.is_contiguous() || (siluUp && (w1 is null || w2 is not null || w1.size(0) != w0.size(0))))
        {
            return null;
        }

        if (residual is not null && (!Applies(residual) || residual.dim() != 2 || residual.size(0) != x.size(0) || !residual.is_contiguous()
            || !residual.device.IsSameDevice(x.device)))
        {
            return null;
        }

        long k = x.size(1);
        Tensor?[] weights = [w0, w1, w2];
        long total = 0;
        foreach (Tensor? w in weights)
        {
            if (w is null)
            {
                continue;
            }

            if (!Applies(w) || w.dim() != 2 || w.size(1) != k || !w.is_contiguous() || CudaFunction.Pointer(w) % 16 != 0 || !w.device.IsSameDevice(x.device))
            {
                return null;
            }

            total += w.size(0);
        }

        long n = siluUp ? w0.size(0) : total;
        if ((residual is not null && residual.size(1) != n) || n > int.MaxValue || k > int.MaxValue || CudaFunction.Pointer(x) % 16 != 0 || !Module.TryGetFunction(x, "gemv_bf16", out CudaFunction f))
        {
            return null;
        }

        Tensor output = empty([x.size(0), n], ScalarType.BFloat16, x.device);
        IntPtr px = CudaFunction.Pointer(x);
        IntPtr p0 = CudaFunction.Pointer(w0);
        IntPtr p1 = w1 is null ? IntPtr.Zero : CudaFunction.Pointer(w1);
        IntPtr p2 = w2 is null ? IntPtr.Zero : CudaFunction.Pointer(w2);
        IntPtr py = CudaFunction.Pointer(output);
        int m = (int)x.size(0);
        int kk = (int)k;
        int n0 = (int)w0.size(0);
        int n1 = w1 is null ? 0 : (int)w1.size(0);
        int n2 = w2 is null ? 0 : (int)w2.size(0);
        int ldy = (int)n;
        int silu = siluUp ? 1 : 0;
        IntPtr pr = residual is null ? IntPtr.Zero : CudaFunction.Pointer(residual);
        IntPtr* args = stackalloc IntPtr[13];
        args[0] = (IntPtr)(&px);
        args[1] = (IntPtr)(&m);
        args[2] = (IntPtr)(&kk);
        args[3] = (IntPtr)(&p0);
        args[4] = (IntPtr)(&n0);
        args[5] = (IntPtr)(&p1);
        args[6] = (IntPtr)(&n1);
        args[7] = (IntPtr)(&p2);
        args[8] = (IntPtr)(&n2);
        args[9] = (IntPtr)(&py);
        args[10] = (IntPtr)(&ldy);
        args[11] = (IntPtr)(&silu);
        args[12] = (IntPtr)(&pr);
        const int warpsPerBlock = 8; // one warp per output feature
        f.Launch((uint)((n + warpsPerBlock - 1) / warpsPerBlock), 1, 1, 32 * warpsPerBlock, args);
        return output;
    }

    /// <summary>Kernel lookup for the autograd functions.</summary>
    internal static CudaFunction Function(Tensor onDevice, string name) => Module.GetFunction(onDevice, name);

    // Same sizes and strides (x.shape and x.stride() allocate an array per call: 0.7 us each, where size(i) costs 0.03 us;
    // the checks before a decoding launch run for every layer and token).
    internal static bool SameLayout(Tensor a, Tensor b)
    {
        long dims = a.dim();
        if (b.dim() != dims)
        {
            return false;
        }

        for (int i = 0; i < dims; i++)
        {
            if (a.size(i) != b.size(i) || a.stride(i) != b.stride(i))
            {
                return false;
            }
        }

        return true;
    }

    // Same sizes (without the arrays x.shape allocates).
    internal static bool SameSizes(Tensor a, Tensor b)
    {
        long dims = a.dim();
        if (b.dim() != dims)
        {
            return false;
        }

        for (int i = 0; i < dims; i++)
        {
            if (a.size(i) != b.size(i))
            {
                return false;
            }
        }

        return true;
    }

    // [b, t, width] whose last dimension is contiguous and whose rows are evenly strided (a contiguous tensor or a column slice).
    private static bool RowsOf(Tensor x, long b, long t, long width) =>
        x.dim() == 3 && x.size(0) == b && x.size(1) == t && x.size(2) == width && x.stride(2) == 1
        && (b == 1 || x.stride(0) == x.stride(1) * t);
}
