namespace Mistral.Core.Modeling;

/// <summary>What one checkpointed layer call needs in backward besides its saved tensors.</summary>
/// <param name="Layer">The layer to re-run.</param>
/// <param name="InputRequiresGrad">Whether the layer's input needs a gradient (false when only parameters train).</param>
/// <param name="AcceleratorSeed">
/// On CUDA, the seed given to the device generators before the forward and again before the recomputation (TorchSharp
/// cannot read or restore a CUDA generator's state); null on CPU, where the CPU generator's state is saved instead.
/// </param>
/// <param name="ArgumentCount">How many arguments the function was applied to (backward returns one entry per argument).</param>
internal sealed record CheckpointCall(MistralDecoderLayer Layer, bool InputRequiresGrad, long? AcceleratorSeed, int ArgumentCount);
