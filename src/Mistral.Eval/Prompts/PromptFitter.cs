using System.Globalization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Mistral.Eval.Prompts;

/// <summary>
/// Measures a prompt against a <see cref="PromptBudget"/> and, by a <see cref="PromptFitPolicy"/>, fails with a
/// clear message or shortens it (dropping few-shot examples from the end, cutting the input text's end) until
/// prompt + max_new_tokens fits the context. The study could not run 20-way few-shot classification because
/// 20 examples overflowed the context; this reports that instead of letting the model see a cut prompt.
/// </summary>
public sealed class PromptFitter
{
    private readonly ITokenCounter _counter;
    private readonly ILogger _logger;

    /// <summary>Creates a fitter.</summary>
    /// <param name="counter">Counts tokens as the model's tokenizer does.</param>
    /// <param name="budget">The context length and tokens to generate.</param>
    /// <param name="logger">Receives a line whenever a prompt is shortened.</param>
    public PromptFitter(ITokenCounter counter, PromptBudget budget, ILogger<PromptFitter>? logger = null)
    {
        _counter = counter ?? throw new ArgumentNullException(nameof(counter));
        Budget = budget ?? throw new ArgumentNullException(nameof(budget));
        _logger = (ILogger?)logger ?? NullLogger.Instance;
    }

    /// <summary>The budget prompts are fitted to.</summary>
    public PromptBudget Budget { get; }

    /// <summary>Builds the prompt unchanged and reports its length and whether it fits.</summary>
    /// <param name="request">The prompt to measure.</param>
    /// <returns>The measurement (<see cref="PromptFitResult.Fits"/> may be false).</returns>
    public PromptFitResult Measure(PromptRequest request)
    {
        Validate(request, PromptFitPolicy.Fail);
        string prompt = Build(request, request.FewShotBlocks.Count, inputLength: null);
        int tokens = Count(prompt);
        return new PromptFitResult(prompt, tokens, tokens, Budget, request.FewShotBlocks.Count, 0, 0);
    }

    /// <summary>Builds the prompt and makes it fit by <paramref name="policy"/>.</summary>
    /// <param name="request">The prompt to build.</param>
    /// <param name="policy">What to do when it is too long.</param>
    /// <returns>The fitted prompt, with what was changed.</returns>
    /// <exception cref="PromptTooLongException">It does not fit and the policy is <see cref="PromptFitPolicy.Fail"/>, or shortening as allowed is not enough.</exception>
    /// <exception cref="ArgumentException">The policy needs <see cref="PromptRequest.FewShotPlaceholder"/> or <see cref="PromptRequest.InputPlaceholder"/>, which the request lacks.</exception>
    public PromptFitResult Fit(PromptRequest request, PromptFitPolicy policy)
    {
        Validate(request, policy);
        var measured = Measure(request);
        if (measured.Fits)
        {
            return measured;
        }

        int original = measured.PromptTokens;
        int n = request.FewShotBlocks.Count;
        string name = request.Template.Name;
        if (policy == PromptFitPolicy.Fail)
        {
            throw new PromptTooLongException(
                $"{Header(name, original)} Policy Fail: nothing was shortened. Use PromptFitPolicy.DropFewShotExamples"
                + (n > 0 ? $" (the prompt has {n} few-shot examples)" : string.Empty)
                + " or TruncateInput to fit it, or a model with a longer context.",
                original,
                Budget);
        }

        int kept = n;
        if (policy is PromptFitPolicy.DropFewShotExamples or PromptFitPolicy.DropFewShotExamplesThenTruncateInput)
        {
            int tokens = original;
            while (kept > 0)
            {
                kept--;
                var prompt = Build(request, kept, null);
                tokens = Count(prompt);
                if (tokens <= Budget.MaxPromptTokens)
                {
                    return Done(new PromptFitResult(prompt, tokens, original, Budget, kept, n - kept, 0), name);
                }
            }

            if (policy == PromptFitPolicy.DropFewShotExamples)
            {
                throw new PromptTooLongException(
                    $"{Header(name, original)} Policy DropFewShotExamples: even with all {n} few-shot examples dropped the prompt is {tokens} tokens; "
                    + "use DropFewShotExamplesThenTruncateInput or TruncateInput.",
                    tokens,
                    Budget);
            }
        }

        // Truncate the input (with `kept` examples): binary search over character boundaries for the longest prefix that fits.
        string input = request.Values[request.InputPlaceholder!];
        var boundaries = RuneBoundaries(input);
        string empty = Build(request, kept, 0);
        int emptyTokens = Count(empty);
        if (emptyTokens > Budget.MaxPromptTokens)
        {
            throw new PromptTooLongException(
                $"{Header(name, original)} Policy {policy}: even with an empty {{{request.InputPlaceholder}}}"
                + (kept < n ? " and no few-shot examples" : string.Empty)
                + $" the prompt is {emptyTokens} tokens; the template alone does not fit.",
                emptyTokens,
                Budget);
        }

        int lo = 0; // index into boundaries known to fit
        int hi = boundaries.Length - 1; // known (at full length) not to fit when kept == n; checked below otherwise
        string best = empty;
        int bestTokens = emptyTokens;
        if (kept < n)
        {
            // Dropping all examples happened first; the full input may now fit without cutting.
            string full = Build(request, kept, input.Length);
            int fullTokens = Count(full);
            if (fullTokens <= Budget.MaxPromptTokens)
            {
                return Done(new PromptFitResult(full, fullTokens, original, Budget, kept, n - kept, 0), name);
            }
        }

        while (hi - lo > 1)
        {
            int mid = lo + ((hi - lo) / 2);
            string candidate = Build(request, kept, boundaries[mid]);
            int t = Count(candidate);
            if (t <= Budget.MaxPromptTokens)
            {
                lo = mid;
                best = candidate;
                bestTokens = t;
            }
            else
            {
                hi = mid;
            }
        }

        return Done(new PromptFitResult(best, bestTokens, original, Budget, kept, n - kept, input.Length - boundaries[lo]), name);
    }

