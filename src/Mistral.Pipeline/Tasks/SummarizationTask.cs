using Mistral.Core.Generation;
using Mistral.Eval.Data;
using Mistral.Eval.Metrics;
using Mistral.Eval.Prompts;

namespace Mistral.Pipeline;

/// <summary>
/// The study's dialogue summarization: fine-tunes on <c>### Dialogue:{dialogue} ### Summary:{summary}</c>, prompts
/// zero-shot and few-shot (the first 2 examples) with the study's templates, generates with the study's presets (50 new
/// tokens for the base model, 100 fine-tuned) and scores ROUGE-1/2/L/Lsum with stemming as rouge_score does.
/// </summary>
public class SummarizationTask : PipelineTask
{
    /// <summary>Creates the task.</summary>
    /// <param name="dialogueColumn">The dataset column with the text to summarize (the study: <c>dialogue</c>).</param>
    /// <param name="summaryColumn">The dataset column with the reference summary (the study: <c>summary</c>).</param>
    public SummarizationTask(string dialogueColumn = "dialogue", string summaryColumn = "summary")
        : base("summarization", new ColumnMapping(dialogueColumn, summaryColumn))
    {
    }

    /// <summary>Generation settings for zero- and few-shot; null for <see cref="GenerationOptions.StudySummarizationBaseline"/>.</summary>
    public GenerationOptions? PromptedGeneration { get; init; }

    /// <summary>Generation settings for the fine-tuned model; null for <see cref="GenerationOptions.StudySummarizationFineTuned"/>.</summary>
    public GenerationOptions? FineTunedGeneration { get; init; }

    /// <summary>ROUGE settings; default rouge1, rouge2, rougeL, rougeLsum with the Porter stemmer (HF evaluate's <c>use_stemmer=True</c>).</summary>
    public RougeOptions Rouge { get; init; } = new() { UseStemmer = true };

    /// <summary>Bootstrap settings of the confidence intervals.</summary>
    public BootstrapOptions Bootstrap { get; init; } = new();

    /// <inheritdoc />
    public override SftExample TrainingExample(Example example)
    {
        ArgumentNullException.ThrowIfNull(example);
        return StudyPrompts.SummarizationV2Train.RenderTraining(
            new Dictionary<string, string> { [StudyPlaceholders.Dialogue] = example.Input, [StudyPlaceholders.Summary] = example.Target },
            StudyPlaceholders.Summary);
    }

    /// <inheritdoc />
    public override PromptRequest Prompt(Example example, EvaluationMode mode, TaskContext context)
    {
        ArgumentNullException.ThrowIfNull(example);
        ArgumentNullException.ThrowIfNull(mode);
        ArgumentNullException.ThrowIfNull(context);
        var values = new Dictionary<string, string> { [StudyPlaceholders.Dialogue] = example.Input };
        switch (mode.Kind)
        {
            case EvaluationModeKind.FineTuned:
                return new PromptRequest(StudyPrompts.SummarizationV2Inference, values) { InputPlaceholder = StudyPlaceholders.Dialogue };
            case EvaluationModeKind.ZeroShot:
                return new PromptRequest(StudyPrompts.SummarizationZeroShot, values) { InputPlaceholder = StudyPlaceholders.Dialogue };
            default:
                var shots = FewShotPicker.Pick(mode, context, hasLabels: false);
                return new PromptRequest(StudyPrompts.SummarizationFewShot, values)
                {
                    InputPlaceholder = StudyPlaceholders.Dialogue,
                    FewShotPlaceholder = StudyPlaceholders.FewShotSamples,
                    FewShotBlocks = StudyPrompts.SummarizationFewShotFormat.RenderBlocks(shots),
                };
        }
    }

    /// <inheritdoc />
    public override GenerationOptions Generation(EvaluationMode mode)
    {
        ArgumentNullException.ThrowIfNull(mode);
        return mode.Kind == EvaluationModeKind.FineTuned
            ? FineTunedGeneration ?? GenerationOptions.StudySummarizationFineTuned
            : PromptedGeneration ?? GenerationOptions.StudySummarizationBaseline;
    }

    /// <inheritdoc />
    public override PredictionParse Parse(string generated, EvaluationMode mode, TaskContext context)
    {
        ArgumentNullException.ThrowIfNull(generated);
        return new PredictionParse(generated.Trim(), true);
    }

    /// <inheritdoc />
    public override TaskMetrics Score(IReadOnlyList<ExamplePrediction> predictions, TaskContext context)
    {
        ArgumentNullException.ThrowIfNull(predictions);
        if (predictions.Count == 0)
        {
            return new SummarizationTaskMetrics(new Dictionary<string, RougeAggregate>(), 0);
        }

        var scorer = new RougeScorer(Rouge);
        var scores = scorer.ScoreAll(predictions.Select(p => p.Target).ToArray(), predictions.Select(p => p.Prediction ?? string.Empty).ToArray());
        var aggregate = new RougeAggregator(Bootstrap).Aggregate(scores);
        return new SummarizationTaskMetrics(aggregate.ToDictionary(kv => kv.Key, kv => kv.Value.ToPercent(), StringComparer.Ordinal), predictions.Count);
    }
}
