using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.autograd;

namespace Mistral.Core.Modeling;

/// <summary>
/// Hugging Face's causal LM loss fused with a bias-free lm_head and computed in chunks of rows, so that the full float32
/// logits [batch, seq, vocab] never exist: the value and gradients of
/// <c>CausalLoss(linear(hidden, weight).to(float32), labels)</c> (<see cref="MistralForCausalLM.CausalLoss"/>) at the
/// memory of one chunk of logits.
/// </summary>
/// <remarks>
/// <para>Row r of <c>hidden</c> [batch·seq, hidden] predicts the label at position r + 1 of its sequence; the last
/// position of each sequence predicts nothing (its shifted label is −100). Rows whose label is −100 contribute neither
/// loss nor gradient; the loss is the sum of the other rows' cross-entropy divided by their count (NaN, 0/0, when
/// there is none, as <see cref="nn.functional.cross_entropy"/> gives).</para>
/// <para>Forward, per chunk: the logits in the weight's dtype exactly as the lm_head computes them, then float32, their
/// logsumexp and the target logit. Only the per-row logsumexp (float32 [rows]) and the shifted labels are kept, besides
/// the hidden states and the weight, which exist anyway. Backward recomputes each chunk's logits (one more lm_head
/// matmul per chunk): the float32 gradient <c>(softmax − onehot) · grad / count</c> is rounded to the weight's dtype,
/// as autograd rounds it through <c>.to(float32)</c> of the unchunked graph, then multiplied by the weight for the
/// hidden states' gradient. When the weight requires a gradient it is accumulated over the chunks in float32 and
/// rounded to the weight's dtype once (the unchunked graph's single matmul also accumulates in float32).</para>
/// <para>Nothing is read back to the host (no synchronisation): the counts stay on the device. Labels must be −100 or
/// in [0, vocab) as for <see cref="nn.functional.cross_entropy"/>; an out-of-range label fails the gather.</para>
/// </remarks>
internal static class ChunkedCausalLoss
{
    /// <summary>float32 logits elements one chunk may hold: 16 Mi (64 MiB), 524 rows of a 32,000-token vocabulary.</summary>
    internal const long ChunkElementBudget = 16L << 20;

    /// <summary>The default rows per chunk for a vocabulary of <paramref name="vocab"/> tokens (at least 1).</summary>
    internal static long DefaultChunkRows(long vocab) => Math.Max(1, ChunkElementBudget / vocab);

    /// <summary>
    /// The mean shifted cross-entropy (scalar float32) of <c>linear(hidden, weight)</c> against <paramref name="labels"/>,
    /// differentiable with respect to <paramref name="hidden"/> and <paramref name="weight"/> where they require grad.
    /// </summary>
    /// <param name="hidden">[batch, seq, hidden] final hidden states, in the weight's dtype.</param>
    /// <param name="weight">[vocab, hidden] lm_head weight.</param>
    /// <param name="labels">[batch, seq] labels (unshifted, as given to the model); −100 is ignored.</param>
    /// <param name="chunkRows">Rows of <c>hidden</c> per chunk (≥ 1).</param>
    internal static Tensor Compute(Tensor hidden, Tensor weight, Tensor labels, long chunkRows)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(chunkRows);
        using var scope = NewDisposeScope();
        long width = hidden.size(-1);
        Tensor rows = hidden.reshape(-1, width);
        Tensor shifted = ShiftLabels(labels.to(ScalarType.Int64, hidden.device));
        bool needsGrad = is_grad_enabled() && (rows.requires_grad || weight.requires_grad);
        Tensor loss = needsGrad
            ? ChunkedCausalLossFunction.apply(rows, weight, shifted, new ChunkedLossCall(chunkRows, rows.requires_grad, weight.requires_grad))
            : Forward(rows, weight, shifted, chunkRows).Loss;
        return loss.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// [batch·seq] labels of each row: labels[:, 1:] followed by −100 for the last position of each sequence.
    /// </summary>
    internal static Tensor ShiftLabels(Tensor labels)
    {
        using var scope = NewDisposeScope();
        long batch = labels.size(0);
        long seq = labels.size(1);
        Tensor next = labels.narrow(1, 1, seq - 1);
        Tensor none = full([batch, 1], -100L, ScalarType.Int64, labels.device);
        return cat([next, none], 1).reshape(-1).MoveToOuterDisposeScope();
    }

