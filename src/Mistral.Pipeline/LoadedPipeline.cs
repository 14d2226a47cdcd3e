using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Mistral.Core.Generation;
using Mistral.Core.Modeling;
using Mistral.Core.Tokenization;
using Mistral.Eval.Data;
using Mistral.Peft.Adapters;
using Mistral.Peft.Lora;
using Mistral.Pipeline.Export;

namespace Mistral.Pipeline;

/// <summary>
/// A loaded model with its tokenizer, task and (optionally) adapter, made by <see cref="MistralPipeline.Build"/>. It owns
/// what it loaded (one <see cref="Dispose()"/>) and reuses the loaded base across every evaluation, so zero-shot, few-shot
/// and fine-tuned evaluations of the same test set cost one load.
/// </summary>
/// <remarks>
/// Calls on one pipeline run one at a time (evaluations switch the adapter off and on and change the model's mode):
/// concurrent <see cref="EvaluateAsync"/> calls queue behind each other, and <see cref="Dispose()"/> waits for them.
/// </remarks>
public class LoadedPipeline : IDisposable
{
    private readonly ILoggerFactory _loggers;
    private readonly object _gate = new();
    private bool _disposed;

    internal LoadedPipeline(PipelineSettings settings, MistralForCausalLM model, MistralTokenizer tokenizer, LoraModel? lora, ILoggerFactory loggers)
    {
        Settings = settings;
        Model = model;
        Tokenizer = tokenizer;
        Lora = lora;
        _loggers = loggers;
    }

    /// <summary>The model (4-bit base with QLoRA). Owned by the pipeline: do not dispose it yourself.</summary>
    public MistralForCausalLM Model { get; }

    /// <summary>The checkpoint's tokenizer.</summary>
    public MistralTokenizer Tokenizer { get; }

    /// <summary>The adapters injected into <see cref="Model"/>, or null when the pipeline has none.</summary>
    public LoraModel? Lora { get; }

    /// <summary>The task, or null when none was chosen.</summary>
    public PipelineTask? Task => Settings.Task;

    /// <summary>The seed given to <see cref="MistralPipeline.WithSeed"/>, or null.</summary>
    public long? Seed => Settings.Seed;

    /// <summary>The checkpoint folder this pipeline loaded.</summary>
    public string ModelFolder => Settings.ModelFolder!;

    /// <summary>The training examples (few-shot pool and label order); empty when the pipeline was not trained here.</summary>
    public IReadOnlyList<Example> TrainingExamples { get; private protected set; } = [];

    /// <summary>The training run, when the pipeline was trained here.</summary>
    public TrainingSummary? TrainingSummary { get; private protected set; }

    internal PipelineSettings Settings { get; }

    /// <summary>Whether <see cref="Lora"/> holds trained weights (trained here or loaded with <see cref="MistralPipeline.WithAdapter"/>), not a fresh injection.</summary>
    public bool HasTrainedAdapter => Lora is not null && (Settings.AdapterFolder is not null || TrainingSummary is not null);

    /// <summary>Whether the fine-tuning texts end with EOS (packing or completion-only with <c>AppendEos</c>), so label likelihood scores it.</summary>
    internal bool TrainsWithEos => Settings.CompletionOnly?.AppendEos ?? Settings.Packing.AppendEos;

    internal string Description => Settings.AdapterFolder is { } a ? $"{ModelFolder} + adapter {a}" : ModelFolder;

    /// <summary>Evaluates the pipeline's task on <paramref name="examples"/>: fine-tuned when it has a trained or loaded adapter, else zero-shot.</summary>
    /// <param name="examples">The test examples.</param>
    /// <returns>The report.</returns>
    public EvaluationReport Evaluate(IReadOnlyList<Example> examples) =>
        Evaluate(examples, HasTrainedAdapter ? EvaluationMode.FineTuned() : EvaluationMode.ZeroShot());

