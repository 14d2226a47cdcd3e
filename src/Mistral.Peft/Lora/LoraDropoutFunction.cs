using Mistral.Core.Cuda;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Peft.Lora;

/// <summary>
/// The first step of a LoRA forward in training on CUDA, fused: PEFT's <c>dropout(x.to(float32))</c> over a bfloat16
/// input as one kernel that reads bf16 and writes the kept, scaled float32 values, where libtorch takes a cast, a dropout
/// that also writes a mask, and in backward a masked scale and a cast back. The keep decision of element i is a hash of
/// (seed, i), the seed drawn from libtorch's CUDA generator on the device (no host sync), so backward recomputes the
/// mask instead of storing it, and a checkpointed layer's recomputation — which restores the generator — draws the same
/// mask. Same distribution as libtorch's dropout (keep with probability 1 − p, kept values times 1/(1 − p) in float32),
/// not the same random stream. Arguments of <c>apply</c>: x (bf16), p (double), the forward kernel from
/// <see cref="TryGetKernel"/> (<see cref="CudaFunction"/>).
/// </summary>
internal sealed class LoraDropoutFunction : autograd.SingleTensorFunction<LoraDropoutFunction>
{
    private const string Source = """
        // Keep element i unless a 32-bit hash of (seed, i) falls below threshold = p · 2^32 (splitmix64 finaliser).
        __device__ __forceinline__ bool keep(unsigned long long seed, unsigned long long i, unsigned int threshold)
        {
            unsigned long long z = seed + (i + 1ull) * 0x9E3779B97F4A7C15ull;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
            z ^= z >> 31;
            return (unsigned int)(z >> 32) >= threshold;
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
                #pragma unroll
                for (int j = 0; j < 8; j++) o[j] = keep(seed, first + j, threshold) ? __fmul_rn(bf2f(xs[j]), scale) : 0.0f;
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
                #pragma unroll
                for (int j = 0; j < 8; j++) o[j] = f2bf(keep(seed, first + j, threshold) ? __fmul_rn(gs[j], scale) : 0.0f);
                *(uint4*)(gx + first) = *(const uint4*)o;
                return;
            }
            for (long long i = first; i < first + 8 && i < n; i++) gx[i] = f2bf(keep(seed, i, threshold) ? __fmul_rn(gy[i], scale) : 0.0f);
        }
        """;

    private static readonly CudaModule Module = new("lora_dropout", Source, "lora_dropout_fwd", "lora_dropout_bwd");

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
        // The seed comes from libtorch's CUDA generator (one tiny kernel, no sync): checkpoint recomputation replays it.
        Tensor seed = randint(long.MaxValue, [1], ScalarType.Int64, x.device);
        return (Replay(kernel, x, seed, p), seed);
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
        if (!Module.TryGetFunction(grad, "lora_dropout_bwd", out CudaFunction kernel))
        {
            throw new InvalidOperationException("The LoRA dropout backward kernel is not available: " + Module.Status);
        }

        Launch(kernel, grad, seed, p, gradX);
        return gradX;
    }

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
        IntPtr pseed = CudaFunction.Pointer(seed);
        IntPtr pout = CudaFunction.Pointer(output);
        uint threshold = (uint)Math.Min(uint.MaxValue, Math.Round(p * 4294967296.0));
        float scale = (float)(1.0 / (1.0 - p));
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