    private PromptFitResult Done(PromptFitResult result, string name)
    {
        if (result.Changed)
        {
            _logger.LogInformation("Prompt '{Template}' shortened to fit: {Description}", name, result.Describe());
        }

        return result;
    }

    private string Header(string name, int tokens) =>
        string.Create(
            CultureInfo.InvariantCulture,
            $"Prompt '{name}' is {tokens} tokens; with max_new_tokens {Budget.MaxNewTokens} it needs {tokens + Budget.MaxNewTokens} but the context length is {Budget.ContextLength} (over by {tokens - Budget.MaxPromptTokens} tokens).");

    private int Count(string text)
    {
        int n = _counter.CountTokens(text);
        if (n < 0)
        {
            throw new InvalidOperationException($"The token counter returned a negative count ({n}).");
        }

        return n;
    }

    private static string Build(PromptRequest request, int examples, int? inputLength)
    {
        var values = new Dictionary<string, string>(request.Values, StringComparer.Ordinal);
        if (request.FewShotPlaceholder is { } fs)
        {
            values[fs] = string.Concat(request.FewShotBlocks.Take(examples));
        }

        if (inputLength is { } len && request.InputPlaceholder is { } ip)
        {
            values[ip] = values[ip][..len];
        }

        return request.Template.Render(values);
    }

    private static int[] RuneBoundaries(string s)
    {
        var result = new List<int>(s.Length + 1) { 0 };
        int pos = 0;
        foreach (var r in s.EnumerateRunes())
        {
            pos += r.Utf16SequenceLength;
            result.Add(pos);
        }

        return result.ToArray();
    }

    private static void Validate(PromptRequest request, PromptFitPolicy policy)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(request.Template);
        ArgumentNullException.ThrowIfNull(request.Values);
        ArgumentNullException.ThrowIfNull(request.FewShotBlocks);
        string name = request.Template.Name;
        if (request.FewShotPlaceholder is { } fs)
        {
            if (!request.Template.Placeholders.Contains(fs))
            {
                throw new ArgumentException($"FewShotPlaceholder {{{fs}}} is not a placeholder of template '{name}'.", nameof(request));
            }

            if (request.Values.ContainsKey(fs))
            {
                throw new ArgumentException($"Values must not contain {{{fs}}}: the fitter fills it from FewShotBlocks.", nameof(request));
            }
        }
        else if (request.FewShotBlocks.Count > 0)
        {
            throw new ArgumentException("FewShotBlocks were given but FewShotPlaceholder is not set.", nameof(request));
        }

        if (request.InputPlaceholder is { } ip && !request.Values.ContainsKey(ip))
        {
            throw new ArgumentException($"InputPlaceholder {{{ip}}} has no value in Values (template '{name}').", nameof(request));
        }

        bool drops = policy is PromptFitPolicy.DropFewShotExamples or PromptFitPolicy.DropFewShotExamplesThenTruncateInput;
        bool truncates = policy is PromptFitPolicy.TruncateInput or PromptFitPolicy.DropFewShotExamplesThenTruncateInput;
        if (drops && request.FewShotPlaceholder is null)
        {
            throw new ArgumentException($"Policy {policy} needs PromptRequest.FewShotPlaceholder (template '{name}').", nameof(policy));
        }

        if (truncates && request.InputPlaceholder is null)
        {
            throw new ArgumentException($"Policy {policy} needs PromptRequest.InputPlaceholder (template '{name}').", nameof(policy));
        }

        if (!Enum.IsDefined(policy))
        {
            throw new ArgumentOutOfRangeException(nameof(policy), policy, "Unknown PromptFitPolicy.");
        }
    }
}
