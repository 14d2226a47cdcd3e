namespace Mistral.Eval.Data;

/// <summary>
/// Train/test splits and stratified subsamples that reproduce scikit-learn's <c>train_test_split</c>
/// row for row: the same per-class counts (its <c>_approximate_mode</c> allocation) and the same rows in
/// the same order, because NumPy's legacy <c>RandomState</c> stream is re-implemented in
/// <see cref="NumpyRandomState"/>. The study subsampled its training set with
/// <c>train_test_split(df, stratify=df.label, train_size=fraction, random_state=42)</c>, which is
/// <see cref="StratifiedSubsample{T}(IReadOnlyList{T}, Func{T, string}, double, uint)"/> with seed 42.
/// Deterministic on every platform (integer arithmetic plus IEEE double division and floor).
/// </summary>
public static class DataSplitter
{
    /// <summary>The seed the study used.</summary>
    public const uint StudySeed = 42;

    /// <summary>The training fractions of the study's sample-efficiency experiment.</summary>
    public static IReadOnlyList<double> StudyFractions { get; } = [0.025, 0.05, 0.1, 0.25, 0.5, 0.99];

    /// <summary>
    /// Keeps a stratified fraction of the rows: scikit-learn's
    /// <c>train_test_split(items, stratify=labels, train_size=trainFraction, random_state=seed)</c>.
    /// <see cref="DataSplit{T}.Train"/> holds the kept rows (floor(fraction × n) of them), <see cref="DataSplit{T}.Test"/> the rest.
    /// </summary>
    /// <typeparam name="T">The row type.</typeparam>
    /// <param name="items">The rows.</param>
    /// <param name="labelOf">The stratification label of a row.</param>
    /// <param name="trainFraction">The fraction to keep, strictly between 0 and 1.</param>
    /// <param name="seed">The NumPy seed (the study's is 42).</param>
    /// <returns>The kept rows and the rest.</returns>
    /// <exception cref="ArgumentException">A side would hold fewer rows than there are classes, or a class has one row (scikit-learn refuses these too).</exception>
    public static DataSplit<T> StratifiedSubsample<T>(IReadOnlyList<T> items, Func<T, string> labelOf, double trainFraction, uint seed = StudySeed)
    {
        ArgumentNullException.ThrowIfNull(items);
        ValidateFraction(trainFraction, nameof(trainFraction));
        int n = items.Count;
        int nTrain = (int)Math.Floor(trainFraction * n);
        return Stratified(items, labelOf, nTrain, n - nTrain, seed, nameof(trainFraction), trainFraction);
    }

    /// <summary>
    /// A stratified train/validation split: scikit-learn's
    /// <c>train_test_split(items, stratify=labels, test_size=validationFraction, random_state=seed)</c>
    /// (ceil(fraction × n) validation rows).
    /// </summary>
    /// <typeparam name="T">The row type.</typeparam>
    /// <param name="items">The rows.</param>
    /// <param name="labelOf">The stratification label of a row.</param>
    /// <param name="validationFraction">The validation fraction, strictly between 0 and 1.</param>
    /// <param name="seed">The NumPy seed.</param>
    /// <returns><see cref="DataSplit{T}.Train"/> = training rows, <see cref="DataSplit{T}.Test"/> = validation rows.</returns>
    public static DataSplit<T> StratifiedTrainValidationSplit<T>(IReadOnlyList<T> items, Func<T, string> labelOf, double validationFraction, uint seed = StudySeed)
    {
        ArgumentNullException.ThrowIfNull(items);
        ValidateFraction(validationFraction, nameof(validationFraction));
        int n = items.Count;
        int nTest = (int)Math.Ceiling(validationFraction * n);
        return Stratified(items, labelOf, n - nTest, nTest, seed, nameof(validationFraction), validationFraction);
    }

    /// <summary>
    /// An unstratified shuffled train/validation split: scikit-learn's
    /// <c>train_test_split(items, test_size=validationFraction, random_state=seed)</c>.
    /// </summary>
    /// <typeparam name="T">The row type.</typeparam>
    /// <param name="items">The rows.</param>
    /// <param name="validationFraction">The validation fraction, strictly between 0 and 1.</param>
    /// <param name="seed">The NumPy seed.</param>
    /// <returns><see cref="DataSplit{T}.Train"/> = training rows, <see cref="DataSplit{T}.Test"/> = validation rows.</returns>
    public static DataSplit<T> RandomTrainValidationSplit<T>(IReadOnlyList<T> items, double validationFraction, uint seed = StudySeed)
    {
        ArgumentNullException.ThrowIfNull(items);
        ValidateFraction(validationFraction, nameof(validationFraction));
        int n = items.Count;
        int nTest = (int)Math.Ceiling(validationFraction * n);
        int nTrain = n - nTest;
        if (nTrain <= 0 || nTest <= 0)
        {
            throw new ArgumentException(
                $"With {n} rows and validationFraction={validationFraction}, one side of the split would be empty.", nameof(validationFraction));
        }

        var perm = new NumpyRandomState(seed).Permutation(n);
        var test = perm.AsSpan(0, nTest).ToArray();
        var train = perm.AsSpan(nTest, nTrain).ToArray();
        return Build(items, train, test);
    }

