using Mistral.Core.Cuda;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Peft.Lora;

/// <summary>
/// The last step of a LoRA forward over a bfloat16 base on CUDA, fused: <c>out = bf16(float(result) + u · scaling)</c>
/// (or, over a 4-bit base as PEFT's bitsandbytes layer does, <c>bf16(float(result) + float(bf16(u · scaling)))</c>)
/// in one pass, where PEFT and the unfused path take a multiply, a promoting add and a cast, each over the whole
/// [tokens, out] output in float32. Backward: the result's gradient is the output's, the update's is
/// <c>float(grad) · scaling</c>, one pass. Bit-identical to the unfused ops in both directions.
/// Arguments of <c>apply</c>: result (bf16), u = B(A(x)) before scaling (float32, same shape), scaling (double),
/// whether the update is rounded to bf16 first (bool), the forward kernel from <see cref="TryGetKernel"/> (<see cref="CudaFunction"/>).
/// </summary>
internal sealed class LoraCombineFunction : autograd.SingleTensorFunction<LoraCombineFunction>
{
    private const string Source = """
        __device__ __forceinline__ unsigned short lora_combine_one(unsigned short result, float u, float scale, int round_update)
        {
            float update = __fmul_rn(u, scale);
            if (round_update) update = bf2f(f2bf(update));
            return f2bf(__fadd_rn(bf2f(result), update));
        }

        // Eight elements per thread: 16-byte loads and stores where the pointers allow, element by element otherwise.
        extern "C" __global__ void lora_combine_fwd(const unsigned short* result, const float* u, float scale, int round_update,
            unsigned short* out, long long n)
        {
            long long first = ((long long)blockIdx.x * blockDim.x + threadIdx.x) * 8;
            if (first >= n) return;
            if (first + 8 <= n && ((((unsigned long long)result | (unsigned long long)u | (unsigned long long)out) & 15) == 0))
            {
                uint4 rv = *(const uint4*)(result + first);
                float4 u0 = *(const float4*)(u + first);
                float4 u1 = *(const float4*)(u + first + 4);
                const unsigned short* rs = (const unsigned short*)&rv;
                float us[8] = { u0.x, u0.y, u0.z, u0.w, u1.x, u1.y, u1.z, u1.w };
                __align__(16) unsigned short o[8];
                #pragma unroll
                for (int j = 0; j < 8; j++) o[j] = lora_combine_one(rs[j], us[j], scale, round_update);
                *(uint4*)(out + first) = *(const uint4*)o;
                return;
            }
            for (long long i = first; i < first + 8 && i < n; i++) out[i] = lora_combine_one(result[i], u[i], scale, round_update);
        }

        extern "C" __global__ void lora_combine_bwd(const unsigned short* grad, float scale, float* grad_u, long long n)
        {
            long long first = ((long long)blockIdx.x * blockDim.x + threadIdx.x) * 8;
            if (first >= n) return;
            if (first + 8 <= n && ((((unsigned long long)grad | (unsigned long long)grad_u) & 15) == 0))
            {
                uint4 gv = *(const uint4*)(grad + first);
                const unsigned short* gs = (const unsigned short*)&gv;
                *(float4*)(grad_u + first) = make_float4(__fmul_rn(bf2f(gs[0]), scale), __fmul_rn(bf2f(gs[1]), scale),
                    __fmul_rn(bf2f(gs[2]), scale), __fmul_rn(bf2f(gs[3]), scale));
                *(float4*)(grad_u + first + 4) = make_float4(__fmul_rn(bf2f(gs[4]), scale), __fmul_rn(bf2f(gs[5]), scale),
                    __fmul_rn(bf2f(gs[6]), scale), __fmul_rn(bf2f(gs[7]), scale));
                return;
            }
            for (long long i = first; i < first + 8 && i < n; i++) grad_u[i] = __fmul_rn(bf2f(grad[i]), scale);
        }

        // LoRA's second product and the combine in one pass: out[t][o] = lora_combine_one(result[t][o], u, scale, round)
        // with u = sum over j of h[t][j] · bt[j][o] (float32 fmaf, j ascending), the float32 update [rows, N] never written.
        // h [rows, r] float32, bt = Bᵀ [r, N] float32, result and out [rows, N] bf16; N a multiple of 8, 16-byte aligned
        // pointers (the host checks). Block: 256 threads = 64 groups of 8 columns × 4 groups of 4 rows (16 rows × 512
        // columns). Grid: (ceil(N / 512), ceil(rows / 16)).
        extern "C" __global__ void lora_b_combine(const float* h, const float* bt, const unsigned short* result, float scale,
            int round_update, unsigned short* out, long long rows, int n_total, int r)
        {
            const int cg = threadIdx.x & 63, rg = threadIdx.x >> 6;
            const int k = (blockIdx.x * 64 + cg) * 8;
            if (k >= n_total) return;
            const long long row0 = (long long)blockIdx.y * 16 + rg * 4;
            if (row0 >= rows) return;
            float acc[4][8];
            #pragma unroll
            for (int i = 0; i < 4; i++)
                #pragma unroll
                for (int c = 0; c < 8; c++) acc[i][c] = 0.0f;
            for (int j = 0; j < r; j++)
            {
                const float4 b0 = *(const float4*)(bt + (long long)j * n_total + k);
                const float4 b1 = *(const float4*)(bt + (long long)j * n_total + k + 4);
                #pragma unroll
                for (int i = 0; i < 4; i++)
                {
                    const float hv = row0 + i < rows ? h[(row0 + i) * r + j] : 0.0f;
                    acc[i][0] = fmaf(hv, b0.x, acc[i][0]);
                    acc[i][1] = fmaf(hv, b0.y, acc[i][1]);
                    acc[i][2] = fmaf(hv, b0.z, acc[i][2]);
                    acc[i][3] = fmaf(hv, b0.w, acc[i][3]);
                    acc[i][4] = fmaf(hv, b1.x, acc[i][4]);
                    acc[i][5] = fmaf(hv, b1.y, acc[i][5]);
                    acc[i][6] = fmaf(hv, b1.z, acc[i][6]);
                    acc[i][7] = fmaf(hv, b1.w, acc[i][7]);
                }
            }
            #pragma unroll
            for (int i = 0; i < 4; i++)
            {
                const long long row = row0 + i;
                if (row >= rows) break;
                const long long i0 = row * n_total + k;
                uint4 rv = *(const uint4*)(result + i0);
                const unsigned short* rs = (const unsigned short*)&rv;
                __align__(16) unsigned short o[8];
                #pragma unroll
                for (int c = 0; c < 8; c++) o[c] = lora_combine_one(rs[c], acc[i][c], scale, round_update);
                *(uint4*)(out + i0) = *(const uint4*)o;
            }
        }
        """;

