using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using Mistral.Core.Configuration;
using static TorchSharp.torch;

namespace Mistral.Core.Modeling;

/// <summary>The decoder stack (<c>model.*</c> in Hugging Face's names): embeddings, layers, final norm.</summary>
public sealed class MistralModel : nn.Module<CausalLMInput, Tensor>, IReplaceableChildren
{
    [ComponentName(Name = "embed_tokens")]
    private nn.Module<Tensor, Tensor> embedTokens;
    private ModuleList<MistralDecoderLayer> layers;
    private RmsNorm norm;
    private readonly RotaryEmbedding rotary;
    private readonly MistralConfig config;

    /// <summary>Creates an uninitialised stack.</summary>
    public MistralModel(MistralConfig config, ScalarType dtype, Device device)
        : base(nameof(MistralModel))
    {
        this.config = config;
        embedTokens = new TokenEmbedding(config.VocabSize, config.HiddenSize, dtype, device);
        layers = new ModuleList<MistralDecoderLayer>();
        for (int i = 0; i < config.NumHiddenLayers; i++)
        {
            layers.Add(new MistralDecoderLayer(config, i, dtype, device));
        }

        layers.to(device); // moves nothing (the layers are there): records the device for later moves (ModuleDevice)

        norm = new RmsNorm(config.HiddenSize, config.RmsNormEps, dtype, device);
        rotary = new RotaryEmbedding(config.HeadDim, config.RopeTheta);
        RegisterComponents();
        (_deviceType, _deviceIndex) = ModuleDevice.Origin(device);
    }

    /// <summary>The decoder layers.</summary>
    public IReadOnlyList<MistralDecoderLayer> Layers => [.. layers];

    /// <summary>The token embedding module.</summary>
    public nn.Module<Tensor, Tensor> EmbedTokens => embedTokens;

    /// <summary>
    /// Activation (gradient) checkpointing of the decoder layers, as Hugging Face's
    /// <c>gradient_checkpointing_enable()</c> with PyTorch's reentrant checkpoint: off by default.
    /// </summary>
    /// <remarks>
    /// <para>Effective only in training mode with grad enabled; eval mode, <c>no_grad</c> and <c>inference_mode</c>
    /// forwards are unchanged. While effective, each layer's forward keeps only its input (and shares the call's rotary
    /// tables and mask); backward re-runs the layer with grad and back-propagates through it, so parameter gradients
    /// (LoRA or full) are those of an ordinary backward at the cost of a second forward per layer.</para>
    /// <para>Random state is preserved as PyTorch does: on CPU the recomputation draws the same dropout masks as the
    /// forward and the results equal a run without checkpointing bit for bit. TorchSharp cannot read a CUDA
    /// generator's state, so on CUDA each layer's forward and recomputation reseed the CUDA generators with the same
    /// seed (drawn from the CPU generator): gradients are consistent with the forward's masks, but dropout masks differ
    /// from a run without checkpointing. Other devices are refused.</para>
    /// <para>A KV cache cannot be combined with it (an <see cref="InvalidOperationException"/> is thrown).</para>
    /// </remarks>
    public bool GradientCheckpointing { get; set; }

    /// <summary>True when a forward now would checkpoint: <see cref="GradientCheckpointing"/>, training mode and grad enabled.</summary>
    public bool IsCheckpointingActive => GradientCheckpointing && is_grad_enabled() && training;

