namespace Mistral.Eval.Metrics;

/// <summary>
/// ROUGE exactly as Google's rouge_score 0.1.2 computes it (the package Hugging Face
/// <c>evaluate</c> wraps): rouge1…rouge9, rougeL and rougeLsum with its tokenizer, NLTK's Porter
/// stemmer, the summary-level union LCS with ROUGE-1.5.5 hit counting, and best-of for multiple
/// references. Argument order is target (reference) first, prediction second.
/// </summary>
/// <remarks>
/// The scorer keeps a vocabulary of the tokens it has seen and a cache of their stems, so it grows
/// with the vocabulary of the texts scored. Calls are serialized internally, so one instance may be
/// shared between threads; use one instance per thread for parallel scoring.
/// </remarks>
public sealed class RougeScorer
{
    private readonly RougeTypeSpec[] _types;
    private readonly bool _needsWholeText;
    private readonly bool _needsLines;
    private readonly RougeTokenEncoder _encoder;
    private readonly Lock _gate = new();

    // Scratch space reused between calls (guarded by _gate).
    private readonly List<int> _ids = [];
    private readonly Dictionary<long, int> _ngramIds = [];
    private readonly Dictionary<int, int> _targetCounts = [];
    private readonly Dictionary<int, int> _predictionCounts = [];
    private int[] _table = new int[256];
    private int[] _levelTarget = new int[64];
    private int[] _levelPrediction = new int[64];
    private int[] _countTarget = new int[64];
    private int[] _countPrediction = new int[64];
    private bool[] _union = new bool[64];

    /// <summary>Creates a scorer.</summary>
    /// <param name="options">The ROUGE types and stemming.</param>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is null.</exception>
    /// <exception cref="ArgumentException">An option is invalid.</exception>
    public RougeScorer(RougeOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        Options = options;
        _types = options.RougeTypes.Select(RougeTypeSpec.Parse).ToArray();
        _needsWholeText = _types.Any(t => t.Kind != RougeKind.LcsSummary);
        _needsLines = _types.Any(t => t.Kind == RougeKind.LcsSummary);
        _encoder = new RougeTokenEncoder(options.UseStemmer);
    }

    /// <summary>The options this scorer was created with.</summary>
    public RougeOptions Options { get; }

    /// <summary>The ROUGE types computed, in the order of <see cref="RougeOptions.RougeTypes"/>.</summary>
    public IReadOnlyList<string> RougeTypes => Array.AsReadOnly(_types.Select(t => t.Name).ToArray());

    /// <summary>Scores a prediction against one target, as rouge_score's <c>score(target, prediction)</c>.</summary>
    /// <param name="target">The reference text.</param>
    /// <param name="prediction">The generated text.</param>
    /// <returns>One score per ROUGE type, keyed by its name.</returns>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    public IReadOnlyDictionary<string, RougeScore> Score(string target, string prediction)
    {
        ArgumentNullException.ThrowIfNull(target);
        ArgumentNullException.ThrowIfNull(prediction);
        var scores = new RougeScore[_types.Length];
        lock (_gate)
        {
            ScoreInto(target, prediction, scores);
        }

        return ToDictionary(scores);
    }

    /// <summary>
    /// Scores a prediction against several targets, as rouge_score's <c>score_multi</c>: for each ROUGE
    /// type, the score of the target with the highest F-measure (the first one wins a tie).
    /// </summary>
    /// <param name="targets">The reference texts (at least one).</param>
    /// <param name="prediction">The generated text.</param>
    /// <returns>One score per ROUGE type, keyed by its name.</returns>
    /// <exception cref="ArgumentNullException">An argument or target is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="targets"/> is empty.</exception>
    public IReadOnlyDictionary<string, RougeScore> Score(IReadOnlyList<string> targets, string prediction)
    {
        ValidateTargets(targets, nameof(targets));
        ArgumentNullException.ThrowIfNull(prediction);
        var best = new RougeScore[_types.Length];
        lock (_gate)
        {
            ScoreMultiInto(targets, prediction, best);
        }

        return ToDictionary(best);
    }

