using Microsoft.Extensions.Logging;
using Mistral.Core.Modeling;
using Mistral.Core.Tokenization;
using Mistral.Eval.Data;
using Mistral.Peft.Lora;

namespace Mistral.Pipeline;

/// <summary>A pipeline whose adapter was trained by <see cref="MistralPipeline.Train(IReadOnlyList{Example})"/>: evaluate it, save its adapter or a merged checkpoint.</summary>
public sealed class TrainedPipeline : LoadedPipeline
{
    internal TrainedPipeline(PipelineSettings settings, MistralForCausalLM model, MistralTokenizer tokenizer, LoraModel lora, ILoggerFactory loggers,
        IReadOnlyList<Example> training, TrainingSummary summary)
        : base(settings, model, tokenizer, lora, loggers)
    {
        TrainingExamples = training;
        TrainingSummary = summary;
    }

    /// <summary>What training did (steps, losses, time, memory, whether it was cancelled).</summary>
    public TrainingSummary Training => TrainingSummary!;

    /// <summary>Whether training was cancelled (the adapter holds the steps taken so far).</summary>
    public bool Cancelled => Training.Cancelled;
}
