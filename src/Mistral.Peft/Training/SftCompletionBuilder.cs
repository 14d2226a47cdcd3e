using Mistral.Core.Tokenization;

namespace Mistral.Peft.Training;

/// <summary>
/// Builds a <see cref="CompletionDataset"/> for completion-only training from prompt/target pairs: each pair becomes
/// <c>BOS + prompt + target + EOS</c> (see <see cref="SftCompletionOptions"/>) with the loss on the target and EOS only
/// (TRL's <c>completion_only_loss</c> / <c>DataCollatorForCompletionOnlyLM</c>). Packing (<see cref="SftPacker"/>) stays
/// the study's recipe; this is the alternative that does not train on prompts.
/// </summary>
/// <remarks>
/// <para>
/// Text pairs are tokenized jointly (<c>prompt + target</c>, one SentencePiece pass, so the ids are those the model sees
/// for the whole text) and the prompt alone; the prompt tokens are the longest common prefix of the two. When a token
/// spans the boundary (e.g. a prompt ending in a space: <c>"▁"</c> alone, <c>"▁word"</c> jointly) the prompt alone is not a
/// prefix of the joint ids: the spanning token and everything after it are labelled as target (they carry target
/// characters, and no prompt-only token is ever trained on after the divergence point), and the pair is counted in
/// <see cref="CompletionDataset.BoundaryMergeCount"/>. End prompts on a token boundary (no trailing space) to avoid it.
/// </para>
/// <para>
/// Examples longer than <see cref="SftCompletionOptions.MaxLength"/> keep their first tokens; those with no target token
/// left are dropped. Both are counted and reported by <see cref="CompletionDataset.Describe"/>; nothing is left out silently.
/// </para>
/// </remarks>
public sealed class SftCompletionBuilder
{
    /// <summary>Creates a builder.</summary>
    /// <param name="options">Options (validated here); null for the defaults.</param>
    /// <exception cref="ArgumentException">An option is invalid; the message names it.</exception>
    public SftCompletionBuilder(SftCompletionOptions? options = null)
    {
        Options = (options ?? new SftCompletionOptions()).Validate();
    }

    /// <summary>The options in use.</summary>
    public SftCompletionOptions Options { get; }

    /// <summary>Frames already-tokenized pairs (ids without BOS/EOS; the options add them).</summary>
    /// <param name="examples">The pairs, in order.</param>
    /// <param name="cancellationToken">Checked between pairs.</param>
    /// <returns>The dataset, with truncation and drop counts.</returns>
    /// <exception cref="ArgumentException">
    /// A pair or its id list is null, holds a negative id, or has no target token (an empty target without EOS); the
    /// message gives its index.
    /// </exception>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    public CompletionDataset Build(IEnumerable<TokenizedCompletion> examples, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(examples);
        var state = new BuildState(Options);
        int index = 0;
        foreach (var example in examples)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (example is null)
            {
                throw new ArgumentException($"examples[{index}] is null.", nameof(examples));
            }