    /// <summary>Scores every prediction against the target at the same index.</summary>
    /// <param name="targets">The reference texts.</param>
    /// <param name="predictions">The generated texts, as many as <paramref name="targets"/>.</param>
    /// <param name="progress">Receives the number of examples scored so far (every 1,000 and at the end).</param>
    /// <param name="cancellationToken">Cancels the work between examples.</param>
    /// <returns>The per-example scores, in input order.</returns>
    /// <exception cref="ArgumentNullException">An argument or element is null.</exception>
    /// <exception cref="ArgumentException">The lists have different lengths.</exception>
    public IReadOnlyList<IReadOnlyDictionary<string, RougeScore>> ScoreAll(
        IReadOnlyList<string> targets,
        IReadOnlyList<string> predictions,
        IProgress<int>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(targets);
        ArgumentNullException.ThrowIfNull(predictions);
        CheckSameLength(targets.Count, predictions.Count, nameof(predictions));
        return ScoreEach(predictions.Count, i =>
        {
            string target = targets[i] ?? throw new ArgumentNullException(nameof(targets), $"{nameof(targets)}[{i}] is null.");
            string prediction = predictions[i] ?? throw new ArgumentNullException(nameof(predictions), $"{nameof(predictions)}[{i}] is null.");
            var scores = new RougeScore[_types.Length];
            ScoreInto(target, prediction, scores);
            return scores;
        }, progress, cancellationToken);
    }

    /// <summary>Scores every prediction against the targets at the same index (best target per type).</summary>
    /// <param name="targets">For each example, its reference texts (at least one each).</param>
    /// <param name="predictions">The generated texts, as many as <paramref name="targets"/>.</param>
    /// <param name="progress">Receives the number of examples scored so far (every 1,000 and at the end).</param>
    /// <param name="cancellationToken">Cancels the work between examples.</param>
    /// <returns>The per-example scores, in input order.</returns>
    /// <exception cref="ArgumentNullException">An argument or element is null.</exception>
    /// <exception cref="ArgumentException">The lists have different lengths, or an example has no target.</exception>
    public IReadOnlyList<IReadOnlyDictionary<string, RougeScore>> ScoreAll(
        IReadOnlyList<IReadOnlyList<string>> targets,
        IReadOnlyList<string> predictions,
        IProgress<int>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(targets);
        ArgumentNullException.ThrowIfNull(predictions);
        CheckSameLength(targets.Count, predictions.Count, nameof(predictions));
        return ScoreEach(predictions.Count, i =>
        {
            ValidateTargets(targets[i], $"{nameof(targets)}[{i}]");
            string prediction = predictions[i] ?? throw new ArgumentNullException(nameof(predictions), $"{nameof(predictions)}[{i}] is null.");
            var scores = new RougeScore[_types.Length];
            ScoreMultiInto(targets[i], prediction, scores);
            return scores;
        }, progress, cancellationToken);
    }

    private List<IReadOnlyDictionary<string, RougeScore>> ScoreEach(
        int count, Func<int, RougeScore[]> scoreOne, IProgress<int>? progress, CancellationToken cancellationToken)
    {
        var results = new List<IReadOnlyDictionary<string, RougeScore>>(count);
        lock (_gate)
        {
            for (int i = 0; i < count; i++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                results.Add(ToDictionary(scoreOne(i)));
                if ((i + 1) % 1000 == 0)
                {
                    progress?.Report(i + 1);
                }
            }
        }

        progress?.Report(count);
        return results;
    }

    private static void CheckSameLength(int targets, int predictions, string argument)
    {
        if (targets != predictions)
        {
            throw new ArgumentException(
                $"{argument} has {predictions} items but targets has {targets}; they must pair one to one.", argument);
        }
    }

    private static void ValidateTargets(IReadOnlyList<string>? targets, string argument)
    {
        if (targets is null)
        {
            throw new ArgumentNullException(argument, $"{argument} is null.");
        }

        if (targets.Count == 0)
        {
            throw new ArgumentException($"{argument} must contain at least one target.", argument);
        }

        for (int i = 0; i < targets.Count; i++)
        {
            if (targets[i] is null)
            {
                throw new ArgumentNullException(argument, $"{argument}[{i}] is null.");
            }
        }
    }

    private Dictionary<string, RougeScore> ToDictionary(RougeScore[] scores)
    {
        var result = new Dictionary<string, RougeScore>(scores.Length, StringComparer.Ordinal);
        for (int i = 0; i < scores.Length; i++)
        {
            result.Add(_types[i].Name, scores[i]);
        }

        return result;
    }

