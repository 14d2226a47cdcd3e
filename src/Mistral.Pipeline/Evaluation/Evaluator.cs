using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Mistral.Core.Generation;
using Mistral.Eval.Data;
using Mistral.Eval.Prompts;
using Mistral.Pipeline.Diagnostics;

namespace Mistral.Pipeline;

/// <summary>Runs one evaluation of a loaded pipeline: fits prompts, generates in length-sorted batches, parses, scores labels by likelihood, and measures.</summary>
internal sealed class Evaluator(LoadedPipeline pipeline, ILogger logger)
{
    public EvaluationReport Run(IReadOnlyList<Example> examples, EvaluationMode mode, EvaluationOptions options,
        IProgress<PipelineProgress>? progress, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(examples);
        ArgumentNullException.ThrowIfNull(mode);
        options = (options ?? throw new ArgumentNullException(nameof(options))).Validate();
        PipelineTask task = pipeline.Task ?? throw new InvalidOperationException(
            "Evaluate: the pipeline has no task; call ForClassification(), ForSummarization() or ForTask(task) on the builder.");
        if (examples.Count == 0)
        {
            throw new ArgumentException("Evaluate: the test set is empty.", nameof(examples));
        }

        for (int i = 0; i < examples.Count; i++)
        {
            task.Validate(examples[i], i, nameof(examples));
        }

        if (mode.UsesAdapter && (pipeline.Lora is null || !pipeline.HasTrainedAdapter))
        {
            throw new InvalidOperationException(pipeline.Lora is null
                ? "Evaluate(EvaluationMode.FineTuned()): the pipeline has no adapter; train it (Train) or load one (WithAdapter(folder)), or evaluate ZeroShot()/FewShot(k)."
                : "Evaluate(EvaluationMode.FineTuned()): the pipeline's adapter is untrained (fresh from WithQLoRA/WithLoRA); train it (Train) or load one (WithAdapter(folder)).");
        }

        if (!task.GeneratesText && !(task.SupportsLabelLikelihood && task.HasLabels))
        {
            throw new InvalidOperationException($"Evaluate: task '{task.Name}' neither generates text nor scores labels by likelihood; enable one of them.");
        }

        var model = pipeline.Model;
        var tokenizer = pipeline.Tokenizer;
        TaskContext context = task.CreateContext(pipeline.TrainingExamples.Count > 0 ? pipeline.TrainingExamples : examples, pipeline.TrainingExamples);
        GenerationOptions generation = task.Generation(mode) with { PadTokenId = tokenizer.PadId ?? tokenizer.EosId };
        int contextLength = options.ContextLength ?? Math.Min(model.Config.SlidingWindow ?? int.MaxValue, model.Config.MaxPositionEmbeddings);
        int reserve = task.GeneratesText ? generation.MaxNewTokens : LongestLabelTokens(task, context, mode);
        var budget = new PromptBudget(contextLength, reserve);
        var fitter = new PromptFitter(new MistralTokenCounter(tokenizer), budget);

        // Fit every prompt first: an impossible prompt fails before any generation.
        var fitted = new PromptFitResult[examples.Count];
        for (int i = 0; i < examples.Count; i++)
        {
            PromptRequest request = task.Prompt(examples[i], mode, context);
            var policy = options.PromptOverflow == PromptOverflowPolicy.Fail ? PromptFitPolicy.Fail
                : request.FewShotPlaceholder is not null ? PromptFitPolicy.DropFewShotExamplesThenTruncateInput
                : request.InputPlaceholder is not null ? PromptFitPolicy.TruncateInput
                : PromptFitPolicy.Fail;
            try
            {
                fitted[i] = fitter.Fit(request, policy);
            }
            catch (PromptTooLongException e)
            {
                throw new PromptTooLongException($"examples[{i}]: {e.Message}", e.PromptTokens, e.Budget, e);
            }
        }

        bool wasTraining = model.training;
        using IDisposable? adapterOff = mode.UsesAdapter ? null : pipeline.Lora?.AdaptersDisabled();
        var latencies = new double[examples.Count];
        var generated = new GeneratedSequence?[examples.Count];
        var likelihood = new (string Label, double[] Scores)?[examples.Count];
        int generatedTokens = 0;
        var generationClock = new Stopwatch();
        var clock = Stopwatch.StartNew();
        using var memory = MemoryMonitor.Start(model.Device);
        model.eval();
        try
        {
            var generator = new TextGenerator(model, tokenizer);
            int done = 0;
            if (task.GeneratesText)
            {
                generationClock.Start();
                // Group prompts of similar length (less padding); results go back to test order.
                var order = Enumerable.Range(0, examples.Count).OrderBy(i => fitted[i].PromptTokens).ToArray();
                int batchNumber = 0;
                foreach (int[] batch in order.Chunk(options.BatchSize))
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    var batchClock = Stopwatch.StartNew();
                    var options1 = pipeline.Seed is long seed ? generation with { Seed = unchecked((ulong)(seed + batchNumber)) } : generation;
                    GenerationResult result = generator.Generate(batch.Select(i => fitted[i].Prompt).ToArray(), options1, cancellationToken);
                    double ms = batchClock.Elapsed.TotalMilliseconds;
                    for (int j = 0; j < batch.Length; j++)
                    {
                        generated[batch[j]] = result.Sequences[j];
                        latencies[batch[j]] += ms;
                        generatedTokens += result.Sequences[j].TokenIds.Count;
                    }

                    done += batch.Length;
                    batchNumber++;
                    progress?.Report(new PipelineProgress(PipelineStage.Evaluating, done, examples.Count * Passes(task, context), $"{mode}: generated {done}/{examples.Count}"));
                }

                generationClock.Stop();
            }

            if (task.SupportsLabelLikelihood && context.Labels.Count > 0)
            {
                var scorer = new LabelLikelihoodScorer(model, tokenizer);
                var continuations = context.Labels.Select(l => task.LabelContinuation(l, mode)).ToArray();
                // EOS is scored only where the fine-tuning texts ended with it.
                bool eos = task.LabelLikelihoodIncludesEos(mode) && pipeline.TrainsWithEos;
                for (int i = 0; i < examples.Count; i++)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    var exampleClock = Stopwatch.StartNew();
                    double[] scores = scorer.Score(fitted[i].Prompt, continuations, eos, cancellationToken);
                    for (int k = 0; k < scores.Length; k++)
                    {
                        if (!double.IsFinite(scores[k]))
                        {
                            throw new InvalidOperationException(
                                $"examples[{i}]: the log-likelihood of label '{context.Labels[k]}' is {scores[k]}; the model's logits hold NaN or infinity (check the weights and the dtype).");
                        }
                    }

                    int best = 0;
                    for (int k = 1; k < scores.Length; k++)
                    {
                        if (scores[k] > scores[best])
                        {
                            best = k;
                        }
                    }

                    likelihood[i] = (context.Labels[best], scores);
                    latencies[i] += exampleClock.Elapsed.TotalMilliseconds;
                    done++;
                    progress?.Report(new PipelineProgress(PipelineStage.Evaluating, done, examples.Count * Passes(task, context), $"{mode}: scored labels {i + 1}/{examples.Count}"));
                }
            }
        }
        finally
        {
            model.train(wasTraining);
        }

        clock.Stop();
        var predictions = new ExamplePrediction[examples.Count];
        for (int i = 0; i < examples.Count; i++)
        {
            var g = generated[i];
            PredictionParse? parse = g is null ? null : task.Parse(g.Text ?? string.Empty, mode, context);
            predictions[i] = new ExamplePrediction(i, examples[i].Input, examples[i].Target, fitted[i].PromptTokens, fitted[i].FewShotExamplesKept,
                fitted[i].InputCharactersRemoved, g?.Text, parse?.Prediction, parse?.IsParsed, g?.TokenIds.Count ?? 0, g?.FinishReason, latencies[i])
            {
                LikelihoodPrediction = likelihood[i]?.Label,
                LabelLogProbabilities = likelihood[i]?.Scores,
            };
        }

        TaskMetrics metrics = task.Score(predictions, context);
        var cost = options.Cost;
        // Zero- and few-shot run on the base model: the training run is not part of their pillars.
        var training = mode.UsesAdapter ? pipeline.TrainingSummary : null;
        double seconds = clock.Elapsed.TotalSeconds;
        var pillars = new FourPillars
        {
            Quality = metrics.Headline,
            TrainingTime = training?.Elapsed,
            TrainingTokensPerSecond = training?.TokensPerSecond,
            TrainingPeakMemoryBytes = training?.PeakMemoryBytes,
            TrainingCost = training is not null && cost is not null ? cost.CostOf(training.Elapsed) : null,
            InferencePeakMemoryBytes = memory.Stop(),
            MemoryKind = memory.Kind,
            InferenceTime = clock.Elapsed,
            ExamplesPerSecond = seconds > 0 ? examples.Count / seconds : 0,
            GeneratedTokensPerSecond = generationClock.Elapsed.TotalSeconds > 0 ? generatedTokens / generationClock.Elapsed.TotalSeconds : 0,
            LatencyP50Milliseconds = Percentiles.Of(latencies, 50),
            LatencyP95Milliseconds = Percentiles.Of(latencies, 95),
            InferenceCostPer1000 = cost is null ? null : cost.CostOf(TimeSpan.FromSeconds(seconds / examples.Count * 1000)),
            Cost = cost,
            Device = model.Device.ToString(),
        };
        var fitSummary = new PromptFitSummary(contextLength, reserve, fitted.Count(f => f.Changed), fitted.Sum(f => f.FewShotExamplesDropped),
            fitted.Count(f => f.InputCharactersRemoved > 0), fitted.Average(f => f.PromptTokens), fitted.Max(f => f.PromptTokens),
            fitted.Average(f => f.FewShotExamplesKept));
        var report = new EvaluationReport(task.Name, mode, pipeline.Description, metrics, predictions, fitSummary, pillars, training);
        logger.LogInformation("Evaluated {Task} {Mode} on {Count} examples in {Seconds:F1} s: {Metrics}", task.Name, mode, examples.Count, seconds,
            string.Join(", ", metrics.Headline.Select(kv => $"{kv.Key} {kv.Value:0.####}")));
        if (fitSummary.PromptsShortened > 0)
        {
            logger.LogWarning("{Shortened} of {Count} prompts were shortened to fit {Context} tokens ({Dropped} few-shot examples dropped, {Truncated} inputs truncated).",
                fitSummary.PromptsShortened, examples.Count, contextLength, fitSummary.FewShotExamplesDropped, fitSummary.InputsTruncated);
        }

        return report;
    }

    private static int Passes(PipelineTask task, TaskContext context) =>
        (task.GeneratesText ? 1 : 0) + (task.SupportsLabelLikelihood && context.Labels.Count > 0 ? 1 : 0);

    private int LongestLabelTokens(PipelineTask task, TaskContext context, EvaluationMode mode) =>
        context.Labels.Count == 0 ? 1 : context.Labels.Max(l => pipeline.Tokenizer.CountTokens(task.LabelContinuation(l, mode), false, false)) + 1;
}
