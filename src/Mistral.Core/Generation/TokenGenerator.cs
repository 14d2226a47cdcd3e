using System.Globalization;
using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Mistral.Core.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Core.Generation;

/// <summary>
/// Generates token ids from a <see cref="MistralForCausalLM"/> with a KV cache made per call, which grows in chunks as tokens come (a rolling buffer
/// of W slots when the sequence outgrows the sliding window; prompts longer than W are prefilled in chunks of W).
/// Batches of prompts of different lengths are left-padded.
/// </summary>
/// <remarks>
/// Each call runs the model in eval mode (no dropout, e.g. in LoRA layers, whatever mode the model was left in) and under
/// <c>inference_mode</c>; afterwards, also when the call throws or is cancelled, every module gets back the
/// training/eval mode it had before the call.
/// </remarks>
public sealed class TokenGenerator
{
    // New-token slots the KV cache starts with beyond the prompt; it doubles as needed.
    private const int InitialNewTokenSlots = 256;

    private readonly MistralForCausalLM model;
    private readonly ILogger logger;

    /// <summary>Creates a generator over a loaded model.</summary>
    public TokenGenerator(MistralForCausalLM model, ILogger<TokenGenerator>? logger = null)
    {
        this.model = model ?? throw new ArgumentNullException(nameof(model));
        this.logger = (ILogger?)logger ?? NullLogger.Instance;
    }

    /// <summary>
    /// Called with each new token of a row that is still running (not for padding after a row finished, and not for an
    /// EOS token, which ends the row anyway); return true to stop that row (how stop strings are implemented).
    /// </summary>
    public delegate bool StepCallback(int row, int token);

