using Mistral.Core.Modeling;
using Mistral.Core.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Pipeline;

/// <summary>
/// Scores log p(continuation | prompt) for several continuations of one prompt: the shared prefix is run once into a KV
/// cache, which is copied once per label (<see cref="KvCache.RepeatRows"/>, in batches of at most
/// 1 GiB of copies by default) so that every label's remaining tokens run in one right-padded forward: the prompt is
/// computed once and the labels cost one forward per batch, not one per label.
/// </summary>
/// <remarks>
/// SentencePiece may merge the prompt's last characters with a label's first ones, so each "prompt + label" text is
/// tokenized whole and the shared prefix is the longest token prefix common to the prompt and every such text: every label
/// is then scored on the same conditioning tokens, and log p(rest | shared prefix) ranks the labels exactly as
/// log p(prompt + label) does.
/// </remarks>
internal sealed class LabelLikelihoodScorer(MistralForCausalLM model, MistralTokenizer tokenizer, long maxCacheCopyBytes = 1L << 30)
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
        using Tensor first = Forward(promptIds.AsSpan(0, shared).ToArray(), cache); // [V] log-probs of the token after the prefix
        using Tensor firstCpu = first.cpu();
        float[] firstLogProbs = firstCpu.data<float>().ToArray();
        for (int i = 0; i < full.Length; i++)
        {
            scores[i] = firstLogProbs[full[i][shared]];
        }

        // The rest of every label in batches: the prompt's cache copied once per row, the continuations right-padded.
        var needForward = Enumerable.Range(0, full.Length).Where(i => full[i].Length - shared > 1).ToArray();
        int rows = (int)Math.Clamp(maxCacheCopyBytes / Math.Max(cache.BytesPerRow, 1), 1, Math.Max(needForward.Length, 1));
        foreach (int[] chunk in needForward.Chunk(rows))
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var scope = NewDisposeScope();
            int width = chunk.Max(i => full[i].Length - shared - 1);
            var ids = new long[chunk.Length * width];
            var mask = new long[chunk.Length * width];
            for (int r = 0; r < chunk.Length; r++)
            {
                int[] rest = full[chunk[r]][shared..];
                for (int j = 0; j < rest.Length - 1; j++)
                {
                    ids[(r * width) + j] = rest[j];
                    mask[(r * width) + j] = 1;
                }
            }

            using var rowsCache = cache.RepeatRows(chunk.Length);
            Tensor input = tensor(ids, [chunk.Length, width], ScalarType.Int64, model.Device);
            Tensor attention = tensor(mask, [chunk.Length, width], ScalarType.Int64, model.Device);
            using var output = model.forward(new CausalLMInput(input) { AttentionMask = attention, Cache = rowsCache });
            Tensor logProbs = output.Logits.to_type(ScalarType.Float32).log_softmax(-1); // [rows, width, V]: position j predicts rest[j+1]
            var targets = new long[chunk.Length * width];
            for (int r = 0; r < chunk.Length; r++)
            {
                int[] rest = full[chunk[r]][shared..];
                for (int j = 0; j < rest.Length - 1; j++)
                {
                    targets[(r * width) + j] = rest[j + 1];
                }
            }

            Tensor picked = logProbs.gather(2, tensor(targets, [chunk.Length, width, 1], ScalarType.Int64, model.Device)).squeeze(2);
            float[] sums = (picked * attention.to_type(ScalarType.Float32)).sum(1).cpu().data<float>().ToArray();
            for (int r = 0; r < chunk.Length; r++)
            {
                scores[chunk[r]] += sums[r];
            }
        }

        return scores;
    }

    private Tensor Forward(int[] ids, KvCache cache)
    {
        using var scope = NewDisposeScope();
        Tensor input = tensor(ids.Select(x => (long)x).ToArray(), [1, ids.Length], ScalarType.Int64, model.Device);
        Tensor mask = ones([1, ids.Length], ScalarType.Int64, model.Device);
        using var output = model.forward(new CausalLMInput(input) { AttentionMask = mask, Cache = cache, LastPositionLogitsOnly = true });
        return output.Logits.to_type(ScalarType.Float32)[0, -1].log_softmax(-1).MoveToOuterDisposeScope();
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
