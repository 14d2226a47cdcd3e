namespace Mistral.Core.Checkpoints;

/// <summary>Progress of a checkpoint load.</summary>
/// <param name="TensorsLoaded">Tensors copied so far.</param>
/// <param name="TensorsTotal">Tensors to copy.</param>
/// <param name="BytesLoaded">Bytes read from the files so far.</param>
/// <param name="CurrentTensor">The tensor just copied.</param>
public sealed record CheckpointLoadProgress(int TensorsLoaded, int TensorsTotal, long BytesLoaded, string CurrentTensor);