    /// <summary>
    /// Generates for each prompt; <paramref name="onToken"/> sees every new real token and may stop its row (stop strings).
    /// The model runs in eval mode for the call, and each of its modules gets its previous mode back at the end.
    /// </summary>
    public GenerationResult Generate(IReadOnlyList<IReadOnlyList<int>> prompts, GenerationOptions options,
        StepCallback? onToken = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (prompts.Count == 0)
        {
            throw new ArgumentException("At least one prompt is needed.", nameof(prompts));
        }

        for (int i = 0; i < prompts.Count; i++)
        {
            if (prompts[i] is null || prompts[i].Count == 0)
            {
                throw new ArgumentException($"Prompt {i} is empty; a prompt needs at least one token (e.g. BOS).", nameof(prompts));
            }

            foreach (int id in prompts[i])
            {
                if (id < 0 || id >= model.Config.VocabSize)
                {
                    throw new ArgumentException($"Prompt {i} holds token id {id}, outside the vocabulary [0, {model.Config.VocabSize}).", nameof(prompts));
                }
            }
        }

        if (options.PadTokenId < 0 || options.PadTokenId >= model.Config.VocabSize)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.PadTokenId, $"GenerationOptions.PadTokenId must be a token id in [0, {model.Config.VocabSize}).");
        }

        int batch = prompts.Count;
        int promptLength = prompts.Max(p => p.Count);
        long totalLong = (long)promptLength + Math.Max(options.MaxNewTokens, 1);
        if (totalLong > int.MaxValue)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxNewTokens,
                $"GenerationOptions.MaxNewTokens ({options.MaxNewTokens}) plus the prompt length ({promptLength}) exceeds {int.MaxValue} tokens.");
        }

        int total = (int)totalLong;
        Device device = model.Device;
        var eos = new HashSet<int>(options.EosTokenIds);

        var ids = new long[batch * promptLength];
        var mask = new long[batch * promptLength];
        for (int r = 0; r < batch; r++)
        {
            int pad = promptLength - prompts[r].Count;
            for (int c = 0; c < promptLength; c++)
            {
                ids[(r * promptLength) + c] = c < pad ? options.PadTokenId : prompts[r][c - pad];
                mask[(r * promptLength) + c] = c < pad ? 0 : 1;
            }
        }

        var generated = new List<int>[batch];
        var finish = new FinishReason?[batch];
        for (int r = 0; r < batch; r++)
        {
            generated[r] = [];
        }

        // Sampling draws on the CPU (a few thousand probabilities per row), so a seed gives the same tokens on every device.
        using Generator? rng = options.Seed is ulong seed ? new Generator(seed, CPU) : null;
        // The cache starts with the prompt plus a chunk of new tokens and grows as they come (a rolling one holds W slots).
        using var cache = new KvCache(model.Config, batch, total, model.DType, device, allowRolling: true,
            initialCapacity: (int)Math.Min(total, (long)promptLength + InitialNewTokenSlots));
        using var evalMode = ModuleModeScope.Eval(model);
        using var noGrad = inference_mode();
        var clock = Stopwatch.StartNew();
        double prefillMs;
        double decodeMs = 0;
        int steps = 0;
        int decodeTokens = 0;
        var stepTimes = new List<double>(Math.Min(options.MaxNewTokens, InitialNewTokenSlots));

        using Tensor allIds = tensor(ids, [batch, promptLength], ScalarType.Int64, device);
        using Tensor allMask = tensor(mask, [batch, promptLength], ScalarType.Int64, device);
        var seenLists = new List<long>[batch];
        for (int r = 0; r < batch; r++)
        {
            seenLists[r] = prompts[r].Select(x => (long)x).ToList();
        }

        // The first token is chosen with the prefill; then each step runs the model and chooses the next token, whose
        // read back to the host is the step's only synchronisation (no separate sync for timing).
        long[] next = [];
        using (Tensor prefillLogits = Prefill(allIds, allMask, cache, cancellationToken))
        {
            if (options.MaxNewTokens > 0)
            {
                next = SelectNext(prefillLogits, options, seenLists, rng, 0);
            }
            else if (device.type == DeviceType.CUDA)
            {
                cuda.synchronize(device); // nothing is read back: wait for the prefill before timing it
            }
        }

        prefillMs = clock.Elapsed.TotalMilliseconds;
        for (int step = 0; step < options.MaxNewTokens; step++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            for (int r = 0; r < batch; r++)
            {
                if (finish[r] is not null)
                {
                    next[r] = options.PadTokenId;
                    continue;
                }

                int token = (int)next[r];
                generated[r].Add(token);
                if (step > 0)
                {
                    decodeTokens++;
                }

                seenLists[r].Add(token);
                if (eos.Contains(token))
                {
                    finish[r] = FinishReason.EndOfSequence;
                }
                else if (onToken?.Invoke(r, token) == true)
                {
                    finish[r] = FinishReason.StopString;
                }
                else if (generated[r].Count >= options.MaxNewTokens)
                {
                    finish[r] = FinishReason.Length;
                }
            }

            if (finish.All(f => f is not null))
            {
                break;
            }

            var stepClock = Stopwatch.StartNew();
            using (Tensor stepIds = tensor(next, [batch, 1], ScalarType.Int64, device))
            using (Tensor stepMask = ones([batch, 1], ScalarType.Int64, device))
            using (CausalLMOutput output = model.forward(new CausalLMInput(stepIds) { AttentionMask = stepMask, Cache = cache, LastPositionLogitsOnly = true }))
            using (Tensor lastPosition = output.Logits.select(1, 0))
            {
                next = SelectNext(lastPosition, options, seenLists, rng, step + 1);
            }

            double stepMs = stepClock.Elapsed.TotalMilliseconds;
            stepTimes.Add(stepMs);
            decodeMs += stepMs;
            steps++;
        }

        for (int r = 0; r < batch; r++)
        {
            finish[r] ??= FinishReason.Length;
        }

        int newTokens = generated.Sum(g => g.Count);
        var timing = new GenerationTiming(prefillMs, decodeMs, steps, newTokens, decodeTokens, stepTimes);
        logger.LogInformation("Generated {Tokens} tokens for {Batch} prompt(s): prefill {Prefill:F1} ms, {Rate:F1} tokens/s decoding.",
            newTokens, batch, prefillMs, timing.DecodeTokensPerSecond);
        var sequences = new GeneratedSequence[batch];
        for (int r = 0; r < batch; r++)
        {
            sequences[r] = new GeneratedSequence(prompts[r].ToArray(), generated[r], null, finish[r]!.Value);
        }

        return new GenerationResult(sequences, timing);
    }

    private Tensor Prefill(Tensor ids, Tensor mask, KvCache cache, CancellationToken cancellationToken)
    {
        long length = ids.size(1);
        long chunk = cache.IsRolling ? cache.Capacity : length;
        Tensor? last = null;
        for (long start = 0; start < length; start += chunk)
        {
            cancellationToken.ThrowIfCancellationRequested();
            long n = Math.Min(chunk, length - start);
            using Tensor chunkIds = ids.narrow(1, start, n);
            using Tensor chunkMask = mask.narrow(1, start, n);
            using CausalLMOutput output = model.forward(new CausalLMInput(chunkIds) { AttentionMask = chunkMask, Cache = cache, LastPositionLogitsOnly = true });
            last?.Dispose();
            using Tensor lastPosition = output.Logits.select(1, 0);
            last = lastPosition.clone();
        }

        return last!;
    }

    private static long[] SelectNext(Tensor logits, GenerationOptions options, List<long>[] seen, Generator? rng, int step)
    {
        using var scope = NewDisposeScope();
        Tensor scores = logits;
        if (options.RepetitionPenalty != 1.0)
        {
            int width = seen.Max(s => s.Count);
            var padded = new long[seen.Length * width];
            for (int r = 0; r < seen.Length; r++)
            {
                for (int c = 0; c < width; c++)
                {
                    // Repeat a row's last id to fill: gathering/scattering the same id twice is harmless.
                    padded[(r * width) + c] = seen[r].Count == 0 ? 0 : seen[r][Math.Min(c, seen[r].Count - 1)];
                }
            }

            using Tensor seenT = tensor(padded, [seen.Length, width], ScalarType.Int64, logits.device);
            scores = LogitsProcessing.RepetitionPenalty(scores, seenT, options.RepetitionPenalty);
        }

        if (!options.DoSample)
        {
            // The chosen ids and a NaN flag per row come back in one device-to-host copy (one synchronisation per step).
            Tensor picked = cat([scores.argmax(-1), scores.isnan().any(-1).to_type(ScalarType.Int64)]).cpu();
            long[] values = picked.data<long>().ToArray();
            ThrowIfNan(values.AsSpan(seen.Length).Contains(1L), options, step);
            return values[..seen.Length];
        }

        ThrowIfNan(scores.isnan().any().item<bool>(), options, step);
        Tensor chosen;
        {
            scores = scores / options.Temperature;
            if (scores.eq(float.PositiveInfinity).logical_and(logits.isfinite()).any().item<bool>())
            {
                throw new InvalidOperationException(
                    string.Create(CultureInfo.InvariantCulture, $"Generation step {step}: logits / Temperature ({options.Temperature:G3}) overflow float32 for this model's logits; ")
                    + "use a larger Temperature, or DoSample = false for greedy decoding.");
            }

            scores = LogitsProcessing.TopK(scores, options.TopK);
            scores = LogitsProcessing.TopP(scores, options.TopP);
            Tensor probabilities = scores.softmax(-1).to(ScalarType.Float32).cpu();
            if (probabilities.isnan().any().item<bool>())
            {
                throw new InvalidOperationException(
                    $"Generation step {step}: the sampling probabilities are NaN (every logit −∞ or infinite?); are the weights loaded and finite?");
            }

            chosen = probabilities.multinomial(1, generator: rng).squeeze(-1);
        }

        return chosen.cpu().data<long>().ToArray();
    }

    // argmax over NaN answers token 0 (or the NaN's index) forever: fail as sampling does.
    private static void ThrowIfNan(bool hasNan, GenerationOptions options, int step)
    {
        if (hasNan)
        {
            throw new InvalidOperationException(
                $"Generation step {step}: the model produced NaN logits, so no token can be {(options.DoSample ? "sampled" : "chosen")} "
                + "(are the weights loaded and finite? a non-strict load, a diverged fine-tune or float16 overflow can cause it).");
        }
    }

}
