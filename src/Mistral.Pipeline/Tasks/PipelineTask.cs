using Mistral.Core.Generation;
using Mistral.Eval.Data;
using Mistral.Eval.Prompts;

namespace Mistral.Pipeline;

/// <summary>
/// Everything the pipeline needs to know about a task: its columns, the fine-tuning text, the prompt for each
/// evaluation mode, the generation settings, how generated text becomes a prediction, and the metric.
/// <see cref="ClassificationTask"/> and <see cref="SummarizationTask"/> are the study's; derive from this class for your own
/// (own template, own parser, own metric) and pass it to <see cref="MistralPipeline.ForTask"/>.
/// </summary>
public abstract class PipelineTask
{
    /// <summary>Creates a task.</summary>
    /// <param name="name">A short name for logs and reports.</param>
    /// <param name="columns">The dataset columns holding the input and the target.</param>
    protected PipelineTask(string name, ColumnMapping columns)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        Name = name;
        Columns = columns ?? throw new ArgumentNullException(nameof(columns));
    }

    /// <summary>The task's name.</summary>
    public string Name { get; }

    /// <summary>Which columns of a dataset file hold the input and the target (used by the file overloads).</summary>
    public ColumnMapping Columns { get; }

    /// <summary>Whether the task has a closed label set that <see cref="TaskContext.Labels"/> describes (classification).</summary>
    public virtual bool HasLabels => false;

    /// <summary>Whether evaluations generate text and parse it (default true; a likelihood-only classification returns false).</summary>
    public virtual bool GeneratesText => true;

    /// <summary>Whether classification by label likelihood applies (a closed label set scored by log p(label | prompt)).</summary>
    public virtual bool SupportsLabelLikelihood => false;

    /// <summary>The fine-tuning text of one example, split into prompt and target (packing trains on <see cref="SftExample.Text"/>).</summary>
    /// <param name="example">A training example.</param>
    /// <returns>The prompt/target pair.</returns>
    public abstract SftExample TrainingExample(Example example);

    /// <summary>The prompt for one example in one evaluation mode (fitted to the context by the pipeline).</summary>
    /// <param name="example">The example to predict.</param>
    /// <param name="mode">Zero-shot, few-shot or fine-tuned.</param>
    /// <param name="context">Labels and the few-shot pool.</param>
    /// <returns>The prompt request; set <see cref="PromptRequest.InputPlaceholder"/> and (few-shot) <see cref="PromptRequest.FewShotPlaceholder"/> so it can be shortened.</returns>
    public abstract PromptRequest Prompt(Example example, EvaluationMode mode, TaskContext context);

    /// <summary>The generation settings for a mode (the study's presets for the built-in tasks).</summary>
    /// <param name="mode">The evaluation mode.</param>
    /// <returns>The options (seed and EOS are filled in by the pipeline).</returns>
    public abstract GenerationOptions Generation(EvaluationMode mode);

    /// <summary>Turns a generated continuation into a prediction.</summary>
    /// <param name="generated">The text generated after the prompt.</param>
    /// <param name="mode">The evaluation mode.</param>
    /// <param name="context">Labels and the few-shot pool.</param>
    /// <returns>The prediction and whether it parsed.</returns>
    public abstract PredictionParse Parse(string generated, EvaluationMode mode, TaskContext context);

    /// <summary>Scores the predictions of one evaluation.</summary>
    /// <param name="predictions">One per test example, in order.</param>
    /// <param name="context">Labels and the few-shot pool.</param>
    /// <returns>The task's metrics.</returns>
    public abstract TaskMetrics Score(IReadOnlyList<ExamplePrediction> predictions, TaskContext context);

    /// <summary>
    /// The text scored after the prompt for one candidate label in label-likelihood classification (default: the label
    /// itself, as it follows the prompt in the fine-tuning text).
    /// </summary>
    /// <param name="label">A candidate label.</param>
    /// <param name="mode">The evaluation mode.</param>
    /// <returns>The continuation text.</returns>
    public virtual string LabelContinuation(string label, EvaluationMode mode) => label;

    /// <summary>Whether the label's likelihood includes the end-of-sequence token after it (default: in fine-tuned mode, whose training text ends there).</summary>
    /// <param name="mode">The evaluation mode.</param>
    /// <returns>True to score EOS after the label.</returns>
    public virtual bool LabelLikelihoodIncludesEos(EvaluationMode mode) => mode.Kind == EvaluationModeKind.FineTuned;

    /// <summary>
    /// Builds the context: the labels in first-appearance order over <paramref name="labelSource"/> (the training set when
    /// there is one, else the test set) and the few-shot pool.
    /// </summary>
    /// <param name="labelSource">Examples whose targets are the label set.</param>
    /// <param name="fewShotPool">Examples few-shot prompts draw from.</param>
    /// <returns>The context.</returns>
    public virtual TaskContext CreateContext(IReadOnlyList<Example> labelSource, IReadOnlyList<Example> fewShotPool)
    {
        ArgumentNullException.ThrowIfNull(labelSource);
        ArgumentNullException.ThrowIfNull(fewShotPool);
        return new TaskContext(HasLabels ? ClassList.FromLabels(labelSource.Select(e => e.Target)) : [], fewShotPool);
    }

    /// <summary>Checks one example before training or evaluation; throws naming its index and what is wrong.</summary>
    /// <param name="example">The example.</param>
    /// <param name="index">Its index in the list given to the pipeline.</param>
    /// <param name="argumentName">The argument the list was passed as.</param>
    /// <exception cref="ArgumentException">The example is null or its input or target is empty.</exception>
    public virtual void Validate(Example example, int index, string argumentName)
    {
        if (example is null)
        {
            throw new ArgumentException($"{argumentName}[{index}] is null.", argumentName);
        }

        if (string.IsNullOrWhiteSpace(example.Input))
        {
            throw new ArgumentException($"{argumentName}[{index}] has an empty input ('{Columns.InputColumn}').", argumentName);
        }

        if (string.IsNullOrWhiteSpace(example.Target))
        {
            throw new ArgumentException($"{argumentName}[{index}] has an empty target ('{Columns.TargetColumn}').", argumentName);
        }
    }

    /// <inheritdoc />
    public override string ToString() => Name;
}