    /// <summary>
    /// scikit-learn's <c>_approximate_mode</c>: how many rows of each class to draw so that
    /// <paramref name="draws"/> rows are split in proportion to <paramref name="classCounts"/>; leftover
    /// rows go to the largest fractional parts, ties broken with <paramref name="rng"/> exactly as NumPy does.
    /// </summary>
    /// <param name="classCounts">Rows per class, in NumPy's sorted class order.</param>
    /// <param name="draws">The total to allocate.</param>
    /// <param name="rng">The random state (advanced only when ties must be broken).</param>
    /// <returns>The per-class allocation (sums to <paramref name="draws"/>).</returns>
    public static int[] ApproximateMode(IReadOnlyList<int> classCounts, int draws, NumpyRandomState rng)
    {
        ArgumentNullException.ThrowIfNull(classCounts);
        ArgumentNullException.ThrowIfNull(rng);
        long total = 0;
        foreach (int c in classCounts)
        {
            total += c;
        }

        int k = classCounts.Count;
        var continuous = new double[k];
        var floored = new double[k];
        double flooredSum = 0;
        for (int i = 0; i < k; i++)
        {
            continuous[i] = (double)classCounts[i] / total * draws;
            floored[i] = Math.Floor(continuous[i]);
            flooredSum += floored[i];
        }

        int needToAdd = (int)(draws - flooredSum);
        if (needToAdd > 0)
        {
            var remainder = new double[k];
            for (int i = 0; i < k; i++)
            {
                remainder[i] = continuous[i] - floored[i];
            }

            var values = remainder.Distinct().OrderByDescending(v => v).ToArray();
            foreach (double value in values)
            {
                var inds = Enumerable.Range(0, k).Where(i => remainder[i] == value).ToArray();
                int addNow = Math.Min(inds.Length, needToAdd);
                foreach (int pick in rng.Choice(inds.Length, addNow))
                {
                    floored[inds[pick]] += 1;
                }

                needToAdd -= addNow;
                if (needToAdd == 0)
                {
                    break;
                }
            }
        }

        var result = new int[k];
        for (int i = 0; i < k; i++)
        {
            result[i] = (int)floored[i];
        }

        return result;
    }

    private static DataSplit<T> Stratified<T>(IReadOnlyList<T> items, Func<T, string> labelOf, int nTrain, int nTest, uint seed, string argument, double fraction)
    {
        ArgumentNullException.ThrowIfNull(labelOf);
        int n = items.Count;
        if (nTrain <= 0 || nTest <= 0)
        {
            throw new ArgumentException(
                $"With {n} rows and {argument}={fraction}, one side of the split would be empty ({nTrain} train, {nTest} test).", argument);
        }

        var labels = new string[n];
        for (int i = 0; i < n; i++)
        {
            labels[i] = labelOf(items[i]) ?? throw new ArgumentException($"The label of row {i} is null.", nameof(labelOf));
        }

        var classes = labels.Distinct(StringComparer.Ordinal).Order(CodePointComparer.Instance).ToArray();
        var classOf = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int c = 0; c < classes.Length; c++)
        {
            classOf[classes[c]] = c;
        }

        var classIndices = new List<int>[classes.Length];
        for (int c = 0; c < classes.Length; c++)
        {
            classIndices[c] = [];
        }

        for (int i = 0; i < n; i++)
        {
            classIndices[classOf[labels[i]]].Add(i);
        }

        var counts = classIndices.Select(l => l.Count).ToArray();
        int smallest = Array.IndexOf(counts, counts.Min());
        if (counts[smallest] < 2)
        {
            throw new ArgumentException(
                $"Class '{classes[smallest]}' has only 1 row; a stratified split needs at least 2 rows per class.", nameof(items));
        }

        if (nTrain < classes.Length)
        {
            throw new ArgumentException(
                $"{argument}={fraction} of {n} rows gives a train side of {nTrain} rows, fewer than the {classes.Length} classes.", argument);
        }

        if (nTest < classes.Length)
        {
            throw new ArgumentException(
                $"{argument}={fraction} of {n} rows leaves a test side of {nTest} rows, fewer than the {classes.Length} classes.", argument);
        }

        var rng = new NumpyRandomState(seed);
        var trainPerClass = ApproximateMode(counts, nTrain, rng);
        var remaining = counts.Select((c, i) => c - trainPerClass[i]).ToArray();
        var testPerClass = ApproximateMode(remaining, nTest, rng);

        var train = new List<int>(nTrain);
        var test = new List<int>(nTest);
        for (int c = 0; c < classes.Length; c++)
        {
            var perm = rng.Permutation(counts[c]);
            for (int j = 0; j < trainPerClass[c]; j++)
            {
                train.Add(classIndices[c][perm[j]]);
            }

            for (int j = trainPerClass[c]; j < trainPerClass[c] + testPerClass[c]; j++)
            {
                test.Add(classIndices[c][perm[j]]);
            }
        }

        var trainOrder = rng.Permutation(train);
        var testOrder = rng.Permutation(test);
        return Build(items, trainOrder, testOrder);
    }

    private static DataSplit<T> Build<T>(IReadOnlyList<T> items, int[] train, int[] test) =>
        new(train.Select(i => items[i]).ToArray(), test.Select(i => items[i]).ToArray(), train, test);

    private static void ValidateFraction(double fraction, string name)
    {
        if (!(fraction > 0 && fraction < 1))
        {
            throw new ArgumentOutOfRangeException(name, fraction, $"{name} must be strictly between 0 and 1.");
        }
    }
}
