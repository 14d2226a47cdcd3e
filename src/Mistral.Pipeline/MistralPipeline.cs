using System.Diagnostics;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Mistral.Core.Checkpoints;
using Mistral.Core.Configuration;
using Mistral.Core.Modeling;
using Mistral.Core.Tokenization;
using Mistral.Eval.Data;
using Mistral.Peft.Adapters;
using Mistral.Peft.Lora;
using Mistral.Peft.Quantization;
using Mistral.Peft.Training;
using Mistral.Pipeline.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Pipeline;

/// <summary>
/// The study's whole workflow as one fluent builder:
/// <code>
/// TrainedPipeline tuned = MistralPipeline.Create()
///     .FromPretrained(folder)
///     .WithQLoRA(r: 16)
///     .ForClassification(labelColumn: "label")
///     .Train(trainExamples);
/// EvaluationReport report = tuned.Evaluate(testExamples);
/// </code>
/// Choices are collected and checked at <see cref="Build"/> / <see cref="Train(IReadOnlyList{Example})"/>, where an invalid or
/// conflicting one fails with a message naming the call. Nothing process-wide is changed (default dtype, device and
/// random generators stay as they were).
/// </summary>
public sealed class MistralPipeline
{
    private PipelineSettings _settings = new();

    private MistralPipeline()
    {
    }

    /// <summary>Starts a pipeline.</summary>
    /// <returns>A new builder.</returns>
    public static MistralPipeline Create() => new();

    /// <summary>A copy of this builder with every choice made so far; calls on the copy leave this one as it was (and the reverse).</summary>
    /// <returns>The copy.</returns>
    public MistralPipeline Clone() => new() { _settings = _settings with { Conflicts = [.. _settings.Conflicts] } };

    /// <summary>The choices made so far (read by the experiments API to resolve a run's configuration).</summary>
    internal PipelineSettings Settings => _settings;

    /// <summary>
    /// The Hugging Face checkpoint to load: a folder (<c>config.json</c>, <c>model.safetensors</c> or a sharded index
    /// (16/32-bit, or a bitsandbytes 4-bit one), and <c>tokenizer.model</c>), or a Hub id such as
    /// <c>mistralai/Mistral-7B-v0.1</c>, downloaded at <see cref="Build"/>/<see cref="Train(IReadOnlyList{Example})"/> into
    /// the cache Python's <c>huggingface_hub</c> uses (or found there; see <see cref="WithHub"/>).
    /// </summary>
    /// <param name="folder">The folder, or a Hub id (<c>org/name</c>; append <c>@revision</c> for a branch, tag or commit).</param>
    /// <param name="baseModelName">The name recorded as <c>base_model_name_or_path</c> in saved adapters (e.g. <c>mistralai/Mistral-7B-v0.1</c>); null records the folder.</param>
    /// <returns>This builder.</returns>
    public MistralPipeline FromPretrained(string folder, string? baseModelName = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(folder);
        _settings = _settings with { ModelFolder = folder, BaseModelName = baseModelName };
        return this;
    }

    /// <summary>
    /// How Hub ids given to <see cref="FromPretrained"/> and HF URIs given to <see cref="TrainAsync(string, IProgress{PipelineProgress}?, CancellationToken)"/> are fetched; default <see cref="Mistral.Hub.HubClientOptions.FromEnvironment"/>
    /// (HF_HOME, HF_HUB_CACHE, HF_TOKEN, HF_ENDPOINT, HF_HUB_OFFLINE).
    /// </summary>
    /// <param name="options">The Hub client options.</param>
    /// <returns>This builder.</returns>
    public MistralPipeline WithHub(Mistral.Hub.HubClientOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _settings = _settings with { Hub = options };
        return this;
    }

    /// <summary>The device to run on; default CUDA when available, else CPU.</summary>
    /// <param name="device">The device.</param>
    /// <returns>This builder.</returns>
    public MistralPipeline OnDevice(Device device)
    {
        ArgumentNullException.ThrowIfNull(device);
        return OnDevice(device.ToString());
    }

