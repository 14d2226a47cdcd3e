using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using Mistral.Core.Configuration;
using static TorchSharp.torch;

namespace Mistral.Core.Modeling;

/// <summary>
/// Grouped-query self-attention with rotary embeddings and a sliding window, computed by
/// <c>scaled_dot_product_attention</c> (key/value heads repeated to the query heads first).
/// </summary>
public sealed class MistralAttention : nn.Module<Tensor, AttentionContext, Tensor>, IReplaceableChildren
{
    [ComponentName(Name = "q_proj")]
    private nn.Module<Tensor, Tensor> qProj;
    [ComponentName(Name = "k_proj")]
    private nn.Module<Tensor, Tensor> kProj;
    [ComponentName(Name = "v_proj")]
    private nn.Module<Tensor, Tensor> vProj;
    [ComponentName(Name = "o_proj")]
    private nn.Module<Tensor, Tensor> oProj;

    private readonly int layerIndex;
    private readonly int heads;
    private readonly int kvHeads;
    private readonly int headDim;

    /// <summary>Creates the attention block of layer <paramref name="layerIndex"/>.</summary>
    public MistralAttention(MistralConfig config, int layerIndex, ScalarType dtype, Device device)
        : base(nameof(MistralAttention))
    {
        this.layerIndex = layerIndex;
        heads = config.NumAttentionHeads;
        kvHeads = config.NumKeyValueHeads;
        headDim = config.HeadDim;
        qProj = new Linear(config.HiddenSize, heads * headDim, false, dtype, device);
        kProj = new Linear(config.HiddenSize, kvHeads * headDim, false, dtype, device);
        vProj = new Linear(config.HiddenSize, kvHeads * headDim, false, dtype, device);
        oProj = new Linear(heads * headDim, config.HiddenSize, false, dtype, device);
        RegisterComponents();
        (_deviceType, _deviceIndex) = ModuleDevice.Origin(device);
    }

    /// <summary>
    /// Whether a bfloat16 CUDA forward without autograd in eval mode rotates and lays out q/k/v in one fused kernel and
    /// attends with the grouped key/value heads as they are (the query heads of a group folded into the query length)
    /// instead of repeating them. Same values. Default false: on the H100 of 2026-12-07 it made prefill slower
    /// (33 → 61 ms for 128 tokens) without speeding up decoding (BENCHMARKS.md); set it through
    /// <see cref="MistralForCausalLM.UseFusedAttention"/> to measure on your hardware.
    /// </summary>
    public bool UseFusedKernels { get; set; }

    /// <summary>
    /// Whether a bfloat16 CUDA forward with autograd (training, and a checkpointed layer's no-grad first forward in
    /// training mode) applies the rotary embedding with one fused kernel per projection each way instead of HF's
    /// <c>rotate_half</c> ops: bit-identical values and gradients. Default true; set through
    /// <see cref="MistralForCausalLM.UseFusedKernels"/> with the other training kernels.
    /// </summary>
    public bool UseFusedTrainingRotary { get; set; } = true;

    /// <summary>
    /// Whether decoding steps (one new token per row, with a KV cache) in a bfloat16 CUDA forward without autograd rotate
    /// q/k/v in one fused kernel and attend with a fused kernel that reads the grouped key/value heads of the cache in
    /// place, with float32 scores and softmax — instead of libtorch's RoPE ops, repeated K/V and
    /// <c>scaled_dot_product_attention</c>, whose cuDNN backend builds a new plan for every new key length. Default true
    /// (checked by the GPU test lane on an H100); set it false through <see cref="MistralForCausalLM.UseFusedDecodeAttention"/>
    /// for libtorch's path.
    /// </summary>
    public bool UseFusedDecodeAttention { get; set; } = true;

