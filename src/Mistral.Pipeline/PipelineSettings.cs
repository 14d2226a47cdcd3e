using Microsoft.Extensions.Logging;
using Mistral.Peft.Lora;
using Mistral.Peft.Quantization;
using Mistral.Peft.Training;
using static TorchSharp.torch;

namespace Mistral.Pipeline;

/// <summary>Which adapter the pipeline builds.</summary>
internal enum AdapterChoice
{
    None,
    Lora,
    QLora,
}

/// <summary>Everything the builder collected (immutable snapshot taken at Build/Train).</summary>
internal sealed record PipelineSettings
{
    public string? ModelFolder { get; init; }

    public Mistral.Hub.HubClientOptions? Hub { get; init; }

    public string? BaseModelName { get; init; }

    public string? DeviceName { get; init; }

    public ScalarType? DType { get; init; }

    public AdapterChoice Adapter { get; init; }

    public string? AdapterCall { get; init; }

    public LoraOptions? Lora { get; init; }

    public Nf4Options? Nf4 { get; init; }

    public bool EmbeddingsOnHost { get; init; } = true;

    public string? AdapterFolder { get; init; }

    public bool QuantizeAdapterBase { get; init; }

    public LoraTrainingOptions Training { get; init; } = LoraTrainingOptions.Study;

    public SftPackingOptions Packing { get; init; } = SftPackingOptions.Study;

    public SftCompletionOptions? CompletionOnly { get; init; }

    public EvaluationOptions Evaluation { get; init; } = new();

    public string? OutputFolder { get; init; }

    public ILoggerFactory? Loggers { get; init; }

    public long? Seed { get; init; }

    public PipelineTask? Task { get; init; }

    public List<string> Conflicts { get; init; } = [];
}
