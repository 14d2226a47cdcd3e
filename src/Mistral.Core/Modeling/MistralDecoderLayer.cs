using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using Mistral.Core.Configuration;
using static TorchSharp.torch;

namespace Mistral.Core.Modeling;

/// <summary>A pre-norm decoder block: <c>h = x + attn(norm₁(x)); y = h + mlp(norm₂(h))</c>.</summary>
public sealed class MistralDecoderLayer : nn.Module<Tensor, AttentionContext, Tensor>, IReplaceableChildren
{
    [ComponentName(Name = "self_attn")]
    private MistralAttention selfAttn;
    private MistralMlp mlp;
    [ComponentName(Name = "input_layernorm")]
    private RmsNorm inputLayernorm;
    [ComponentName(Name = "post_attention_layernorm")]
    private RmsNorm postAttentionLayernorm;

    /// <summary>Creates decoder layer <paramref name="layerIndex"/>.</summary>
    public MistralDecoderLayer(MistralConfig config, int layerIndex, ScalarType dtype, Device device)
        : base(nameof(MistralDecoderLayer))
    {
        selfAttn = new MistralAttention(config, layerIndex, dtype, device);
        mlp = new MistralMlp(config, dtype, device);
        inputLayernorm = new RmsNorm(config.HiddenSize, config.RmsNormEps, dtype, device);
        postAttentionLayernorm = new RmsNorm(config.HiddenSize, config.RmsNormEps, dtype, device);
        RegisterComponents();
        (_deviceType, _deviceIndex) = ModuleDevice.Origin(device);
    }

    /// <summary>The attention block.</summary>
    public MistralAttention SelfAttention => selfAttn;

    /// <summary>The MLP block.</summary>
    public MistralMlp Mlp => mlp;

    /// <summary>Runs the block on <paramref name="x"/> [B, T, hidden] with the step's shared attention state.</summary>
    public override Tensor forward(Tensor x, AttentionContext context)
    {
        using var scope = NewDisposeScope();
        // The residual adds happen inside the attention and the MLP, so a decoding step can fuse them into o_proj and down_proj.
        Tensor h = selfAttn.ForwardResidual(inputLayernorm.forward(x), context, x);
        Tensor y = mlp.ForwardResidual(postAttentionLayernorm.forward(h), h);
        return y.MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public void ReplaceChild(string name, nn.Module replacement) => ModuleTree.ReplaceField(this, name, replacement);
}