            CheckIds(example.PromptIds, index, nameof(TokenizedCompletion.PromptIds));
            CheckIds(example.TargetIds, index, nameof(TokenizedCompletion.TargetIds));
            state.Add(index, example.PromptIds, example.TargetIds, boundaryMerged: false);
            index++;
        }

        return state.Finish(index);
    }

    /// <summary>
    /// Tokenizes text pairs (content only: BOS, EOS and the default padding come from the tokenizer's ids, which replace
    /// <see cref="SftCompletionOptions.BosId"/>/<see cref="SftCompletionOptions.EosId"/>) and frames them. See the remarks
    /// for how the prompt/target boundary is found.
    /// </summary>
    /// <param name="examples">The pairs, in order.</param>
    /// <param name="tokenizer">The model's tokenizer.</param>
    /// <param name="cancellationToken">Checked between pairs.</param>
    /// <returns>The dataset, with truncation, drop and boundary-merge counts.</returns>
    /// <exception cref="ArgumentException">A pair, its prompt or its target is null, or a pair has no target token; the message gives its index.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    public CompletionDataset Build(IEnumerable<CompletionExample> examples, MistralTokenizer tokenizer, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(examples);
        ArgumentNullException.ThrowIfNull(tokenizer);
        var state = new BuildState(Options with { BosId = tokenizer.BosId, EosId = tokenizer.EosId });
        int index = 0;
        foreach (var example in examples)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (example is null || example.Prompt is null || example.Target is null)
            {
                string what = example is null ? "" : example.Prompt is null ? ".Prompt" : ".Target";
                throw new ArgumentException($"examples[{index}]{what} is null.", nameof(examples));
            }

            var (prompt, target, merged) = Split(tokenizer, example.Prompt, example.Target);
            state.Add(index, prompt, target, merged);
            index++;
        }

        return state.Finish(index);
    }

    /// <summary>
    /// Tokenizes <c>prompt + target</c> and <c>prompt</c> (no special tokens) and splits the joint ids after their longest
    /// common prefix; <c>Merged</c> when the prompt's own ids are not all a prefix (a token spans the boundary).
    /// </summary>
    internal static (int[] Prompt, int[] Target, bool Merged) Split(MistralTokenizer tokenizer, string prompt, string target)
    {
        int[] joint = tokenizer.Encode(prompt + target, addBeginningOfSentence: false, addEndOfSentence: false);
        int[] alone = tokenizer.Encode(prompt, addBeginningOfSentence: false, addEndOfSentence: false);
        int k = 0;
        while (k < joint.Length && k < alone.Length && joint[k] == alone[k])
        {
            k++;
        }

        return (joint[..k], joint[k..], k < alone.Length);
    }

    private static void CheckIds(IReadOnlyList<int>? ids, int index, string name)
    {
        if (ids is null)
        {
            throw new ArgumentException($"examples[{index}].{name} is null.", "examples");
        }

        for (int j = 0; j < ids.Count; j++)
        {
            if (ids[j] < 0)
            {
                throw new ArgumentException($"examples[{index}].{name}[{j}] is a negative token id ({ids[j]}).", "examples");
            }
        }
    }

    private sealed class BuildState(SftCompletionOptions options)
    {
        private readonly List<CompletionSequence> _sequences = [];
        private readonly List<int> _dropped = [];
        private long _truncatedTokens;
        private int _merged;

        public void Add(int index, IReadOnlyList<int> prompt, IReadOnlyList<int> target, bool boundaryMerged)
        {
            int bos = options.PrependBos ? 1 : 0;
            int eos = options.AppendEos ? 1 : 0;
            int promptLength = bos + prompt.Count;
            int length = promptLength + target.Count + eos;
            if (length - Math.Max(promptLength, 1) <= 0)
            {
                throw new ArgumentException(
                    $"examples[{index}] has no target token to learn ({target.Count} target ids, AppendEos {options.AppendEos}; the first token of an example is never predicted).",
                    "examples");
            }

            if (boundaryMerged)
            {
                _merged++;
            }

            int kept = Math.Min(length, options.MaxLength);
            if (kept - Math.Max(promptLength, 1) <= 0)
            {
                _dropped.Add(index);
                return;
            }

            int[] ids = new int[kept];
            int o = 0;
            if (bos == 1)
            {
                ids[o++] = options.BosId;
            }

            for (int j = 0; j < prompt.Count && o < kept; j++)
            {
                ids[o++] = prompt[j];
            }

            for (int j = 0; j < target.Count && o < kept; j++)
            {
                ids[o++] = target[j];
            }

            if (eos == 1 && o < kept)
            {
                ids[o++] = options.EosId;
            }

            _truncatedTokens += length - kept;
            _sequences.Add(new CompletionSequence(index, ids, promptLength, truncated: kept < length));
        }

        public CompletionDataset Finish(int sourceCount) =>
            new(_sequences, options, sourceCount, _dropped, _truncatedTokens, _merged);
    }
}