    private void ScoreMultiInto(IReadOnlyList<string> targets, string prediction, RougeScore[] best)
    {
        var current = new RougeScore[_types.Length];
        for (int t = 0; t < targets.Count; t++)
        {
            ScoreInto(targets[t], prediction, current);
            for (int k = 0; k < current.Length; k++)
            {
                // numpy.argmax keeps the first maximum.
                if (t == 0 || current[k].FMeasure > best[k].FMeasure)
                {
                    best[k] = current[k];
                }
            }
        }
    }

    private void ScoreInto(string target, string prediction, RougeScore[] scores)
    {
        int[] targetTokens = [];
        int[] predictionTokens = [];
        if (_needsWholeText)
        {
            targetTokens = Encode(target);
            predictionTokens = Encode(prediction);
        }

        List<int[]>? targetLines = null;
        List<int[]>? predictionLines = null;
        if (_needsLines)
        {
            targetLines = EncodeLines(target);
            predictionLines = EncodeLines(prediction);
        }

        for (int k = 0; k < _types.Length; k++)
        {
            RougeTypeSpec type = _types[k];
            scores[k] = type.Kind switch
            {
                RougeKind.NGram => ScoreNGrams(targetTokens, predictionTokens, type.N),
                RougeKind.Lcs => ScoreLcs(targetTokens, predictionTokens),
                _ => ScoreSummaryLcs(targetLines!, predictionLines!),
            };
        }
    }

    private int[] Encode(ReadOnlySpan<char> text)
    {
        _ids.Clear();
        _encoder.Encode(text, _ids);
        return _ids.ToArray();
    }

    /// <summary>Python's <c>text.split("\n")</c> with empty lines dropped, each line tokenized.</summary>
    private List<int[]> EncodeLines(string text)
    {
        var lines = new List<int[]>();
        foreach (Range range in text.AsSpan().Split('\n'))
        {
            ReadOnlySpan<char> line = text.AsSpan(range);
            if (!line.IsEmpty)
            {
                lines.Add(Encode(line));
            }
        }

        return lines;
    }

    private RougeScore ScoreNGrams(int[] target, int[] prediction, int n)
    {
        int targetCount = Math.Max(target.Length - n + 1, 0);
        int predictionCount = Math.Max(prediction.Length - n + 1, 0);
        EnsureCapacity(ref _levelTarget, target.Length);
        EnsureCapacity(ref _levelPrediction, prediction.Length);

        // Give each distinct n-gram a dense id by extending (n-1)-gram ids one token at a time.
        int distinct = 0;
        for (int level = 1; level <= n; level++)
        {
            _ngramIds.Clear();
            distinct = 0;
            distinct = AssignLevel(target, _levelTarget, level, distinct);
            distinct = AssignLevel(prediction, _levelPrediction, level, distinct);
        }

        EnsureCapacity(ref _countTarget, distinct);
        EnsureCapacity(ref _countPrediction, distinct);
        Array.Clear(_countTarget, 0, distinct);
        Array.Clear(_countPrediction, 0, distinct);
        for (int i = 0; i < targetCount; i++)
        {
            _countTarget[_levelTarget[i]]++;
        }

        for (int i = 0; i < predictionCount; i++)
        {
            _countPrediction[_levelPrediction[i]]++;
        }

        int overlap = 0;
        for (int id = 0; id < distinct; id++)
        {
            overlap += Math.Min(_countTarget[id], _countPrediction[id]);
        }

        double precision = (double)overlap / Math.Max(predictionCount, 1);
        double recall = (double)overlap / Math.Max(targetCount, 1);
        return RougeScore.FromPrecisionRecall(precision, recall);
    }

    private int AssignLevel(int[] tokens, int[] ids, int level, int distinct)
    {
        int count = tokens.Length - level + 1;
        for (int i = 0; i < count; i++)
        {
            long key = level == 1 ? tokens[i] : ((long)ids[i] << 32) | (uint)tokens[i + level - 1];
            if (!_ngramIds.TryGetValue(key, out int id))
            {
                id = distinct++;
                _ngramIds.Add(key, id);
            }

            ids[i] = id;
        }

        return distinct;
    }