    /// <summary>The loss, each row's float32 logsumexp and the count of labels ≠ −100 (float32), without a graph.</summary>
    internal static (Tensor Loss, Tensor LogSumExp, Tensor Count) Forward(Tensor rows, Tensor weight, Tensor labels, long chunkRows)
    {
        using var scope = NewDisposeScope();
        long n = rows.size(0);
        Tensor lse = empty(n, ScalarType.Float32, rows.device);
        Tensor total = zeros([], ScalarType.Float32, rows.device);
        for (long start = 0; start < n; start += chunkRows)
        {
            using var chunkScope = NewDisposeScope();
            long size = Math.Min(chunkRows, n - start);
            Tensor y = labels.narrow(0, start, size);
            Tensor valid = y.ne(-100);
            Tensor logits = nn.functional.linear(rows.narrow(0, start, size), weight).to_type(ScalarType.Float32);
            Tensor chunkLse = logits.logsumexp(1);
            Tensor target = logits.gather(1, y.masked_fill(valid.logical_not(), 0).unsqueeze(1)).squeeze(1);
            total.add_((chunkLse - target).masked_fill_(valid.logical_not(), 0).sum());
            lse.narrow(0, start, size).copy_(chunkLse);
        }

        Tensor count = labels.ne(-100).sum().to_type(ScalarType.Float32);
        Tensor loss = total.div(count);
        return (loss.MoveToOuterDisposeScope(), lse.MoveToOuterDisposeScope(), count.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// The gradients of <c>grad · loss</c> with respect to the rows (null unless <paramref name="call"/> asks for it) and
    /// the weight (in the weight's dtype; null unless asked for).
    /// </summary>
    internal static (Tensor? Rows, Tensor? Weight) Backward(Tensor rows, Tensor weight, Tensor labels, Tensor lse, Tensor count, Tensor grad,
        ChunkedLossCall call)
    {
        using var scope = NewDisposeScope();
        long n = rows.size(0);
        Tensor scale = grad.to_type(ScalarType.Float32).div(count); // d loss / d (token loss) of a counted row
        Tensor? rowsGrad = call.RowsNeedGrad ? empty_like(rows) : null;
        Tensor? weightGrad = call.WeightNeedsGrad ? zeros(weight.shape, ScalarType.Float32, weight.device) : null;
        for (long start = 0; start < n; start += call.ChunkRows)
        {
            using var chunkScope = NewDisposeScope();
            long size = Math.Min(call.ChunkRows, n - start);
            Tensor h = rows.narrow(0, start, size);
            Tensor y = labels.narrow(0, start, size);
            Tensor valid = y.ne(-100);
            Tensor logits = nn.functional.linear(h, weight).to_type(ScalarType.Float32);
            Tensor g = logits.sub_(lse.narrow(0, start, size).unsqueeze(1)).exp_(); // softmax
            g.scatter_add_(1, y.masked_fill(valid.logical_not(), 0).unsqueeze(1), valid.to_type(ScalarType.Float32).neg().unsqueeze(1));
            // Ignored rows get exactly 0 (also when count is 0 and scale is infinite).
            Tensor rowScale = scale.expand(size).masked_fill(valid.logical_not(), 0);
            g.mul_(rowScale.unsqueeze(1));
            Tensor gm = g.to_type(weight.dtype); // what autograd passes back through .to(float32)
            rowsGrad?.narrow(0, start, size).copy_(gm.mm(weight));
            weightGrad?.addmm_(gm.to_type(ScalarType.Float32).t(), h.to_type(ScalarType.Float32));
        }

        return (rowsGrad?.MoveToOuterDisposeScope(), weightGrad?.to_type(weight.dtype).MoveToOuterDisposeScope());
    }
}

/// <summary>What <see cref="ChunkedCausalLossFunction"/> needs in backward besides its saved tensors.</summary>
/// <param name="ChunkRows">Rows per chunk.</param>
/// <param name="RowsNeedGrad">Whether the hidden states need a gradient.</param>
/// <param name="WeightNeedsGrad">Whether the lm_head weight needs a gradient.</param>
internal sealed record ChunkedLossCall(long ChunkRows, bool RowsNeedGrad, bool WeightNeedsGrad);

/// <summary>
/// The autograd node of <see cref="ChunkedCausalLoss"/>: <c>apply(rows [N, hidden], weight [vocab, hidden], labels [N]
/// (already shifted), call)</c> → scalar float32 loss.
/// </summary>
/// <remarks>
/// Saved: the rows, the weight, the labels, the per-row logsumexp and the count (libtorch saved variables owned by
/// the node). An exception in backward would cross libtorch's native autograd engine and end the process, so backward
/// does nothing that can throw for inputs the forward accepted.
/// </remarks>
internal sealed class ChunkedCausalLossFunction : SingleTensorFunction<ChunkedCausalLossFunction>
{
    private const string CallKey = "call";

    /// <inheritdoc />
    public override string Name => nameof(ChunkedCausalLossFunction);

    /// <inheritdoc />
    public override Tensor forward(AutogradContext ctx, params object[] vars)
    {
        var rows = (Tensor)vars[0];
        var weight = (Tensor)vars[1];
        var labels = (Tensor)vars[2];
        var call = (ChunkedLossCall)vars[3];
        var (loss, lse, count) = ChunkedCausalLoss.Forward(rows, weight, labels, call.ChunkRows);
        ctx.save_for_backward([rows, weight, labels, lse, count]);
        ctx.save_data(CallKey, call);
        return loss;
    }

    /// <inheritdoc />
    public override List<Tensor> backward(AutogradContext ctx, Tensor grad_output)
    {
        var call = (ChunkedLossCall)ctx.get_data(CallKey);
        Tensor? rowsGrad;
        Tensor? weightGrad;
        using (var scope = NewDisposeScope())
        {
            List<Tensor> saved = ctx.get_saved_variables();
            (rowsGrad, weightGrad) = ChunkedCausalLoss.Backward(saved[0], saved[1], saved[2], saved[3], saved[4], grad_output, call);
            rowsGrad?.MoveToOuterDisposeScope();
            weightGrad?.MoveToOuterDisposeScope();
        }

        return GradientHandOff.Return(grad_output, [rowsGrad!, weightGrad!, null!, null!]);
    }
}
