using Mistral.Peft.Training;

namespace Mistral.Peft.Tests.Training;

/// <summary>A synchronous progress sink (Progress&lt;T&gt; posts to the thread pool) with an optional callback.</summary>
internal sealed class ListProgress(Action<TrainingProgress>? onReport = null) : IProgress<TrainingProgress>
{
    public List<TrainingProgress> Reports { get; } = [];

    public void Report(TrainingProgress value)
    {
        Reports.Add(value);
        onReport?.Invoke(value);
    }
}