    private RougeScore ScoreLcs(int[] target, int[] prediction)
    {
        if (target.Length == 0 || prediction.Length == 0)
        {
            return RougeScore.Zero;
        }

        int lcs = LcsLength(target, prediction);
        return RougeScore.FromPrecisionRecall((double)lcs / prediction.Length, (double)lcs / target.Length);
    }

    private int LcsLength(int[] reference, int[] candidate)
    {
        int cols = candidate.Length + 1;
        EnsureCapacity(ref _table, 2 * cols);
        Span<int> previous = _table.AsSpan(0, cols);
        Span<int> current = _table.AsSpan(cols, cols);
        previous.Clear();
        current[0] = 0;
        foreach (int r in reference)
        {
            for (int j = 1; j < cols; j++)
            {
                current[j] = r == candidate[j - 1] ? previous[j - 1] + 1 : Math.Max(previous[j], current[j - 1]);
            }

            Span<int> swap = previous;
            previous = current;
            current = swap;
        }

        return previous[cols - 1];
    }

    private RougeScore ScoreSummaryLcs(List<int[]> targetLines, List<int[]> predictionLines)
    {
        if (targetLines.Count == 0 || predictionLines.Count == 0)
        {
            return RougeScore.Zero;
        }

        int m = targetLines.Sum(l => l.Length);
        int n = predictionLines.Sum(l => l.Length);
        if (m == 0 || n == 0)
        {
            return RougeScore.Zero;
        }

        _targetCounts.Clear();
        _predictionCounts.Clear();
        Count(targetLines, _targetCounts);
        Count(predictionLines, _predictionCounts);

        int hits = 0;
        foreach (int[] reference in targetLines)
        {
            EnsureCapacity(ref _union, reference.Length);
            Array.Clear(_union, 0, reference.Length);
            foreach (int[] candidate in predictionLines)
            {
                MarkLcs(reference, candidate, _union);
            }

            // ROUGE-1.5.5 counts each token at most as often as it occurs in both summaries.
            for (int i = 0; i < reference.Length; i++)
            {
                if (!_union[i])
                {
                    continue;
                }

                int token = reference[i];
                if (_predictionCounts.TryGetValue(token, out int inPrediction) && inPrediction > 0
                    && _targetCounts.TryGetValue(token, out int inTarget) && inTarget > 0)
                {
                    hits++;
                    _predictionCounts[token] = inPrediction - 1;
                    _targetCounts[token] = inTarget - 1;
                }
            }
        }

        return RougeScore.FromPrecisionRecall((double)hits / n, (double)hits / m);
    }

    private static void Count(List<int[]> lines, Dictionary<int, int> counts)
    {
        foreach (int[] line in lines)
        {
            foreach (int token in line)
            {
                counts[token] = counts.GetValueOrDefault(token) + 1;
            }
        }
    }

    /// <summary>
    /// Marks the reference indices of one longest common subsequence, found by rouge_score's
    /// backtrack: diagonal on a match, left only when the cell to the left is strictly greater than
    /// the cell above, otherwise up.
    /// </summary>
    private void MarkLcs(int[] reference, int[] candidate, bool[] marks)
    {
        int rows = reference.Length;
        int cols = candidate.Length;
        if (rows == 0 || cols == 0)
        {
            return;
        }

        int width = cols + 1;
        EnsureCapacity(ref _table, (rows + 1) * width);
        int[] t = _table;
        Array.Clear(t, 0, width);
        for (int i = 1; i <= rows; i++)
        {
            int row = i * width;
            int above = row - width;
            t[row] = 0;
            int r = reference[i - 1];
            for (int j = 1; j <= cols; j++)
            {
                t[row + j] = r == candidate[j - 1] ? t[above + j - 1] + 1 : Math.Max(t[above + j], t[row + j - 1]);
            }
        }

        int a = rows;
        int b = cols;
        while (a > 0 && b > 0)
        {
            if (reference[a - 1] == candidate[b - 1])
            {
                marks[a - 1] = true;
                a--;
                b--;
            }
            else if (t[a * width + b - 1] > t[(a - 1) * width + b])
            {
                b--;
            }
            else
            {
                a--;
            }
        }
    }

    private static void EnsureCapacity<T>(ref T[] array, int length)
    {
        if (array.Length < length)
        {
            array = new T[Math.Max(length, array.Length * 2)];
        }
    }
}