    private static readonly CudaModule Module = new("lora_combine", Source, "lora_combine_fwd", "lora_combine_bwd", "lora_b_combine");

    /// <inheritdoc />
    public override string Name => "LoraCombine";

    /// <summary>The compiled module (for tests of its assembled source).</summary>
    internal static CudaModule Kernels => Module;

    /// <summary>
    /// Whether the fused combine applies to these operands (CUDA, bf16 result, float32 update of the same shape, kernels
    /// compiled), with the forward <paramref name="kernel"/> for <see cref="Forward"/> or <c>apply</c> when it does.
    /// </summary>
    public static bool TryGetKernel(Tensor result, Tensor u, out CudaFunction kernel)
    {
        kernel = default;
        return result.device.type == DeviceType.CUDA && result.dtype == ScalarType.BFloat16 && u.dtype == ScalarType.Float32
            && u.device.type == DeviceType.CUDA && FusedOps.SameSizes(result, u)
            && Module.TryGetFunction(result, "lora_combine_fwd", out kernel);
    }

    /// <summary>The combine without autograd, with the forward <paramref name="kernel"/> from <see cref="TryGetKernel"/>.</summary>
    public static Tensor Forward(CudaFunction kernel, Tensor result, Tensor u, double scaling, bool roundUpdate)
    {
        using var scope = NewDisposeScope();
        Tensor r = result.is_contiguous() ? result : result.contiguous();
        Tensor uu = u.is_contiguous() ? u : u.contiguous();
        Tensor output = empty_like(r);
        LaunchForward(kernel, r, uu, (float)scaling, roundUpdate, output);
        return output.MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var result = (Tensor)vars[0];
        var u = (Tensor)vars[1];
        double scaling = (double)vars[2];
        bool roundUpdate = (bool)vars[3];
        var kernel = (CudaFunction)vars[4];
        ctx.save_data("scaling", scaling);
        return Forward(kernel, result, u, scaling, roundUpdate);
    }

    /// <inheritdoc />
    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
    {
        double scaling = (double)ctx.get_data("scaling");
        Tensor gradU;
        Tensor gradResult;
        using (var scope = NewDisposeScope())
        {
            Tensor grad = grad_output.is_contiguous() ? grad_output : grad_output.contiguous();
            gradU = empty_like(grad, ScalarType.Float32);
            LaunchBackward(grad, (float)scaling, gradU);
            gradU.MoveToOuterDisposeScope();
            gradResult = grad_output.detach().MoveToOuterDisposeScope();
        }

        return Mistral.Core.Modeling.GradientHandOff.Return(grad_output, [gradResult, gradU, null!, null!, null!]);
    }

    private static unsafe void LaunchForward(CudaFunction f, Tensor result, Tensor u, float scale, bool roundUpdate, Tensor output)
    {
        IntPtr pr = CudaFunction.Pointer(result);
        IntPtr pu = CudaFunction.Pointer(u);
        IntPtr po = CudaFunction.Pointer(output);
        int round = roundUpdate ? 1 : 0;
        long n = result.numel();
        IntPtr* args = stackalloc IntPtr[6];
        args[0] = (IntPtr)(&pr);
        args[1] = (IntPtr)(&pu);
        args[2] = (IntPtr)(&scale);
        args[3] = (IntPtr)(&round);
        args[4] = (IntPtr)(&po);
        args[5] = (IntPtr)(&n);
        if (n > 0)
        {
            f.Launch((uint)((((n + 7) / 8) + 255) / 256), 1, 1, 256, args); // eight elements per thread
        }
    }

    private static unsafe void LaunchBackward(Tensor grad, float scale, Tensor gradU)
    {
        CudaFunction f = Module.GetFunction(grad, "lora_combine_bwd");
        IntPtr pg = CudaFunction.Pointer(grad);
        IntPtr pu = CudaFunction.Pointer(gradU);
        long n = grad.numel();
        IntPtr* args = stackalloc IntPtr[4];
        args[0] = (IntPtr)(&pg);
        args[1] = (IntPtr)(&scale);
        args[2] = (IntPtr)(&pu);
        args[3] = (IntPtr)(&n);
        if (n > 0)
        {
            f.Launch((uint)((((n + 7) / 8) + 255) / 256), 1, 1, 256, args); // eight elements per thread
        }
    }
}
