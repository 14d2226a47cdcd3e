namespace Mistral.Samples.Study;

/// <summary>The embedded kit's default paths (relative to the current folder): a model and the two tasks' Parquet files.</summary>
internal static class KitPaths
{
    public const string Model = "kit/model";

    public static string Train(StudyTask task) => $"kit/data/{Folder(task)}/train.parquet";

    public static string Test(StudyTask task) => $"kit/data/{Folder(task)}/test.parquet";

    private static string Folder(StudyTask task) => task == StudyTask.Classification ? "classification" : "summarization";
}

/// <summary>The study's two tasks.</summary>
internal enum StudyTask
{
    Classification,
    Summarization,
}

/// <summary>A mistake on the command line or a missing input: printed as one line naming the option, exit code 2.</summary>
internal sealed class UsageException(string message) : Exception(message);
