using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using Mistral.Core.Configuration;
using static TorchSharp.torch;

namespace Mistral.Core.Modeling;

/// <summary>
/// Mistral with its language-model head, numerically equal to Hugging Face transformers' <c>MistralForCausalLM</c>
/// and with identical state-dict names (<c>model.layers.0.self_attn.q_proj.weight</c>, …, <c>lm_head.weight</c>).
/// </summary>
/// <remarks>
/// Construction allocates the parameters without initialising them (on <c>meta</c> it allocates nothing); fill them from
/// a checkpoint with <see cref="Checkpoints.CheckpointLoader"/>. dtype and device are arguments: nothing process-wide is changed.
/// </remarks>
public sealed class MistralForCausalLM : nn.Module<CausalLMInput, CausalLMOutput>, IReplaceableChildren
{
    private MistralModel model;
    [ComponentName(Name = "lm_head")]
    private nn.Module<Tensor, Tensor> lmHead;

    /// <summary>Creates an uninitialised model.</summary>
    /// <param name="config">The architecture (validated here).</param>
    /// <param name="dtype">Parameter dtype: float32, bfloat16 or float16.</param>
    /// <param name="device">Device of the parameters; <c>torch.META</c> for shapes only.</param>
    public MistralForCausalLM(MistralConfig config, ScalarType dtype = ScalarType.Float32, Device? device = null)
        : base(nameof(MistralForCausalLM))
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16))
        {
            throw new ArgumentException($"dtype must be Float32, BFloat16 or Float16; got {dtype}.", nameof(dtype));
        }

        device ??= CPU;
        Config = config;
        DType = dtype;
        model = new MistralModel(config, dtype, device);
        lmHead = new Linear(config.HiddenSize, config.VocabSize, false, dtype, device);
        LossChunkRows = ChunkedCausalLoss.DefaultChunkRows(config.VocabSize);
        RegisterComponents();
        (_deviceType, _deviceIndex) = ModuleDevice.Origin(device);
    }

    /// <summary>The architecture.</summary>
    public MistralConfig Config { get; }

    /// <summary>The dtype the model was built in.</summary>
    public ScalarType DType { get; }

    /// <summary>The decoder stack.</summary>
    public MistralModel Model => model;

    /// <summary>The output projection.</summary>
    public nn.Module<Tensor, Tensor> LmHead => lmHead;

    /// <summary>
    /// Activation (gradient) checkpointing of the decoder layers (see <see cref="MistralModel.GradientCheckpointing"/>):
    /// trades a second forward per layer in backward for not keeping the layers' activations. Off by default; effective
    /// only in training mode with grad enabled.
    /// </summary>
    public bool GradientCheckpointing
    {
        get => model.GradientCheckpointing;
        set => model.GradientCheckpointing = value;
    }

    /// <summary>
    /// The device the model computes on (its decoder's final norm's). The token embedding table may be kept in host memory
    /// while everything else is on a GPU (a frozen table looked up row by row); see <see cref="TokenEmbedding"/>.
    /// </summary>
    public Device Device => model.ComputeDevice;

    /// <summary>
    /// Whether bfloat16 CUDA forwards use the fused kernels compiled at run time with NVRTC instead of the equivalent
    /// libtorch ops: RMSNorm and the SiLU-gated product (forward, and backward in training), the rotary embedding in
    /// training, the LoRA combine (forward and backward) and the 4-bit GEMV of QLoRA layers when generating. Same values (bit-identical, or up to float32
    /// summation order). Setting it sets every such module's switch (not <see cref="UseFusedAttention"/>). Default true;
    /// where NVRTC is missing the libtorch ops run whatever the setting (see <see cref="FusedKernelStatus"/>).
    /// </summary>
    public bool UseFusedKernels
    {
        get => ModuleTree.NamedModules(this).Select(m => m.Module).OfType<RmsNorm>().All(n => n.UseFusedKernel);
        set
        {
            foreach (var (_, module) in ModuleTree.NamedModules(this))
            {
                switch (module)
                {
                    case RmsNorm norm:
                        norm.UseFusedKernel = value;
                        break;
                    case MistralMlp mlp:
                        mlp.UseFusedKernels = value;
                        break;
                    case MistralAttention attention:
                        attention.UseFusedTrainingRotary = value; // its UseFusedKernels is UseFusedAttention's
                        break;
                    case IFusedKernelSwitch other:
                        other.UseFusedKernels = value;
                        break;
                }
            }
        }
    }

    /// <summary>
    /// Whether eval-mode bfloat16 CUDA forwards use the fused attention path (rotary embedding and q/k/v layout in one
    /// kernel, grouped-query attention without repeating K/V; see <see cref="MistralAttention.UseFusedKernels"/>).
    /// Default false: measured slower for prefill on an H100 (BENCHMARKS.md). Setting it sets every layer's attention.
    /// </summary>
    public bool UseFusedAttention
    {
        get => ModuleTree.NamedModules(this).Select(m => m.Module).OfType<MistralAttention>().All(a => a.UseFusedKernels);
        set
        {
            foreach (var attention in ModuleTree.NamedModules(this).Select(m => m.Module).OfType<MistralAttention>())
            {
                attention.UseFusedKernels = value;
            }
        }
    }

    /// <summary>
    /// Whether decoding steps on CUDA in bfloat16 use the fused decoding attention (rotary embedding writing k/v straight
    /// into the cache, attention over the cache's grouped heads in place with float32 scores and probabilities, where
    /// libtorch's SDPA rounds the probabilities to bfloat16; see <see cref="MistralAttention.UseFusedDecodeAttention"/>).
    /// Default true. Setting it sets every layer's attention.
    /// </summary>
    public bool UseFusedDecodeAttention
    {
        get => ModuleTree.NamedModules(this).Select(m => m.Module).OfType<MistralAttention>().All(a => a.UseFusedDecodeAttention);
        set
        {
            foreach (var attention in ModuleTree.NamedModules(this).Select(m => m.Module).OfType<MistralAttention>())
            {
                attention.UseFusedDecodeAttention = value;
            }
        }
    }

    /// <summary>
    /// Whether decoding steps on CUDA in bfloat16 compute the projections with fused matrix-vector kernels: one launch for
    /// q, k and v, one for <c>silu(gate) · up</c>, and o_proj and down_proj each with its residual add (see
    /// <see cref="MistralAttention.UseFusedDecodeProjections"/>, <see cref="MistralMlp.UseFusedDecodeProjections"/>).
    /// Plain bf16 projections take them for batches of at most 2 rows, 4-bit ones for at most 8; adapters never. Default
    /// true. Setting it sets every layer's.
    /// </summary>
    public bool UseFusedDecodeProjections
    {
        get => ModuleTree.NamedModules(this).Select(m => m.Module).OfType<MistralAttention>().All(a => a.UseFusedDecodeProjections)
            && ModuleTree.NamedModules(this).Select(m => m.Module).OfType<MistralMlp>().All(a => a.UseFusedDecodeProjections);
        set
        {
            foreach (var (_, module) in ModuleTree.NamedModules(this))
            {
                if (module is MistralAttention attention)
                {
                    attention.UseFusedDecodeProjections = value;
                }
                else if (module is MistralMlp mlp)
                {
                    mlp.UseFusedDecodeProjections = value;
                }
            }
        }
    }

    /// <summary>Whether the fused CUDA kernels are compiled and in use, or why not (for logs and benchmarks).</summary>
    public static string FusedKernelStatus => Cuda.FusedOps.Status;

    /// <summary>
    /// Rows of hidden states per chunk of the chunked lm_head + cross-entropy of <see cref="CausalLMInput.LossOnly"/>
    /// forwards; by default as many as keep a chunk's float32 logits within 64 MiB. Settable for tests.
    /// </summary>
    internal long LossChunkRows { get; set; }

    /// <summary>
    /// Runs the model: float32 logits, and the loss when labels are given; only the loss with
    /// <see cref="CausalLMInput.LossOnly"/>.
    /// </summary>
    /// <exception cref="ArgumentException">The labels' shape differs from the ids', or <see cref="CausalLMInput.LossOnly"/> is set without labels.</exception>
    public override CausalLMOutput forward(CausalLMInput input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (input.Labels is Tensor l && !l.shape.SequenceEqual(input.InputIds.shape))
        {
            throw new ArgumentException(
                $"Labels must have the shape of InputIds [{string.Join(", ", input.InputIds.shape)}]; got [{string.Join(", ", l.shape)}].", nameof(input));
        }

        if (input.LossOnly && input.Labels is null)
        {
            throw new ArgumentException("LossOnly computes only the loss, which needs Labels; none were given.", nameof(input));
        }

        using var scope = NewDisposeScope();
        Tensor hidden = model.forward(input);
        if (input.LossOnly)
        {
            Tensor labels = input.Labels!;
            Tensor lossOnly = lmHead is Linear { Bias: null } head
                ? ChunkedCausalLoss.Compute(hidden, head.Weight, labels, LossChunkRows)
                : CausalLoss(lmHead.forward(hidden).to_type(ScalarType.Float32), labels.to(hidden.device));
            return CausalLMOutput.FromLossOnly(lossOnly.MoveToOuterDisposeScope());
        }

        if (input.LastPositionLogitsOnly && input.Labels is null)
        {
            hidden = hidden.narrow(1, hidden.shape[1] - 1, 1);
        }

        Tensor logits = lmHead.forward(hidden).to_type(ScalarType.Float32);
        Tensor? loss = input.Labels is Tensor y ? CausalLoss(logits, y.to(logits.device)) : null;
        logits.MoveToOuterDisposeScope();
        loss?.MoveToOuterDisposeScope();
        return new CausalLMOutput(logits, loss);
    }

    /// <summary>Hugging Face's causal LM loss: mean cross-entropy of logits[:, :-1] against labels[:, 1:], ignoring −100.</summary>
    public static Tensor CausalLoss(Tensor logits, Tensor labels)
    {
        using var scope = NewDisposeScope();
        long v = logits.shape[^1];
        long t = logits.shape[1];
        Tensor shiftLogits = logits.narrow(1, 0, t - 1).reshape(-1, v).to_type(ScalarType.Float32);
        Tensor shiftLabels = labels.narrow(1, 1, t - 1).reshape(-1).to_type(ScalarType.Int64);
        return nn.functional.cross_entropy(shiftLogits, shiftLabels, ignore_index: -100).MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public void ReplaceChild(string name, nn.Module replacement) => ModuleTree.ReplaceField(this, name, replacement);
}