    /// <summary>Evaluates the pipeline's task on <paramref name="examples"/> in one mode.</summary>
    /// <param name="examples">The test examples.</param>
    /// <param name="mode"><see cref="EvaluationMode.ZeroShot"/>, <see cref="EvaluationMode.FewShot"/> or <see cref="EvaluationMode.FineTuned"/>.</param>
    /// <param name="options">Batching, context and cost; null for the defaults.</param>
    /// <param name="progress">Told after every batch (and every label-scored example).</param>
    /// <param name="cancellationToken">Checked between batches and examples.</param>
    /// <returns>The report.</returns>
    /// <exception cref="InvalidOperationException">No task was chosen, or fine-tuned mode without an adapter.</exception>
    /// <exception cref="Mistral.Eval.Prompts.PromptTooLongException">A prompt does not fit and the policy is to fail (the message names the example).</exception>
    public EvaluationReport Evaluate(IReadOnlyList<Example> examples, EvaluationMode mode, EvaluationOptions? options = null,
        IProgress<PipelineProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return new Evaluator(this, Logger<Evaluator>()).Run(examples, mode, options ?? Settings.Evaluation, progress, cancellationToken);
        }
    }

    /// <summary><see cref="Evaluate(IReadOnlyList{Example}, EvaluationMode, EvaluationOptions?, IProgress{PipelineProgress}?, CancellationToken)"/> on a worker thread.</summary>
    /// <param name="examples">The test examples.</param>
    /// <param name="mode">The mode.</param>
    /// <param name="options">Options, or null.</param>
    /// <param name="progress">Progress, or null.</param>
    /// <param name="cancellationToken">Cancellation.</param>
    /// <returns>The report.</returns>
    public Task<EvaluationReport> EvaluateAsync(IReadOnlyList<Example> examples, EvaluationMode mode, EvaluationOptions? options = null,
        IProgress<PipelineProgress>? progress = null, CancellationToken cancellationToken = default) =>
        System.Threading.Tasks.Task.Factory.StartNew(() => Evaluate(examples, mode, options, progress, cancellationToken), cancellationToken,
            TaskCreationOptions.LongRunning, TaskScheduler.Default);

    /// <summary>Generates a continuation of <paramref name="prompt"/> with the adapter (when there is one).</summary>
    /// <param name="prompt">The prompt text (BOS is added).</param>
    /// <param name="options">Generation options; null for greedy with 100 new tokens.</param>
    /// <param name="cancellationToken">Cancellation.</param>
    /// <returns>The generated text.</returns>
    public string Generate(string prompt, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        var o = options ?? GenerationOptions.Greedy with { MaxNewTokens = 100 };
        if (Seed is long seed && o.Seed is null)
        {
            o = o with { Seed = unchecked((ulong)seed) };
        }

        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return new TextGenerator(Model, Tokenizer).Generate(prompt, o with { PadTokenId = Tokenizer.PadId ?? Tokenizer.EosId }, cancellationToken).Sequences[0].Text ?? string.Empty;
        }
    }

    /// <summary>Saves the adapter in PEFT's format (<c>adapter_config.json</c> + <c>adapter_model.safetensors</c>), loadable by PEFT and by <see cref="MistralPipeline.WithAdapter"/>.</summary>
    /// <param name="folder">The destination folder.</param>
    /// <param name="cancellationToken">Cancellation.</param>
    /// <exception cref="InvalidOperationException">The pipeline has no adapter.</exception>
    public void SaveAdapter(string folder, CancellationToken cancellationToken = default)
    {
        var lora = Lora ?? throw new InvalidOperationException("SaveAdapter: the pipeline has no adapter (use WithQLoRA/WithLoRA and Train, or WithAdapter).");
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            PeftAdapter.Save(lora, folder, Settings.BaseModelName ?? ModelFolder, cancellationToken);
        }
    }

    /// <summary>
    /// Writes a merged Hugging Face checkpoint: every projection's base weight in 16 bits (a 4-bit base dequantized) with
    /// the adapter's update added in float32, as sharded safetensors with <c>model.safetensors.index.json</c>,
    /// <c>config.json</c> (no quantization) and the tokenizer files — what <c>transformers</c> and serving stacks load.
    /// The pipeline's own model is not changed.
    /// </summary>
    /// <param name="folder">The destination; must not exist or be empty unless <see cref="MergedExportOptions.Overwrite"/> is set (the whole folder appears at once).</param>
    /// <param name="options">Dtype and shard size; null for the defaults.</param>
    /// <param name="progress">Told after each shard.</param>
    /// <param name="cancellationToken">Checked between tensors; a cancelled export leaves nothing behind.</param>
    public void SaveMerged(string folder, MergedExportOptions? options = null, IProgress<PipelineProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            MergedCheckpointWriter.Write(Model, ModelFolder, folder, options ?? new MergedExportOptions(), progress, Logger<MergedExportOptions>(), cancellationToken);
        }
    }

    /// <summary>Frees the model (and its adapter).</summary>
    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Frees the model when <paramref name="disposing"/>.</summary>
    /// <param name="disposing">True from <see cref="Dispose()"/>.</param>
    protected virtual void Dispose(bool disposing)
    {
        lock (_gate)
        {
            // Waits for a running evaluation or export: the model is never freed under it.
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            if (disposing)
            {
                Model.Dispose();
            }
        }
    }

    private protected ILogger Logger<T>() => _loggers.CreateLogger<T>() ?? (ILogger)NullLogger.Instance;
}