    /// <summary>
    /// Whether a decoding step in a bfloat16 CUDA forward without autograd computes q, k and v with one fused
    /// matrix-vector kernel, and o_proj with the residual add in the same pass (float32 sums, bf16 roundings where the
    /// separate ops round; only the summation order differs). Applies while the projections are plain bf16
    /// <see cref="Linear"/> layers (batches of at most 2 rows, where it beats cuBLAS) or 4-bit layers (at most 8 rows), not
    /// adapters. Default true; set it false through <see cref="MistralForCausalLM.UseFusedDecodeProjections"/>.
    /// </summary>
    public bool UseFusedDecodeProjections { get; set; } = true;

    /// <summary>Attends over <paramref name="hidden"/> [B, T, hidden] with the step's shared state.</summary>
    public override Tensor forward(Tensor hidden, AttentionContext ctx) => Forward(hidden, ctx, null);

    /// <summary>
    /// <paramref name="residual"/> + this attention of <paramref name="hidden"/> (the decoder layer's first half): in a
    /// decoding step with <see cref="UseFusedDecodeProjections"/>, o_proj and the add run as one kernel.
    /// </summary>
    internal Tensor ForwardResidual(Tensor hidden, AttentionContext ctx, Tensor residual) => Forward(hidden, ctx, residual);