    /// <summary>The device by name (<c>"cpu"</c>, <c>"cuda"</c>, <c>"cuda:1"</c>).</summary>
    /// <param name="device">The device name.</param>
    /// <returns>This builder.</returns>
    public MistralPipeline OnDevice(string device)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(device);
        _settings = _settings with { DeviceName = device.Trim().ToLowerInvariant() };
        return this;
    }

    /// <summary>The dtype of the model's 16/32-bit weights and of the 4-bit layers' computation; default bfloat16 on CUDA, float32 on CPU.</summary>
    /// <param name="dtype">BFloat16, Float16 or Float32.</param>
    /// <returns>This builder.</returns>
    public MistralPipeline WithDType(ScalarType dtype)
    {
        _settings = _settings with { DType = dtype };
        return this;
    }

    /// <summary>
    /// Whether a 4-bit model's token embedding table stays in pinned host memory while everything else runs on the GPU
    /// (on unless turned off): each forward's tokens' rows are gathered from there by a kernel on the GPU (same values,
    /// no wait for the device), which keeps the table's bytes off the GPU (250 MiB in bf16 for Mistral-7B) for a frozen
    /// table, as in LoRA/QLoRA; see <see cref="QuantizedLoadOptions.EmbeddingsOnHost"/>. Applies to models loaded in
    /// 4-bit on a GPU; ignored otherwise.
    /// </summary>
    /// <param name="enabled">Whether to keep the table in host memory; <c>false</c> keeps it on the GPU.</param>
    /// <returns>This builder.</returns>
    public MistralPipeline WithEmbeddingsOnHost(bool enabled = true)
    {
        _settings = _settings with { EmbeddingsOnHost = enabled };
        return this;
    }

    /// <summary>
    /// QLoRA, the study's recipe: the base quantized to NF4 with double quantization while loading, LoRA adapters on top.
    /// Defaults are the study's: alpha 16, dropout 0.1, <c>q_proj</c>/<c>v_proj</c>.
    /// </summary>
    /// <param name="r">LoRA rank (the study: 8 classification, 64 summarization).</param>
    /// <param name="alpha">LoRA alpha (scaling alpha/r).</param>
    /// <param name="dropout">Dropout on the LoRA branch.</param>
    /// <param name="targetModules">Module names to adapt; null for <c>q_proj</c>, <c>v_proj</c>. <see cref="LoraOptions.AllProjections"/> adapts all seven.</param>
    /// <param name="useRsLora">rsLoRA scaling alpha/√r.</param>
    /// <param name="nf4">4-bit settings; null for block 64 with double quantization, computing in the pipeline's dtype (<see cref="WithDType"/>).</param>
    /// <returns>This builder.</returns>
    public MistralPipeline WithQLoRA(int r = 16, double alpha = 16, double dropout = 0.1, IReadOnlyList<string>? targetModules = null,
        bool useRsLora = false, Nf4Options? nf4 = null) =>
        SetAdapter(AdapterChoice.QLora, $"WithQLoRA(r: {r})", Lora(r, alpha, dropout, targetModules, useRsLora), nf4);

    /// <summary>LoRA on a 16/32-bit base (no quantization); same defaults as <see cref="WithQLoRA"/>.</summary>
    /// <param name="r">LoRA rank.</param>
    /// <param name="alpha">LoRA alpha.</param>
    /// <param name="dropout">Dropout on the LoRA branch.</param>
    /// <param name="targetModules">Module names to adapt; null for <c>q_proj</c>, <c>v_proj</c>.</param>
    /// <param name="useRsLora">rsLoRA scaling.</param>
    /// <returns>This builder.</returns>
    public MistralPipeline WithLoRA(int r = 16, double alpha = 16, double dropout = 0.1, IReadOnlyList<string>? targetModules = null, bool useRsLora = false) =>
        SetAdapter(AdapterChoice.Lora, $"WithLoRA(r: {r})", Lora(r, alpha, dropout, targetModules, useRsLora), null);

    /// <summary>LoRA with every option of <see cref="LoraOptions"/> (rank, alpha, dropout, targets, rsLoRA, init, seed).</summary>
    /// <param name="options">The adapter options.</param>
    /// <param name="quantizeBase">True for QLoRA (NF4 base), false for a 16/32-bit base.</param>
    /// <returns>This builder.</returns>
    public MistralPipeline WithLoRA(LoraOptions options, bool quantizeBase = false)
    {
        ArgumentNullException.ThrowIfNull(options);
        return SetAdapter(quantizeBase ? AdapterChoice.QLora : AdapterChoice.Lora, $"WithLoRA(options, quantizeBase: {quantizeBase})", options, null);
    }

    /// <summary>A trained PEFT adapter (ours or Python PEFT's) to evaluate or train further.</summary>
    /// <param name="folder">A folder with <c>adapter_config.json</c> and <c>adapter_model.safetensors</c>.</param>
    /// <param name="quantizeBase">Load the base in NF4 (as it was trained with QLoRA) rather than 16/32 bits.</param>
    /// <returns>This builder.</returns>
    public MistralPipeline WithAdapter(string folder, bool quantizeBase = false)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(folder);
        if (_settings.AdapterCall is { } previous)
        {
            _settings.Conflicts.Add($"WithAdapter(\"{folder}\") conflicts with {previous}: WithAdapter loads a trained adapter, {previous} creates a new one. Choose one.");
        }

        _settings = _settings with { AdapterFolder = folder, QuantizeAdapterBase = quantizeBase, AdapterCall = $"WithAdapter(\"{folder}\")" };
        return this;
    }

    /// <summary>Training settings; default <see cref="LoraTrainingOptions.Study"/> (5 epochs, batch 4 × accumulation 2, lr 2e-4 constant, clip 0.3).</summary>
    /// <param name="options">The options.</param>
    /// <returns>This builder.</returns>
    public MistralPipeline WithTrainingOptions(LoraTrainingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _settings = _settings with { Training = options };
        return this;
    }

    /// <summary>Changes some training settings: <c>.WithTrainingOptions(o => o with { Epochs = 1 })</c>.</summary>
    /// <param name="change">Returns the new options from the current ones.</param>
    /// <returns>This builder.</returns>
    public MistralPipeline WithTrainingOptions(Func<LoraTrainingOptions, LoraTrainingOptions> change)
    {
        ArgumentNullException.ThrowIfNull(change);
        return WithTrainingOptions(change(_settings.Training));
    }

    /// <summary>How training texts are packed; default the study's (BOS + text + EOS in one stream, 512-token blocks).</summary>
    /// <param name="options">The packing options (BOS/EOS ids are taken from the tokenizer).</param>
    /// <returns>This builder.</returns>
    public MistralPipeline WithPacking(SftPackingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _settings = _settings with { Packing = options };
        return this;
    }

    /// <summary>
    /// Completion-only training instead of packing: each example is BOS + prompt + target + EOS, the prompt's tokens are
    /// labelled −100 (no loss), micro-batches are right-padded (padding never attended), and a step's loss is averaged over
    /// its target tokens across all accumulated micro-batches (as transformers ≥ 4.46 does).
    /// </summary>
    /// <param name="options">Maximum length and ids; null for 512 tokens (BOS/EOS/pad ids are taken from the tokenizer unless set).</param>
    /// <returns>This builder.</returns>
    public MistralPipeline WithCompletionOnlyTraining(SftCompletionOptions? options = null)
    {
        _settings = _settings with { CompletionOnly = options ?? new SftCompletionOptions() };
        return this;
    }

    /// <summary>Evaluation settings (batch size, context, prompt overflow, cost model).</summary>
    /// <param name="options">The options.</param>
    /// <returns>This builder.</returns>
    public MistralPipeline WithEvaluationOptions(EvaluationOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _settings = _settings with { Evaluation = options };
        return this;
    }

    /// <summary>A folder for training output: adapter checkpoints per epoch (<c>checkpoint-{step}</c>, PEFT format) and on cancellation.</summary>
    /// <param name="folder">The folder (created when absent).</param>
    /// <returns>This builder.</returns>
    public MistralPipeline WithOutputFolder(string folder)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(folder);
        _settings = _settings with { OutputFolder = folder };
        return this;
    }

    /// <summary>Logging for loading, training and evaluation (<see cref="ILogger{T}"/> per component).</summary>
    /// <param name="loggerFactory">The factory.</param>
    /// <returns>This builder.</returns>
    public MistralPipeline WithLogging(ILoggerFactory loggerFactory)
    {
        ArgumentNullException.ThrowIfNull(loggerFactory);
        _settings = _settings with { Loggers = loggerFactory };
        return this;
    }

    /// <summary>
    /// One seed for the LoRA initialisation, the training shuffle and sampling during evaluation. LoRA dropout draws from
    /// TorchSharp's default generator, which the pipeline does not reseed (that would change process-wide state): seed it
    /// yourself (<c>torch.manual_seed</c>) for bit-identical dropout masks.
    /// </summary>
    /// <param name="seed">The seed.</param>
    /// <returns>This builder.</returns>
    public MistralPipeline WithSeed(long seed)
    {
        _settings = _settings with { Seed = seed };
        return this;
    }

    /// <summary>The study's classification task (<see cref="ClassificationTask"/>).</summary>
    /// <param name="labelColumn">The label column of dataset files.</param>
    /// <param name="textColumn">The text column of dataset files.</param>
    /// <returns>This builder.</returns>
    public MistralPipeline ForClassification(string labelColumn = "label", string textColumn = "text") =>
        ForTask(new ClassificationTask(labelColumn, textColumn));

    /// <summary>The study's summarization task (<see cref="SummarizationTask"/>).</summary>
    /// <param name="dialogueColumn">The input column of dataset files.</param>
    /// <param name="summaryColumn">The summary column of dataset files.</param>
    /// <returns>This builder.</returns>
    public MistralPipeline ForSummarization(string dialogueColumn = "dialogue", string summaryColumn = "summary") =>
        ForTask(new SummarizationTask(dialogueColumn, summaryColumn));

    /// <summary>Any task: a configured <see cref="ClassificationTask"/>/<see cref="SummarizationTask"/> or your own <see cref="PipelineTask"/>.</summary>
    /// <param name="task">The task.</param>
    /// <returns>This builder.</returns>
    public MistralPipeline ForTask(PipelineTask task)
    {
        ArgumentNullException.ThrowIfNull(task);
        if (_settings.Task is { } previous && !ReferenceEquals(previous, task))
        {
            _settings.Conflicts.Add($"ForTask({task.Name}) conflicts with an earlier task ({previous.Name}); a pipeline has one task.");
        }

        _settings = _settings with { Task = task };
        return this;
    }

    /// <summary>Loads the model (quantizing it for QLoRA), the tokenizer and the adapter, without training.</summary>
    /// <param name="progress">Told as tensors load.</param>
    /// <param name="cancellationToken">Cancels loading.</param>
    /// <returns>The loaded pipeline (dispose it).</returns>
    /// <exception cref="InvalidOperationException">A required call is missing or two calls conflict (the message names them).</exception>
    public LoadedPipeline Build(IProgress<PipelineProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var settings = Validate("Build", progress, cancellationToken);
        var loggers = settings.Loggers ?? NullLoggerFactory.Instance;
        var (model, tokenizer, lora) = Load(settings, loggers, progress, cancellationToken);
        return new LoadedPipeline(settings, model, tokenizer, lora, loggers);
    }

    /// <summary>Loads, trains the adapter on <paramref name="trainExamples"/> and returns the trained pipeline.</summary>
    /// <param name="trainExamples">Training examples (input, target) as the task reads them.</param>
    /// <returns>The trained pipeline (dispose it).</returns>
    public TrainedPipeline Train(IReadOnlyList<Example> trainExamples) => Train(trainExamples, null, CancellationToken.None);

    /// <summary>
    /// Loads, trains the adapter on <paramref name="trainExamples"/> and returns the trained pipeline. Cancellation does not
    /// throw once training has started: the steps taken stay in the adapter, a checkpoint is saved when an output folder
    /// is set, and <see cref="TrainedPipeline.Cancelled"/> (and every report) says the run was cancelled.
    /// </summary>
    /// <param name="trainExamples">Training examples.</param>
    /// <param name="progress">Told while loading, preparing and after every optimizer step.</param>
    /// <param name="cancellationToken">Stops loading (throws) or training (returns a cancelled pipeline).</param>
    /// <returns>The trained pipeline (dispose it).</returns>
    /// <exception cref="InvalidOperationException">No checkpoint, task or adapter was chosen, or two calls conflict.</exception>
    /// <exception cref="ArgumentException">An example is empty or a token id is outside the model's vocabulary (the message names the example).</exception>
    public TrainedPipeline Train(IReadOnlyList<Example> trainExamples, IProgress<PipelineProgress>? progress, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(trainExamples);
        var settings = Validate("Train", progress, cancellationToken);
        if (settings.Task is null)
        {
            throw new InvalidOperationException("Train: no task; call ForClassification(), ForSummarization() or ForTask(task) first.");
        }

        if (settings.Adapter == AdapterChoice.None && settings.AdapterFolder is null)
        {
            throw new InvalidOperationException("Train: no adapter to train; call WithQLoRA(r: …), WithLoRA(r: …) or WithAdapter(folder) first.");
        }

        if (trainExamples.Count == 0)
        {
            throw new ArgumentException("Train: the training set is empty.", nameof(trainExamples));
        }

        for (int i = 0; i < trainExamples.Count; i++)
        {
            settings.Task.Validate(trainExamples[i], i, nameof(trainExamples));
        }

        var loggers = settings.Loggers ?? NullLoggerFactory.Instance;
        var (model, tokenizer, lora) = Load(settings, loggers, progress, cancellationToken);
        try
        {
            var summary = RunTraining(settings, model, tokenizer, lora!, trainExamples, loggers, progress, cancellationToken);
            return new TrainedPipeline(settings, model, tokenizer, lora!, loggers, trainExamples.ToArray(), summary);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary><see cref="Train(IReadOnlyList{Example}, IProgress{PipelineProgress}?, CancellationToken)"/> on a worker thread.</summary>
    /// <param name="trainExamples">Training examples.</param>
    /// <param name="progress">Progress, or null.</param>
    /// <param name="cancellationToken">Cancellation.</param>
    /// <returns>The trained pipeline.</returns>
    public Task<TrainedPipeline> TrainAsync(IReadOnlyList<Example> trainExamples, IProgress<PipelineProgress>? progress = null, CancellationToken cancellationToken = default) =>
        Task.Factory.StartNew(() => Train(trainExamples, progress, cancellationToken), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    /// <summary>
    /// Reads a dataset file (JSONL, CSV or Parquet), or a Hub dataset's files named by an HF URI
    /// (<c>hf://datasets/org/name/data/train-*.parquet</c>, fetched as <see cref="WithHub"/> says), with the task's columns
    /// and the study's cleaning, and trains on it.
    /// </summary>
    /// <param name="datasetPath">The training file or HF URI (see <see cref="DatasetSource"/>).</param>
    /// <param name="progress">Progress, or null.</param>
    /// <param name="cancellationToken">Cancellation.</param>
    /// <returns>The trained pipeline.</returns>
    public async Task<TrainedPipeline> TrainAsync(string datasetPath, IProgress<PipelineProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var task = _settings.Task ?? throw new InvalidOperationException("TrainAsync(path): no task; call ForClassification(), ForSummarization() or ForTask(task) first.");
        var read = await DatasetSource.ReadAsync(datasetPath, task.Columns, ReadOptions.StudyCleaning, _settings.Hub, cancellationToken).ConfigureAwait(false);
        Logger<MistralPipeline>().LogInformation("{Description}", read.Describe());
        return await TrainAsync(read.Examples, progress, cancellationToken).ConfigureAwait(false);
    }

    private ILogger Logger<T>() => (_settings.Loggers ?? NullLoggerFactory.Instance).CreateLogger<T>();

    private static LoraOptions Lora(int r, double alpha, double dropout, IReadOnlyList<string>? targets, bool rs) =>
        new() { R = r, Alpha = alpha, Dropout = dropout, TargetModules = targets ?? LoraOptions.DefaultTargetModules, UseRsLora = rs };

    private MistralPipeline SetAdapter(AdapterChoice choice, string call, LoraOptions options, Nf4Options? nf4)
    {
        // Calling the same kind again refines it (the last call wins); another kind is a conflict.
        if (_settings.AdapterCall is { } previous && (_settings.AdapterFolder is not null || _settings.Adapter != choice))
        {
            _settings.Conflicts.Add($"{call} conflicts with {previous}: a pipeline has one adapter. Choose one.");
        }

        _settings = _settings with { Adapter = choice, AdapterCall = call, Lora = options, Nf4 = nf4 ?? _settings.Nf4 };
        return this;
    }

    private PipelineSettings Validate(string call, IProgress<PipelineProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var s = _settings;
        if (s.Conflicts.Count == 0 && s.ModelFolder is { } id && !Directory.Exists(id) && Mistral.Hub.HubClient.TryParseModelReference(id, out _, out _))
        {
            s = s with { ModelFolder = ResolveHub(call, id, s.Hub, progress, cancellationToken) };
            _settings = _settings with { ModelFolder = s.ModelFolder, BaseModelName = _settings.BaseModelName ?? id };
            s = s with { BaseModelName = s.BaseModelName ?? id };
        }

        if (s.Conflicts.Count > 0)
        {
            throw new InvalidOperationException($"{call}: {string.Join(" ", s.Conflicts)}");
        }

        if (s.ModelFolder is null)
        {
            throw new InvalidOperationException($"{call}: no model; call FromPretrained(folder) first.");
        }

        if (!Directory.Exists(s.ModelFolder))
        {
            throw new DirectoryNotFoundException($"{call}: FromPretrained(\"{s.ModelFolder}\"): the folder does not exist.");
        }

        if (!File.Exists(Path.Combine(s.ModelFolder, "config.json")))
        {
            throw new FileNotFoundException($"{call}: FromPretrained(\"{s.ModelFolder}\"): no config.json in the folder (a Hugging Face checkpoint folder is expected).",
                Path.Combine(s.ModelFolder, "config.json"));
        }

        if (s.DType is { } dt && dt is not (ScalarType.BFloat16 or ScalarType.Float16 or ScalarType.Float32))
        {
            throw new InvalidOperationException($"{call}: WithDType({dt}): the model runs in BFloat16, Float16 or Float32.");
        }

        if (s.DeviceName is { } name)
        {
            if (name.StartsWith("cuda", StringComparison.Ordinal) && !cuda.is_available())
            {
                throw new InvalidOperationException($"{call}: OnDevice(\"{name}\"): CUDA is not available in this process (is a TorchSharp-cuda backend package referenced, and a GPU visible?).");
            }

            try
            {
                _ = torch.device(name);
            }
            catch (Exception e) when (e is ArgumentException or FormatException or InvalidOperationException)
            {
                throw new InvalidOperationException($"{call}: OnDevice(\"{name}\"): not a device name (expected \"cpu\", \"cuda\" or \"cuda:N\").", e);
            }
        }

        try
        {
            s.Lora?.Validate();
            s.Training.Validate();
            s.Packing.Validate();
            s.Evaluation.Validate();
        }
        catch (ArgumentException e)
        {
            throw new InvalidOperationException($"{call}: {e.Message}", e);
        }

        return s with { Conflicts = [] };
    }

    private static string ResolveHub(string call, string id, Mistral.Hub.HubClientOptions? options, IProgress<PipelineProgress>? progress, CancellationToken cancellationToken)
    {
        Mistral.Hub.HubClient.TryParseModelReference(id, out string repo, out string revision);
        using var hub = new Mistral.Hub.HubClient(options);
        var hubProgress = progress is null ? null : new SyncProgress<Mistral.Hub.HubDownloadProgress>(p =>
            progress.Report(new PipelineProgress(PipelineStage.Loading, p.FilesCompleted, p.TotalFiles, $"downloading {repo}: {p.File}")));
        try
        {
            return hub.ResolveModelFolderAsync(repo, revision, hubProgress, cancellationToken).GetAwaiter().GetResult();
        }
        catch (Mistral.Hub.HubException e)
        {
            throw new InvalidOperationException($"{call}: FromPretrained(\"{id}\"): {e.Message}", e);
        }
    }

    private static (MistralForCausalLM Model, MistralTokenizer Tokenizer, LoraModel? Lora) Load(PipelineSettings s, ILoggerFactory loggers,
        IProgress<PipelineProgress>? progress, CancellationToken cancellationToken)
    {
        string folder = s.ModelFolder!;
        var logger = loggers.CreateLogger<MistralPipeline>();
        Device device = s.DeviceName is { } deviceName ? torch.device(deviceName) : cuda.is_available() ? CUDA : CPU;
        ScalarType dtype = s.DType ?? (device.type == DeviceType.CUDA ? ScalarType.BFloat16 : ScalarType.Float32);
        var config = MistralConfig.FromFile(Path.Combine(folder, "config.json"));
        var tokenizer = MistralTokenizer.FromFolder(folder, TokenizerOptions.BatchedGeneration, loggers.CreateLogger<MistralTokenizer>());
        if (tokenizer.VocabSize > config.VocabSize)
        {
            throw new InvalidDataException($"{folder}: tokenizer.model has {tokenizer.VocabSize} pieces but config.json's vocab_size is {config.VocabSize}; they are not from the same model.");
        }

        bool prequantized = JsonNode.Parse(File.ReadAllText(Path.Combine(folder, "config.json")))?["quantization_config"] is not null;
        bool quantize = s.Adapter == AdapterChoice.QLora || (s.AdapterFolder is not null && s.QuantizeAdapterBase) || prequantized;
        var loadProgress = progress is null ? null : new SyncProgress<CheckpointLoadProgress>(p =>
            progress.Report(new PipelineProgress(PipelineStage.Loading, p.TensorsLoaded, p.TensorsTotal, $"loading {p.CurrentTensor}")));
        var clock = Stopwatch.StartNew();
        MistralForCausalLM model;
        if (quantize)
        {
            model = QuantizedModelLoader.Load(folder, new QuantizedLoadOptions { Device = device, DType = dtype, Nf4 = s.Nf4 ?? new Nf4Options { ComputeDtype = dtype }, PrequantizedComputeDtype = s.Nf4?.ComputeDtype ?? dtype, EmbeddingsOnHost = s.EmbeddingsOnHost }, loadProgress,
                loggers.CreateLogger("Mistral.Peft.Quantization.QuantizedModelLoader"), cancellationToken).Model;
        }
        else
        {
            model = new MistralForCausalLM(config, dtype, device);
            try
            {
                CheckpointLoader.Load(model, folder, progress: loadProgress, logger: loggers.CreateLogger("Mistral.Core.Checkpoints.CheckpointLoader"), cancellationToken: cancellationToken);
            }
            catch
            {
                model.Dispose();
                throw;
            }
        }

        try
        {
            LoraModel? lora = null;
            if (s.AdapterFolder is not null)
            {
                lora = PeftAdapter.Load(model, s.AdapterFolder, loggers.CreateLogger("Mistral.Peft.Adapters.PeftAdapter"), cancellationToken);
            }
            else if (s.Adapter != AdapterChoice.None)
            {
                var options = s.Lora!;
                if (s.Seed is long seed && options.Seed is null)
                {
                    options = options with { Seed = seed };
                }

                lora = LoraInjector.Inject(model, options, loggers.CreateLogger("Mistral.Peft.Lora.LoraInjector"));
            }

            model.eval();
            logger.LogInformation("Loaded {Folder} on {Device} ({DType}{Quantized}) in {Seconds:F1} s{Adapter}.", folder, device, dtype,
                quantize ? ", NF4 base" : string.Empty, clock.Elapsed.TotalSeconds, lora is null ? string.Empty : $"; {lora.TrainableParameters()}");
            return (model, tokenizer, lora);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    private static TrainingSummary RunTraining(PipelineSettings s, MistralForCausalLM model, MistralTokenizer tokenizer, LoraModel lora,
        IReadOnlyList<Example> examples, ILoggerFactory loggers, IProgress<PipelineProgress>? progress, CancellationToken cancellationToken)
    {
        var task = s.Task!;
        var logger = loggers.CreateLogger<MistralPipeline>();
        progress?.Report(new PipelineProgress(PipelineStage.Preparing, 0, examples.Count, "tokenizing"));
        TrainingDataset data;
        if (s.CompletionOnly is { } completion)
        {
            completion = completion with { BosId = tokenizer.BosId, EosId = tokenizer.EosId, PadId = completion.PadId ?? tokenizer.PadId };
            data = new SftCompletionBuilder(completion).Build(
                examples.Select(e => task.TrainingExample(e)).Select(x => new CompletionExample(x.Prompt, x.Target)), tokenizer, cancellationToken);
        }
        else
        {
            var packing = s.Packing with { BosId = tokenizer.BosId, EosId = tokenizer.EosId };
            data = new SftPacker(packing).Pack(examples.Select(e => task.TrainingExample(e).Text), tokenizer, cancellationToken);
        }

        logger.LogInformation("Training data: {Data}", data.Describe());
        if (data.Count == 0)
        {
            throw new ArgumentException($"Train: the {examples.Count} examples give no training sequence ({data.Describe()}); add examples or lower the sequence length (WithPacking / WithCompletionOnlyTraining).");
        }

        var options = s.Training;
        if (s.Seed is long seed)
        {
            options = options with { Seed = seed };
        }

        if (s.OutputFolder is not null && options.CheckpointFolder is null)
        {
            options = options with { CheckpointFolder = s.OutputFolder };
        }

        options = options with { BaseModelNameOrPath = options.BaseModelNameOrPath ?? s.BaseModelName ?? s.ModelFolder };
        int totalSteps = options.StepsPerEpoch(data.Count) * options.Epochs;
        var trainProgress = new SyncProgress<TrainingProgress>(p =>
        {
            progress?.Report(new PipelineProgress(PipelineStage.Training, p.Step, p.TotalSteps,
                $"step {p.Step}/{p.TotalSteps} epoch {p.Epoch}: loss {p.Loss:F4}, {p.TokensPerSecond:F0} tokens/s") { Training = p });
        });
        var trainer = new LoraTrainer(loggers.CreateLogger<LoraTrainer>());
        var clock = Stopwatch.StartNew();
        using var memory = MemoryMonitor.Start(model.Device);
        try
        {
            TrainingResult result = trainer.Train(model, lora, data, options, trainProgress, cancellationToken);
            clock.Stop();
            return new TrainingSummary
            {
                Cancelled = false,
                StepsCompleted = result.Steps.Count,
                TotalSteps = totalSteps,
                Examples = examples.Count,
                Data = data.Describe(),
                Elapsed = result.Elapsed,
                Tokens = result.Tokens,
                PeakMemoryBytes = memory.Stop(),
                MemoryKind = memory.Kind,
                Steps = result.Steps,
                EpochLosses = result.EpochLosses,
                Checkpoints = result.Checkpoints,
                Options = options,
            };
        }
        catch (TrainingCanceledException e)
        {
            clock.Stop();
            int done = e.StepsCompleted;
            var partial = e.PartialResult;
            var checkpoints = new List<string>();
            if (options.CheckpointFolder is not null)
            {
                string folder = Path.Combine(options.CheckpointFolder, $"checkpoint-{done}");
                PeftAdapter.Save(lora, folder, options.BaseModelNameOrPath, CancellationToken.None);
                checkpoints.Add(folder);
            }

            model.eval();
            logger.LogWarning("Training cancelled after {Steps} of {Total} steps{Checkpoint}.", done, totalSteps,
                checkpoints.Count > 0 ? $"; adapter saved to {checkpoints[0]}" : "; the adapter keeps the steps taken (SaveAdapter to keep it)");
            return new TrainingSummary
            {
                Cancelled = true,
                StepsCompleted = done,
                TotalSteps = totalSteps,
                Examples = examples.Count,
                Data = data.Describe(),
                Elapsed = partial.Elapsed,
                Tokens = partial.Tokens,
                PeakMemoryBytes = memory.Stop(),
                MemoryKind = memory.Kind,
                Steps = partial.Steps,
                EpochLosses = partial.EpochLosses,
                Checkpoints = [.. partial.Checkpoints, .. checkpoints],
                Options = options,
            };
        }
        finally
        {
            model.eval();
        }
    }
}
