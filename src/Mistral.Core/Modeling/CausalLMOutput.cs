using System.Text;
using static TorchSharp.torch;

namespace Mistral.Core.Modeling;

/// <summary>Output of <see cref="MistralForCausalLM"/>; owns its tensors.</summary>
public sealed record CausalLMOutput : IDisposable
{
    private readonly Tensor? logits;

    /// <summary>An output with logits.</summary>
    /// <param name="Logits">float32 [batch, seq (or 1), vocab].</param>
    /// <param name="Loss">Mean shifted cross-entropy over labels ≠ −100 (scalar float32), when labels were given.</param>
    public CausalLMOutput(Tensor Logits, Tensor? Loss)
    {
        ArgumentNullException.ThrowIfNull(Logits);
        logits = Logits;
        this.Loss = Loss;
    }

    private CausalLMOutput(Tensor loss)
    {
        Loss = loss;
    }

    /// <summary>
    /// float32 [batch, seq (or 1), vocab] logits.
    /// </summary>
    /// <exception cref="InvalidOperationException">The forward ran with <see cref="CausalLMInput.LossOnly"/>: no logits were computed.</exception>
    public Tensor Logits
    {
        get => logits ?? throw new InvalidOperationException(
            "This output has no logits: the forward ran with CausalLMInput.LossOnly. Run it without LossOnly to read logits.");
        init => logits = value ?? throw new ArgumentNullException(nameof(value));
    }

    /// <summary>False for the output of a <see cref="CausalLMInput.LossOnly"/> forward, which has only <see cref="Loss"/>.</summary>
    public bool HasLogits => logits is not null;

    /// <summary>Mean shifted cross-entropy over labels ≠ −100 (scalar float32), when labels were given.</summary>
    public Tensor? Loss { get; init; }

    /// <summary>The output of a loss-only forward (<see cref="CausalLMInput.LossOnly"/>).</summary>
    internal static CausalLMOutput FromLossOnly(Tensor loss) => new(loss);

    /// <summary>The logits (throws for a loss-only output, as <see cref="Logits"/>) and the loss.</summary>
    /// <param name="Logits">The logits.</param>
    /// <param name="Loss">The loss, or null.</param>
    public void Deconstruct(out Tensor Logits, out Tensor? Loss)
    {
        Logits = this.Logits;
        Loss = this.Loss;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        logits?.Dispose();
        Loss?.Dispose();
    }

    private bool PrintMembers(StringBuilder builder)
    {
        builder.Append("Logits = ").Append(logits?.ToString() ?? "(none: loss only)");
        builder.Append(", Loss = ").Append(Loss?.ToString() ?? "null");
        return true;
    }
}
