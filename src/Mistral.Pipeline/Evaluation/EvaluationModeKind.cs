namespace Mistral.Pipeline;

/// <summary>How the model is asked: the study's three ways.</summary>
public enum EvaluationModeKind
{
    /// <summary>The task's zero-shot instruction prompt on the base model (adapters off).</summary>
    ZeroShot,

    /// <summary>The task's few-shot prompt (examples from the pool, as many as the context allows) on the base model (adapters off).</summary>
    FewShot,

    /// <summary>The fine-tuning format's inference prompt on the model with its adapter.</summary>
    FineTuned,
}
