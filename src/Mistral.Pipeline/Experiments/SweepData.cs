using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Mistral.Eval.Data;

namespace Mistral.Pipeline.Experiments;

/// <summary>
/// The data a sweep trains and evaluates on, with an identity that is part of every run's id: a changed file (size or
/// content) or a changed caller-given id makes every run new, so a stale result is never reused.
/// </summary>
public sealed class SweepData
{
    private SweepData(IReadOnlyList<Example> train, IReadOnlyList<Example> test, JsonObject identity, JsonObject provenance)
    {
        Train = train;
        Test = test;
        Identity = identity;
        Provenance = provenance;
    }

    /// <summary>The training examples (the sweep subsamples them per run).</summary>
    public IReadOnlyList<Example> Train { get; }

    /// <summary>The test examples every run is evaluated on.</summary>
    public IReadOnlyList<Example> Test { get; }

    /// <summary>What identifies the data in a run's id (file names, sizes and SHA-256, or the caller's id).</summary>
    internal JsonObject Identity { get; }

    /// <summary>Where the data came from (full paths), recorded in each run's configuration but not part of its id.</summary>
    internal JsonObject Provenance { get; }

    /// <summary>Data held in memory. Its identity is <paramref name="dataId"/> when given, else the SHA-256 of every example's input and target.</summary>
    /// <param name="train">Training examples.</param>
    /// <param name="test">Test examples.</param>
    /// <param name="dataId">A name for this data that changes whenever the data does (e.g. <c>"20ng-v1"</c>); null hashes the examples.</param>
    /// <returns>The data.</returns>
    /// <exception cref="ArgumentException">A list is empty or holds a null example.</exception>
    public static SweepData FromExamples(IReadOnlyList<Example> train, IReadOnlyList<Example> test, string? dataId = null)
    {
        Check(train, nameof(train));
        Check(test, nameof(test));
        if (dataId is not null && string.IsNullOrWhiteSpace(dataId))
        {
            throw new ArgumentException("dataId must not be blank; pass null to hash the examples.", nameof(dataId));
        }

        var identity = dataId is not null
            ? new JsonObject { ["id"] = dataId, ["train_examples"] = train.Count, ["test_examples"] = test.Count }
            : new JsonObject { ["train_sha256"] = HashExamples(train), ["test_sha256"] = HashExamples(test), ["train_examples"] = train.Count, ["test_examples"] = test.Count };
        return new SweepData(train.ToArray(), test.ToArray(), identity, new JsonObject { ["source"] = "memory" });
    }

    /// <summary>
    /// Reads the training and test data with the task's columns and the study's cleaning (rows whose input or target is
    /// missing or not a string are dropped and counted). Each is a file (JSONL, CSV or Parquet) or an HF URI naming a Hub
    /// dataset's files (<c>hf://datasets/org/name[@revision]/data/train-*.parquet</c>, read as <see cref="DatasetSource"/>
    /// does). The files' names, sizes and SHA-256 make the identity, so the same bytes give the same runs whether read
    /// from a folder or from the Hub cache.
    /// </summary>
    /// <param name="trainPath">The training file or HF URI.</param>
    /// <param name="testPath">The test file or HF URI.</param>
    /// <param name="columns">The task's columns (<see cref="PipelineTask.Columns"/>).</param>
    /// <param name="options">Bad-row handling; null for <see cref="ReadOptions.StudyCleaning"/>.</param>
    /// <param name="hub">How HF URIs reach the Hub; <see cref="Mistral.Hub.HubClientOptions.FromEnvironment"/> when null.</param>
    /// <param name="cancellationToken">Cancels the downloads and reads.</param>
    /// <returns>The data.</returns>
    /// <exception cref="FileNotFoundException">A file is missing (the message names it and the argument).</exception>
    /// <exception cref="Mistral.Hub.HubException">The Hub could not provide an HF URI's files.</exception>
    /// <exception cref="FormatException">A text starting with <c>hf://</c> is not a dataset or model HF URI.</exception>
    public static async Task<SweepData> ReadAsync(
        string trainPath, string testPath, ColumnMapping columns, ReadOptions? options = null, Mistral.Hub.HubClientOptions? hub = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(trainPath);
        ArgumentException.ThrowIfNullOrWhiteSpace(testPath);
        ArgumentNullException.ThrowIfNull(columns);
        foreach (var (path, name) in new[] { (trainPath, nameof(trainPath)), (testPath, nameof(testPath)) })
        {
            if (!DatasetSource.IsHubUri(path) && !File.Exists(path))
            {
                throw new FileNotFoundException($"{name}: '{path}' does not exist.", path);
            }
        }

        var (train, trainFiles) = await DatasetSource.LoadAsync(trainPath, columns, options ?? ReadOptions.StudyCleaning, hub, cancellationToken).ConfigureAwait(false);
        var (test, testFiles) = await DatasetSource.LoadAsync(testPath, columns, options ?? ReadOptions.StudyCleaning, hub, cancellationToken).ConfigureAwait(false);
        if (train.Examples.Count == 0)
        {
            throw new ArgumentException($"trainPath: '{trainPath}' holds no usable example ({train.Describe()}).", nameof(trainPath));
        }

        if (test.Examples.Count == 0)
        {
            throw new ArgumentException($"testPath: '{testPath}' holds no usable example ({test.Describe()}).", nameof(testPath));
        }

        var identity = new JsonObject
        {
            ["train"] = await SourceIdentity(trainFiles, cancellationToken).ConfigureAwait(false),
            ["test"] = await SourceIdentity(testFiles, cancellationToken).ConfigureAwait(false),
            ["columns"] = new JsonObject { ["input"] = columns.InputColumn, ["target"] = columns.TargetColumn },
            ["train_examples"] = train.Examples.Count,
            ["test_examples"] = test.Examples.Count,
        };
        var provenance = new JsonObject
        {
            ["train_path"] = DatasetSource.IsHubUri(trainPath) ? trainPath : Path.GetFullPath(trainPath),
            ["test_path"] = DatasetSource.IsHubUri(testPath) ? testPath : Path.GetFullPath(testPath),
            ["train_read"] = train.Describe(),
            ["test_read"] = test.Describe(),
        };
        foreach (var (key, path, files) in new[] { ("train_files", trainPath, trainFiles), ("test_files", testPath, testFiles) })
        {
            if (DatasetSource.IsHubUri(path))
            {
                provenance[key] = new JsonArray(files.Select(f => (JsonNode?)Path.GetFullPath(f)).ToArray());
            }
        }

        return new SweepData(train.Examples, test.Examples, identity, provenance);
    }

