namespace Mistral.Eval.Data;

/// <summary>The result of a train/test (or subsample/rest) split: the rows of each side and their positions in the input.</summary>
/// <typeparam name="T">The row type.</typeparam>
/// <param name="Train">The training side (for a subsample: the rows kept), in the order scikit-learn returns them.</param>
/// <param name="Test">The other side (for a subsample: the rows left out), in the order scikit-learn returns them.</param>
/// <param name="TrainIndices">The positions in the input of <paramref name="Train"/>'s rows.</param>
/// <param name="TestIndices">The positions in the input of <paramref name="Test"/>'s rows.</param>
public sealed record DataSplit<T>(
    IReadOnlyList<T> Train,
    IReadOnlyList<T> Test,
    IReadOnlyList<int> TrainIndices,
    IReadOnlyList<int> TestIndices);
