namespace Mistral.Core.Tests;

/// <summary>
/// Tests that seed TorchSharp's process-wide default generator and compare what it draws run alone: any other test
/// drawing from it in parallel (unseeded sampling, dropout) would change their masks.
/// </summary>
[CollectionDefinition("default generator", DisableParallelization = true)]
public sealed class DefaultGeneratorCollection;