    private Tensor Forward(Tensor hidden, AttentionContext ctx, Tensor? residual)
    {
        ArgumentNullException.ThrowIfNull(ctx);
        using var scope = NewDisposeScope();
        long b = hidden.size(0);
        long t = hidden.size(1);
        Tensor q;
        Tensor k;
        Tensor v;
        // Inference only: in training, a checkpointed layer's no-grad forward must compute what its recomputation will.
        bool inference = !training && !is_grad_enabled() && hidden.device.type == DeviceType.CUDA;
        bool fusedDecode = UseFusedDecodeAttention && inference && t == 1 && ctx.Cache is not null;
        Tensor qp;
        Tensor kp;
        Tensor vp;
        if (UseFusedDecodeProjections && inference && t == 1 && qProj is IFusedDecodeProjection fusedQ
            && fusedQ.TryProjectWith(hidden.reshape(b, -1), [kProj, vProj], siluUp: false) is Tensor qkv)
        {
            // One launch for the three projections; q, k and v are column slices of its rows.
            Tensor rows = qkv.view(b, 1, -1);
            long qWidth = heads * headDim;
            long kvWidth = kvHeads * headDim;
            qp = rows.narrow(2, 0, qWidth);
            kp = rows.narrow(2, qWidth, kvWidth);
            vp = rows.narrow(2, qWidth + kvWidth, kvWidth);
        }
        else
        {
            qp = qProj.forward(hidden);
            kp = kProj.forward(hidden);
            vp = vProj.forward(hidden);
        }

        bool fused = UseFusedKernels && inference;
        // A decoding step writes k and v straight into the cache slots from the same kernel.
        bool cacheWritten = false;
        if (fusedDecode && ctx.Cache is KvCache c0 && ctx.CacheStep is { WriteFirst: true } s0
            && Cuda.FusedOps.RotaryHeads(qp, kp, vp, ctx.Cos, ctx.Sin, heads, kvHeads, headDim, c0.Keys(layerIndex), c0.Values(layerIndex), s0.Slots) is var (dq, dk, dv))
        {
            (q, k, v) = (dq, dk, dv);
            cacheWritten = true;
        }
        else if ((fused || fusedDecode) && Cuda.FusedOps.RotaryHeads(qp, kp, vp, ctx.Cos, ctx.Sin, heads, kvHeads, headDim) is var (fq, fk, fv))
        {
            (q, k, v) = (fq, fk, fv);
        }
        else if (UseFusedTrainingRotary && !inference && Cuda.FusedOps.Rotary(qp, ctx.Cos, ctx.Sin, heads, headDim) is Tensor rq
            && Cuda.FusedOps.Rotary(kp, ctx.Cos, ctx.Sin, kvHeads, headDim) is Tensor rk)
        {
            // Training: one kernel each way per projection where HF's rotate_half takes five forward and eight backward
            // (bit-identical values and gradients).
            (q, k) = (rq, rk);
            v = vp.view(b, t, kvHeads, headDim).transpose(1, 2);
        }
        else
        {
            q = RotaryEmbedding.Apply(qp.view(b, t, heads, headDim).transpose(1, 2), ctx.Cos, ctx.Sin);
            k = RotaryEmbedding.Apply(kp.view(b, t, kvHeads, headDim).transpose(1, 2), ctx.Cos, ctx.Sin);
            v = vp.view(b, t, kvHeads, headDim).transpose(1, 2);
        }

        Tensor keys = k;
        Tensor vals = v;
        if (ctx.Cache is KvCache cache && ctx.CacheStep is KvCacheStep step)
        {
            Tensor cacheK = cache.Keys(layerIndex);
            Tensor cacheV = cache.Values(layerIndex);
            if (step.WriteFirst)
            {
                if (!cacheWritten)
                {
                    cacheK.index_copy_(2, step.Slots, k);
                    cacheV.index_copy_(2, step.Slots, v);
                }

                keys = cacheK.narrow(2, 0, step.Used);
                vals = cacheV.narrow(2, 0, step.Used);
            }
            else
            {
                keys = cat([cacheK, k], 2);
                vals = cat([cacheV, v], 2);
                int keep = (int)step.Slots.size(0);
                cacheK.index_copy_(2, step.Slots, k.narrow(2, step.KeepFrom, keep));
                cacheV.index_copy_(2, step.Slots, v.narrow(2, step.KeepFrom, keep));
            }
        }

        Tensor merged;
        int groups = heads / kvHeads;
        if (fusedDecode && Cuda.FusedOps.DecodeAttention(q, keys, vals, ctx.Mask, heads, kvHeads, headDim) is Tensor decoded)
        {
            merged = decoded;
        }
        else if (fused && groups > 1 && ctx.Mask is Tensor mask)
        {
            // Grouped-query attention without repeating K/V: query head h = kv·G + g, so [B, H, T, D] is [B, KV, G·T, D]
            // and every folded query row of a group attends over that group's keys; the mask repeats per g.
            Tensor foldedQ = q.reshape(b, kvHeads, groups * t, headDim);
            Tensor foldedMask = t == 1
                ? mask.expand(mask.size(0), 1, groups, mask.size(3))
                : mask.unsqueeze(2).expand(mask.size(0), 1, groups, t, mask.size(3)).reshape(mask.size(0), 1, groups * t, mask.size(3));
            Tensor attn = nn.functional.scaled_dot_product_attention(foldedQ, keys, vals, foldedMask);
            merged = attn.reshape(b, heads, t, headDim).transpose(1, 2).reshape(b, t, heads * headDim);
        }
        else
        {
            Tensor attn = ctx.IsCausal
                ? nn.functional.scaled_dot_product_attention(q, RepeatKv(keys), RepeatKv(vals), is_casual: true)
                : nn.functional.scaled_dot_product_attention(q, RepeatKv(keys), RepeatKv(vals), ctx.Mask);
            merged = attn.transpose(1, 2).reshape(b, t, heads * headDim);
        }

        if (residual is null)
        {
            return oProj.forward(merged).MoveToOuterDisposeScope();
        }

        if (UseFusedDecodeProjections && inference && t == 1 && oProj is IFusedDecodeProjection fusedO
            && fusedO.TryProjectWith(merged.reshape(b, -1), [], siluUp: false, residual.reshape(b, -1)) is Tensor summed)
        {
            return summed.view(b, 1, -1).MoveToOuterDisposeScope();
        }

        return (residual + oProj.forward(merged)).MoveToOuterDisposeScope();
    }

    private Tensor RepeatKv(Tensor x)
    {
        int groups = heads / kvHeads;
        if (groups == 1)
        {
            return x;
        }

        long b = x.size(0);
        long s = x.size(2);
        return x.unsqueeze(2).expand(b, kvHeads, groups, s, headDim).reshape(b, heads, s, headDim);
    }

    /// <inheritdoc />
    public void ReplaceChild(string name, nn.Module replacement) => ModuleTree.ReplaceField(this, name, replacement);
}
