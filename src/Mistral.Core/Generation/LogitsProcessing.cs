using static TorchSharp.torch;

namespace Mistral.Core.Generation;

/// <summary>The logits transformations of Hugging Face's sampling, in its order: repetition penalty, temperature, top-k, top-p.</summary>
public static class LogitsProcessing
{
    /// <summary>HF's repetition penalty on float32 logits [B, V]: for tokens in <paramref name="seen"/> [B, N], negative logits are multiplied and positive ones divided by the penalty.</summary>
    public static Tensor RepetitionPenalty(Tensor logits, Tensor seen, double penalty)
    {
        if (penalty == 1.0 || seen.shape[1] == 0)
        {
            return logits.alias();
        }

        using var scope = NewDisposeScope();
        Tensor score = logits.gather(1, seen);
        Tensor penalised = where(score.lt(0), score * penalty, score / penalty);
        return logits.scatter(1, seen, penalised).MoveToOuterDisposeScope();
    }

    /// <summary>Keeps the <paramref name="k"/> largest logits per row (ties with the k-th kept), the rest −∞.</summary>
    public static Tensor TopK(Tensor logits, int k)
    {
        if (k <= 0 || k >= logits.shape[^1])
        {
            return logits.alias();
        }

        using var scope = NewDisposeScope();
        Tensor kth = logits.topk(k, dim: -1).values.narrow(-1, k - 1, 1);
        return logits.masked_fill(logits.lt(kth), float.NegativeInfinity).MoveToOuterDisposeScope();
    }

    /// <summary>HF's nucleus filter: sort ascending, drop tokens whose cumulative probability is ≤ 1 − p (always keeping the most likely).</summary>
    public static Tensor TopP(Tensor logits, double p)
    {
        if (p >= 1.0)
        {
            return logits.alias();
        }

        using var scope = NewDisposeScope();
        (Tensor sorted, Tensor indices) = logits.sort(dim: -1, descending: false);
        Tensor cumulative = sorted.softmax(-1).cumsum(-1);
        Tensor remove = cumulative.le(1 - p);
        remove.narrow(-1, remove.shape[^1] - 1, 1).fill_(false);
        Tensor removeOriginal = remove.scatter(1, indices, remove);
        return logits.masked_fill(removeOriginal, float.NegativeInfinity).MoveToOuterDisposeScope();
    }
}
