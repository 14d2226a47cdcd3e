using Mistral.Core.Generation;
using Mistral.Eval.Data;
using Mistral.Eval.Metrics;
using Mistral.Eval.Parsing;
using Mistral.Eval.Prompts;

namespace Mistral.Pipeline;

/// <summary>
/// The study's 20-way news classification, for any label set: fine-tunes on <c>### Sentence:{text} ### Class:{label}</c>,
/// prompts zero-shot and few-shot with the study's templates byte for byte (<see cref="StudyPrompts"/>), generates with
/// the study's preset (top_p 0.95, T 1e-3, 20 new tokens), parses by the study's rules, and also classifies by label
/// likelihood. Metrics equal scikit-learn's over the task's full label set.
/// </summary>
public class ClassificationTask : PipelineTask
{
    /// <summary>Creates the task.</summary>
    /// <param name="labelColumn">The dataset column with the label (the study: <c>label</c>).</param>
    /// <param name="textColumn">The dataset column with the text (the study: <c>text</c>).</param>
    public ClassificationTask(string labelColumn = "label", string textColumn = "text")
        : base("classification", new ColumnMapping(textColumn, labelColumn))
    {
    }

    /// <summary>How fine-tuned generations are parsed; default the study's exact match.</summary>
    public LabelParseMode FineTunedParseMode { get; init; } = LabelParseMode.Exact;

    /// <summary>How zero- and few-shot generations are parsed; default the study's baseline rule (newlines removed, stripped, exact).</summary>
    public LabelParseMode PromptedParseMode { get; init; } = LabelParseMode.StudyBaseline;

    /// <summary>Whether evaluations also classify by label likelihood. Default true.</summary>
    public bool LabelLikelihood { get; init; } = true;

    /// <summary>Whether evaluations generate and parse (the study's way). Default true; false runs label likelihood only (faster).</summary>
    public bool GenerateAndParse { get; init; } = true;

    /// <summary>The label set; null takes the labels of the training examples (else the test examples) in first-appearance order.</summary>
    public IReadOnlyList<string>? Labels { get; init; }

    /// <summary>Generation settings; null for the study's classification preset (<see cref="GenerationOptions.StudyClassification"/>).</summary>
    public GenerationOptions? GenerationOptions { get; init; }

    /// <inheritdoc />
    public override bool HasLabels => true;

    /// <inheritdoc />
    public override bool SupportsLabelLikelihood => LabelLikelihood;

    /// <inheritdoc />
    public override bool GeneratesText => GenerateAndParse;

    /// <inheritdoc />
    public override TaskContext CreateContext(IReadOnlyList<Example> labelSource, IReadOnlyList<Example> fewShotPool)
    {
        var context = base.CreateContext(labelSource, fewShotPool);
        return Labels is null ? context : context with { Labels = ClassList.FromLabels(Labels) };
    }

    /// <inheritdoc />
    public override SftExample TrainingExample(Example example)
    {
        ArgumentNullException.ThrowIfNull(example);
        return StudyPrompts.ClassificationV2Train.RenderTraining(
            new Dictionary<string, string> { [StudyPlaceholders.Sentence] = example.Input, [StudyPlaceholders.Label] = example.Target },
            StudyPlaceholders.Label);
    }

    /// <inheritdoc />
    public override PromptRequest Prompt(Example example, EvaluationMode mode, TaskContext context)
    {
        ArgumentNullException.ThrowIfNull(example);
        ArgumentNullException.ThrowIfNull(mode);
        ArgumentNullException.ThrowIfNull(context);
        switch (mode.Kind)
        {
            case EvaluationModeKind.FineTuned:
                return new PromptRequest(StudyPrompts.ClassificationV2Inference,
                    new Dictionary<string, string> { [StudyPlaceholders.Sentence] = example.Input })
                { InputPlaceholder = StudyPlaceholders.Sentence };
            case EvaluationModeKind.ZeroShot:
                return new PromptRequest(StudyPrompts.ClassificationZeroShot, new Dictionary<string, string>
                {
                    [StudyPlaceholders.Sentence] = example.Input,
                    [StudyPlaceholders.NewsgroupClasses] = ClassList.Render(context.Labels),
                })
                { InputPlaceholder = StudyPlaceholders.Sentence };
            default:
                var shots = FewShotPicker.Pick(mode, context, hasLabels: true);
                return new PromptRequest(StudyPrompts.ClassificationFewShot, new Dictionary<string, string>
                {
                    [StudyPlaceholders.Sentence] = example.Input,
                    [StudyPlaceholders.NewsgroupClasses] = ClassList.Render(context.Labels),
                })
                {
                    InputPlaceholder = StudyPlaceholders.Sentence,
                    FewShotPlaceholder = StudyPlaceholders.FewShotSamples,
                    FewShotBlocks = StudyPrompts.ClassificationFewShotFormat.RenderBlocks(shots),
                };
        }
    }

    /// <inheritdoc />
    public override GenerationOptions Generation(EvaluationMode mode) => GenerationOptions ?? GenerationOptions.StudyClassification;

    /// <inheritdoc />
    public override PredictionParse Parse(string generated, EvaluationMode mode, TaskContext context)
    {
        ArgumentNullException.ThrowIfNull(generated);
        ArgumentNullException.ThrowIfNull(mode);
        ArgumentNullException.ThrowIfNull(context);
        var parser = new LabelParser(context.Labels);
        var result = parser.Parse(generated, mode.Kind == EvaluationModeKind.FineTuned ? FineTunedParseMode : PromptedParseMode);
        return new PredictionParse(result.Prediction, result.IsParsed);
    }

    /// <inheritdoc />
    public override TaskMetrics Score(IReadOnlyList<ExamplePrediction> predictions, TaskContext context)
    {
        ArgumentNullException.ThrowIfNull(predictions);
        ArgumentNullException.ThrowIfNull(context);
        var truth = predictions.Select(p => p.Target).ToArray();

        // scikit-learn's labels=: every class of the task has its row (support 0 when the test sample lacks it) and counts
        // in the macro average; a gold label the task did not know is appended so that no sample loses its row, and an
        // unparseable output (no label) is a miss of its true class, never a class of its own.
        var labels = context.Labels.Concat(truth).Distinct(StringComparer.Ordinal).ToArray();
        ClassificationReport? generated = null;
        int unparseable = 0;
        if (predictions.Count > 0 && predictions.All(p => p.Prediction is not null))
        {
            generated = ClassificationMetrics.Compute(truth, predictions.Select(p => p.Prediction!).ToArray(), labels: labels);
            unparseable = predictions.Count(p => p.IsParsed == false);
        }

        ClassificationReport? likelihood = null;
        if (predictions.Count > 0 && predictions.All(p => p.LikelihoodPrediction is not null))
        {
            likelihood = ClassificationMetrics.Compute(truth, predictions.Select(p => p.LikelihoodPrediction!).ToArray(), labels: labels);
        }

        return new ClassificationTaskMetrics(generated, unparseable, likelihood, labels);
    }
}
