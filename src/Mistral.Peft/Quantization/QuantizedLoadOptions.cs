using TorchSharp;
using Mistral.Core.Modeling;
using static TorchSharp.torch;

namespace Mistral.Peft.Quantization;

/// <summary>
/// How <see cref="QuantizedModelLoader"/> builds a 4-bit model from a checkpoint folder. Defaults are QLoRA's: NF4 with
/// block 64 and double quantization, bf16 compute, embeddings/norms/<c>lm_head</c> kept in bf16, on the CPU.
/// </summary>
public sealed record QuantizedLoadOptions
{
    /// <summary>
    /// NF4 settings of the projections quantized while loading (block size, double quantization, and
    /// <see cref="Nf4Options.ComputeDtype"/>, the dtype every <see cref="Linear4bit"/> computes in). Default: QLoRA's.
    /// </summary>
    public Nf4Options Nf4 { get; init; } = new();

    /// <summary>
    /// dtype of everything that is not quantized (embeddings, norms, <c>lm_head</c>, skipped projections), and the
    /// dtype each projection weight is cast to before it is quantized (transformers' <c>torch_dtype</c>: it casts the
    /// checkpoint tensor to it, then bitsandbytes quantizes). BFloat16 (default), Float16 or Float32.
    /// </summary>
    public ScalarType DType { get; init; } = ScalarType.BFloat16;

    /// <summary>Device the model is built on (each tensor is read straight to it); null means the CPU.</summary>
    public Device? Device { get; init; }

    /// <summary>
    /// When the model is built on a GPU, read each projection weight into host memory and send it to the device one
    /// quantization chunk (4 Mi elements) at a time, so the device never holds a full-precision projection (default
    /// true). Reading whole weights to the device first (false) leaves their freed blocks in the CUDA caching
    /// allocator's reserve: for Mistral-7B on an H100, 96 MiB more process memory after loading (the training peak that
    /// followed was the same). Same bits either way. Ignored on the CPU.
    /// </summary>
    public bool StageOnHost { get; init; } = true;

    /// <summary>
    /// Keep the token embedding table (<c>model.embed_tokens.weight</c>, 250 MiB in bf16 for Mistral-7B) in pinned host
    /// memory when the model is built on a GPU (default true): each forward's tokens' rows are gathered from there by a
    /// kernel on the GPU (16 MiB over the bus for 2,048 tokens), with no copy of the ids to the host and no wait for the
    /// device. The same values as a table on the GPU, and the table's bytes stay off the GPU: QLoRA r 16 on all
    /// projections of Mistral-7B from a checkpoint peaked at 6,518 instead of 6,768 MiB on an H100, at the same speed
    /// (BENCHMARKS.md). Costs 256 MiB of page-locked host memory. Set false to keep the table on the GPU (a table that
    /// trains, or a host short of page-locked memory). <see cref="MistralForCausalLM.Device"/> stays the GPU. Without
    /// NVRTC the rows are looked up on the host instead (the ids are copied there first). Ignored on the CPU.
    /// </summary>
    public bool EmbeddingsOnHost { get; init; } = true;

    /// <summary>
    /// Projections left in <see cref="DType"/> (bitsandbytes' <c>llm_int8_skip_modules</c>), matched by whole name
    /// segments: <c>down_proj</c> skips every <c>…mlp.down_proj</c>, <c>model.layers.0</c> skips layer 0's projections.
    /// <c>lm_head</c> is always skipped. Default: none.
    /// </summary>
    public IReadOnlyList<string> SkipModules { get; init; } = [];

    /// <summary>
    /// Compute dtype of the layers of a pre-quantized checkpoint; null (default) takes the checkpoint's
    /// <c>quantization_config.bnb_4bit_compute_dtype</c>, as transformers does.
    /// </summary>
    public ScalarType? PrequantizedComputeDtype { get; init; }

    /// <summary>Checks every option and throws naming the first invalid one.</summary>
    /// <returns>This instance, for chaining.</returns>
    /// <exception cref="ArgumentException">An option is invalid; the message names it.</exception>
    public QuantizedLoadOptions Validate()
    {
        if (Nf4 is null)
        {
            throw new ArgumentException("QuantizedLoadOptions.Nf4 must not be null.", nameof(Nf4));
        }

        Nf4.Validate();
        if (!Nf4Options.IsFloatingDtype(DType))
        {
            throw new ArgumentException($"QuantizedLoadOptions.DType must be BFloat16, Float16 or Float32; got {DType}.", nameof(DType));
        }

        if (Device is { type: DeviceType.META })
        {
            throw new ArgumentException("QuantizedLoadOptions.Device must be a real device (CPU or CUDA), not meta.", nameof(Device));
        }

        if (SkipModules is null)
        {
            throw new ArgumentException("QuantizedLoadOptions.SkipModules must not be null (use an empty list).", nameof(SkipModules));
        }

        foreach (string s in SkipModules)
        {
            if (string.IsNullOrWhiteSpace(s) || s.StartsWith('.') || s.EndsWith('.'))
            {
                throw new ArgumentException($"QuantizedLoadOptions.SkipModules entries must be non-empty module names without leading/trailing dots; got '{s}'.", nameof(SkipModules));
            }
        }

        if (PrequantizedComputeDtype is { } c && !Nf4Options.IsFloatingDtype(c))
        {
            throw new ArgumentException($"QuantizedLoadOptions.PrequantizedComputeDtype must be BFloat16, Float16, Float32 or null; got {c}.", nameof(PrequantizedComputeDtype));
        }

        return this;
    }
}
