namespace Mistral.Hub.Tests;

/// <summary>
/// A fact that needs a fixture made elsewhere (by a script on a machine with Python's huggingface_hub): skipped, with a
/// message naming the file and the command that makes it, while the file is not in tests/fixtures.
/// </summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class FixtureFactAttribute : FactAttribute
{
    /// <param name="fixture">The path under tests/fixtures, '/'-separated.</param>
    /// <param name="madeBy">The command that writes it.</param>
    public FixtureFactAttribute(string fixture, string madeBy)
    {
        if (!File.Exists(TestPaths.FixturePath(fixture.Split('/'))))
        {
            Skip = $"tests/fixtures/{fixture} is absent; make it with `{madeBy}` (on a machine with huggingface_hub) and commit it.";
        }
    }
}