    /// <summary>The first <paramref name="maxTrain"/> training and <paramref name="maxTest"/> test examples (for a quick run); the limits join the identity.</summary>
    /// <param name="maxTrain">The most training examples; null keeps all.</param>
    /// <param name="maxTest">The most test examples; null keeps all.</param>
    /// <returns>The smaller data (this instance when neither limit cuts anything).</returns>
    /// <exception cref="ArgumentOutOfRangeException">A limit is below 1.</exception>
    public SweepData Take(int? maxTrain, int? maxTest)
    {
        if (maxTrain is < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(maxTrain), maxTrain, "maxTrain must be at least 1 or null.");
        }

        if (maxTest is < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(maxTest), maxTest, "maxTest must be at least 1 or null.");
        }

        bool cutTrain = maxTrain is int a && a < Train.Count;
        bool cutTest = maxTest is int b && b < Test.Count;
        if (!cutTrain && !cutTest)
        {
            return this;
        }

        var identity = (JsonObject)Identity.DeepClone();
        if (cutTrain)
        {
            identity["first_train_examples"] = maxTrain;
        }

        if (cutTest)
        {
            identity["first_test_examples"] = maxTest;
        }

        return new SweepData(cutTrain ? Train.Take(maxTrain!.Value).ToArray() : Train, cutTest ? Test.Take(maxTest!.Value).ToArray() : Test,
            identity, (JsonObject)Provenance.DeepClone());
    }

    private static void Check(IReadOnlyList<Example> list, string name)
    {
        ArgumentNullException.ThrowIfNull(list, name);
        if (list.Count == 0)
        {
            throw new ArgumentException($"{name} is empty.", name);
        }

        for (int i = 0; i < list.Count; i++)
        {
            if (list[i] is null)
            {
                throw new ArgumentException($"{name}[{i}] is null.", name);
            }
        }
    }

    private static string HashExamples(IReadOnlyList<Example> examples)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        Span<byte> length = stackalloc byte[4];
        foreach (var e in examples)
        {
            foreach (string s in new[] { e.Input, e.Target })
            {
                byte[] bytes = Encoding.UTF8.GetBytes(s ?? string.Empty);
                BitConverter.TryWriteBytes(length, bytes.Length);
                sha.AppendData(length);
                sha.AppendData(bytes);
            }
        }

        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    /// <summary>One file's identity; several files' (a Hub split's shards) as an array in order.</summary>
    private static async Task<JsonNode> SourceIdentity(IReadOnlyList<string> files, CancellationToken cancellationToken)
    {
        if (files.Count == 1)
        {
            return await FileIdentity(files[0], cancellationToken).ConfigureAwait(false);
        }

        var all = new JsonArray();
        foreach (string file in files)
        {
            all.Add(await FileIdentity(file, cancellationToken).ConfigureAwait(false));
        }

        return all;
    }

    internal static async Task<JsonObject> FileIdentity(string path, CancellationToken cancellationToken)
    {
        await using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.Asynchronous | FileOptions.SequentialScan);
        byte[] hash = await SHA256.HashDataAsync(stream, cancellationToken).ConfigureAwait(false);
        return new JsonObject { ["name"] = Path.GetFileName(path), ["size"] = stream.Length, ["sha256"] = Convert.ToHexStringLower(hash) };
    }
}
