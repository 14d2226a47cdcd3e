using Mistral.Eval.Data;
using Mistral.Peft.Training;

namespace Mistral.Pipeline.Experiments;

/// <summary>The study's sweeps (its <c>sample_ablate.sh</c>, <c>run_lora.sh</c> and <c>baseline_inference.sh</c>) and its base pipelines.</summary>
public static class StudySweeps
{
    /// <summary>
    /// Table 1: fine-tuned classification on stratified subsamples (seed 42) of 2.5 %, 5 %, 10 %, 25 %, 50 % and 99 % of the
    /// training set (the study's "100 %" row used 0.99, as scikit-learn refuses 1.0).
    /// </summary>
    public static SweepDefinition SampleEfficiency { get; } = new("sample-efficiency",
        new SweepAxes { TrainingFractions = DataSplitter.StudyFractions, Modes = [EvaluationMode.FineTuned()] }, SweepTableLayout.SampleEfficiency);

    /// <summary>The LoRA sweep over summarization: epochs {2, 5, 10, 20, 30, 50} × r {2, 4, 8, 16} × dropout {0.1, 0.2, 0.5} (72 runs).</summary>
    public static SweepDefinition LoraSummarization { get; } = new("lora-summarization",
        new SweepAxes { Epochs = [2, 5, 10, 20, 30, 50], Ranks = [2, 4, 8, 16], Dropouts = [0.1, 0.2, 0.5], Modes = [EvaluationMode.FineTuned()] },
        SweepTableLayout.Methods);

    /// <summary>Zero- and few-shot classification on the base model: one example per label, as many of the 20 as fit the context.</summary>
    public static SweepDefinition BaselineClassification { get; } = new("baseline-classification",
        new SweepAxes { Modes = [EvaluationMode.ZeroShot(), EvaluationMode.FewShot(20, FewShotSelection.FirstPerLabel)] }, SweepTableLayout.Methods);

    /// <summary>Zero- and few-shot summarization on the base model: the first two training examples as shots (Table 2's first two columns).</summary>
    public static SweepDefinition BaselineSummarization { get; } = new("baseline-summarization",
        new SweepAxes { Modes = [EvaluationMode.ZeroShot(), EvaluationMode.FewShot(2, FewShotSelection.FirstK)] }, SweepTableLayout.Methods);

    /// <summary>The study's classification pipeline: QLoRA r 8, alpha 16, dropout 0.1 on q_proj/v_proj; 5 epochs, batch 4 × 2, lr 2e-4 constant; seed 42.</summary>
    /// <param name="modelFolder">The Hugging Face checkpoint folder.</param>
    /// <returns>The base pipeline.</returns>
    public static MistralPipeline ClassificationPipeline(string modelFolder) => MistralPipeline.Create()
        .FromPretrained(modelFolder)
        .WithQLoRA(r: 8, alpha: 16, dropout: 0.1)
        .ForClassification()
        .WithTrainingOptions(LoraTrainingOptions.Study)
        .WithSeed(42);

    /// <summary>The study's summarization pipeline: QLoRA r 64, alpha 16, dropout 0.1 on q_proj/v_proj; 1 epoch, batch 4 × 2, lr 2e-4 constant; seed 42.</summary>
    /// <param name="modelFolder">The Hugging Face checkpoint folder.</param>
    /// <returns>The base pipeline.</returns>
    public static MistralPipeline SummarizationPipeline(string modelFolder) => MistralPipeline.Create()
        .FromPretrained(modelFolder)
        .WithQLoRA(r: 64, alpha: 16, dropout: 0.1)
        .ForSummarization()
        .WithTrainingOptions(LoraTrainingOptions.StudySummarization)
        .WithSeed(42);
}
