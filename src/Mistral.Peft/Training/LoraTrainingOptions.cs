namespace Mistral.Peft.Training;

/// <summary>
/// Settings of <see cref="LoraTrainer"/>: the shared <see cref="TrainingOptions"/> (named after Hugging Face
/// <c>TrainingArguments</c>; defaults are the study's — batch 4, accumulation 2, lr 2e-4 constant, max grad norm 0.3,
/// gradient checkpointing — and HF's AdamW defaults) plus what only adapters have. Call <see cref="Validate"/> (the
/// trainer does) to get an exception naming the first invalid option.
/// </summary>
/// <remarks>
/// The study used bitsandbytes' paged 32-bit AdamW; TorchSharp's <c>torch.optim.AdamW</c> performs the same update
/// (32-bit state for float32 adapters) without paging the state to host memory.
/// </remarks>
public sealed record LoraTrainingOptions : TrainingOptions
{
    /// <summary>The <c>base_model_name_or_path</c> recorded in checkpoints' <c>adapter_config.json</c>. Default null.</summary>
    public string? BaseModelNameOrPath { get; init; }

    /// <summary>The study's classification run: 5 epochs, batch 4 × accumulation 2, lr 2e-4 constant (warm-up ratio 0.03, ignored), max grad norm 0.3, gradient checkpointing.</summary>
    public static LoraTrainingOptions Study { get; } = new() { Epochs = 5, WarmupRatio = 0.03 };

    /// <summary>The study's summarization run: <see cref="Study"/> with 1 epoch.</summary>
    public static LoraTrainingOptions StudySummarization { get; } = Study with { Epochs = 1 };

    /// <summary>Checks every option and throws naming the first invalid one (<c>LoraTrainingOptions.{option}</c>).</summary>
    /// <returns>This instance, for chaining.</returns>
    /// <exception cref="ArgumentException">An option is invalid; the message names it and what was expected.</exception>
    public override LoraTrainingOptions Validate()
    {
        base.Validate();
        return this;
    }
}
