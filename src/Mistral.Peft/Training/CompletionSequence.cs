using System.Collections.ObjectModel;

namespace Mistral.Peft.Training;

/// <summary>
/// One framed example of a <see cref="CompletionDataset"/>: <c>BOS + prompt + target + EOS</c> (possibly truncated). Its
/// labels are −100 on the first <see cref="PromptLength"/> tokens and the ids themselves after.
/// </summary>
public sealed class CompletionSequence
{
    private readonly int[] _ids;

    internal CompletionSequence(int sourceIndex, int[] ids, int promptLength, bool truncated)
    {
        SourceIndex = sourceIndex;
        _ids = ids;
        InputIds = new ReadOnlyCollection<int>(ids);
        PromptLength = promptLength;
        Truncated = truncated;
    }

    /// <summary>The index of the pair this example was built from, in the order the pairs were given.</summary>
    public int SourceIndex { get; }

    /// <summary>The token ids: BOS, prompt, target, EOS (as configured), cut to the maximum length.</summary>
    public IReadOnlyList<int> InputIds { get; }

    /// <summary>Leading tokens labelled −100 (BOS and the prompt): not in the loss.</summary>
    public int PromptLength { get; }

    /// <summary>Whether the example was longer than the maximum length and lost its end.</summary>
    public bool Truncated { get; }

    /// <summary>Tokens in the example.</summary>
    public int Length => _ids.Length;

    /// <summary>
    /// Tokens whose prediction is in the loss: the tokens after the prompt (a token at position 0 has nothing to be
    /// predicted from and never counts). At least 1 for every example of a dataset.
    /// </summary>
    public int TargetTokens => _ids.Length - Math.Max(PromptLength, 1);

    /// <summary>The labels: −100 on the prompt, the id elsewhere (a new array).</summary>
    /// <returns>The labels, one per token.</returns>
    public int[] Labels()
    {
        int[] labels = (int[])_ids.Clone();
        Array.Fill(labels, -100, 0, PromptLength);
        return labels;
    }

    internal int[] Ids => _ids;
}
