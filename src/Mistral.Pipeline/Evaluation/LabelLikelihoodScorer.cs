using Mistral.Core.Modeling;
using Mistral.Core.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Pipeline;

/// <summary>
/// Scores log p(continuation | prompt) for several continuations of one prompt: the shared prefix is run once into a KV
/// cache, then each continuation is run on top of it and the cache cut back (<see cref="KvCache.Truncate"/>), so the
/// prompt is computed once whatever the number of labels.
/// </summary>
/// <remarks>
/// SentencePiece may merge the prompt's last characters with a label's first ones, so each "prompt + label" text is
/// tokenized whole and the shared prefix is the longest token prefix common to the prompt and every such text: every label
/// is then scored on the same conditioning tokens, and log p(rest | shared prefix) ranks the labels exactly as
/// log p(prompt + label) does.
/// </remarks>
internal sealed class LabelLikelihoodScorer(MistralForCausalLM model, MistralTokenizer tokenizer)
{
    public double[] Score(string prompt, IReadOnlyList<string> continuations, bool appendEos, CancellationToken cancellationToken)
    {
        int[] promptIds = tokenizer.Encode(prompt);
        var full = continuations.Select(c =>
        {
            int[] ids = tokenizer.Encode(prompt + c);
            return appendEos ? [.. ids, tokenizer.EosId] : ids;
        }).ToArray();
        int shared = promptIds.Length;
        foreach (int[] ids in full)
        {
            shared = Math.Min(shared, CommonPrefix(promptIds, ids));
            shared = Math.Min(shared, ids.Length - 1); // every continuation scores at least one token
        }

        if (shared < 1)
        {
            throw new InvalidOperationException("Label likelihood needs a prompt of at least one token shared by every label text (BOS is normally that token).");
        }

        int longest = full.Max(f => f.Length - shared);
        var scores = new double[full.Length];
        using var noGrad = inference_mode();
        using var cache = new KvCache(model.Config, 1, shared + longest, model.DType, model.Device, allowRolling: false);
        using Tensor first = Forward(promptIds.AsSpan(0, shared).ToArray(), cache, lastOnly: true); // [V] log-probs of the token after the prefix
        using Tensor firstCpu = first.cpu();
        for (int i = 0; i < full.Length; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int[] rest = full[i][shared..];
            using var scope = NewDisposeScope();
            double total = firstCpu[rest[0]].item<float>();
            if (rest.Length > 1)
            {
                Tensor logProbs = Forward(rest[..^1], cache, lastOnly: false).cpu(); // [n-1, V]: row j predicts rest[j+1]
                Tensor targets = tensor(rest[1..].Select(x => (long)x).ToArray(), ScalarType.Int64);
                total += logProbs.gather(1, targets.unsqueeze(1)).sum().item<float>();
                cache.Truncate(shared);
            }

            scores[i] = total;
        }

        return scores;
    }

    private Tensor Forward(int[] ids, KvCache cache, bool lastOnly)
    {
        using var scope = NewDisposeScope();
        Tensor input = tensor(ids.Select(x => (long)x).ToArray(), [1, ids.Length], ScalarType.Int64, model.Device);
        Tensor mask = ones([1, ids.Length], ScalarType.Int64, model.Device);
        using var output = model.forward(new CausalLMInput(input) { AttentionMask = mask, Cache = cache, LastPositionLogitsOnly = lastOnly });
        Tensor logits = output.Logits.to_type(ScalarType.Float32);
        Tensor result = lastOnly ? logits[0, -1] : logits[0];
        return result.log_softmax(-1).MoveToOuterDisposeScope();
    }

    private static int CommonPrefix(int[] a, int[] b)
    {
        int n = Math.Min(a.Length, b.Length);
        int i = 0;
        while (i < n && a[i] == b[i])
        {
            i++;
        }

        return i;
    }
}