    /// <summary>Runs the stack; returns the final-normed hidden states [batch, seq, hidden].</summary>
    public override Tensor forward(CausalLMInput input)
    {
        ArgumentNullException.ThrowIfNull(input);
        Tensor ids = input.InputIds;
        if (ids.dim() != 2)
        {
            throw new ArgumentException($"InputIds must be [batch, seq]; got shape [{string.Join(", ", ids.shape)}].", nameof(input));
        }

        long b = ids.size(0);
        long t = ids.size(1);
        if (input.AttentionMask is Tensor am && (am.dim() != 2 || am.size(0) != b || am.size(1) != t))
        {
            throw new ArgumentException($"AttentionMask must be [{b}, {t}]; got [{string.Join(", ", am.shape)}].", nameof(input));
        }

        bool checkpoint = IsCheckpointingActive;
        if (checkpoint && input.Cache is not null)
        {
            throw new InvalidOperationException(
                "Gradient checkpointing cannot be used with a KV cache (CausalLMInput.Cache): the cache would be written again " +
                "when layers are recomputed in backward. Generate in eval mode or under no_grad, or set GradientCheckpointing = false.");
        }

        using var scope = NewDisposeScope();
        Device device = ComputeDevice;
        if (!ids.device.IsSameDevice(device))
        {
            ids = ids.to(device);
        }

        Tensor hidden = embedTokens.forward(ids);
        Tensor valid = input.AttentionMask is Tensor m ? m.to(device).to_type(ScalarType.Bool) : ones([b, t], ScalarType.Bool, device);

        Tensor positions;
        long? positionBound;
        Tensor mask;
        KvCacheStep? step = null;
        KvCache? cache = input.Cache;
        if (cache is not null)
        {
            if (cache.BatchSize != b)
            {
                throw new ArgumentException($"The KV cache was made for batch {cache.BatchSize}; the input has {b} rows.", nameof(input));
            }

            step = cache.BeginStep((int)t, valid);
            positions = input.PositionIds?.to(device)
                ?? (cache.NextPosition.unsqueeze(1) + valid.to_type(ScalarType.Int64).cumsum(1) - 1).clamp_min(0);
            // A real token's position never exceeds its sequence index.
            positionBound = input.PositionIds is null ? cache.Length + t : null;
            mask = AttentionMasks.Build(step.QueryIndex, step.KeyIndex, step.KeyValid, config.SlidingWindow);
        }
        else
        {
            positions = input.PositionIds?.to(device) ?? DefaultPositions(input.AttentionMask is null ? null : valid, b, t, device);
            positionBound = input.PositionIds is null ? t : null;
            Tensor index = arange(0, t, 1, ScalarType.Int64, device);
            mask = AttentionMasks.Build(index, index, input.AttentionMask is null ? null : valid, config.SlidingWindow);
        }

        (Tensor cos, Tensor sin) = rotary.Compute(positions, hidden.dtype, positionBound);
        // No padding, no cache and the whole sequence within the window: the mask is plain causal.
        bool isCausal = cache is null && input.AttentionMask is null && t > 1 && (config.SlidingWindow is not int window || t <= window);
        var context = new AttentionContext(cos, sin, mask, cache, step, isCausal);
        foreach (MistralDecoderLayer layer in layers)
        {
            hidden = checkpoint ? CheckpointedLayerFunction.Apply(layer, hidden, context) : layer.forward(hidden, context);
        }

        if (cache is not null && step is not null)
        {
            cache.EndStep(step, valid, positions);
        }

        return norm.forward(hidden).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The device the stack computes on: its final norm's. The embedding table may sit elsewhere (in host memory, see
    /// <see cref="TokenEmbedding"/>); its lookups come back on this device.
    /// </summary>
    public Device ComputeDevice => norm.Weight.device;

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            rotary.Dispose();
        }

        base.Dispose(disposing);
    }

    /// <summary>Rotary positions for a padded batch: <c>cumsum(mask) − 1</c>, padding set to 1 (as HF's generate does).</summary>
    internal static Tensor DefaultPositions(Tensor? valid, long batch, long seq, Device device)
    {
        if (valid is null)
        {
            return arange(0, seq, 1, ScalarType.Int64, device).unsqueeze(0).expand(batch, seq);
        }

        using var scope = NewDisposeScope();
        Tensor v = valid.to_type(ScalarType.Int64);
        Tensor p = v.cumsum(1) - 1;
        return p.masked_fill(v.eq(0), 1).MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public void ReplaceChild(string name, nn.Module replacement) => ModuleTree.ReplaceField(this, name, replacement);
}
