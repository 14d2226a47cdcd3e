namespace Mistral.Peft.Quantization.Cuda;

/// <summary>Diagnostics of the fused CUDA kernel that dequantizes NF4 weights.</summary>
/// <remarks>
/// On CUDA, <see cref="Nf4Tensor.Dequantize(TorchSharp.torch.ScalarType)"/> and <see cref="Linear4bit"/> use one fused kernel
/// compiled at run time with NVRTC (found next to the application, on the loader path, beside a pip-installed PyTorch, or
/// in <c>/usr/local/cuda</c>). Its results are bit-identical to the libtorch ops it replaces; when NVRTC cannot be found
/// the libtorch path runs (about 3× slower) and <see cref="Status"/> says why.
/// </remarks>
public static class Nf4CudaKernel
{
    /// <summary>Which dequantization path CUDA tensors use, and why (for logs and benchmarks).</summary>
    public static string Status => FusedNf4Dequantizer.Status;
}
