using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mistral.Core.Modeling;

/// <summary>The token embedding table (<c>embed_tokens.weight</c> [vocab, hidden]), created uninitialised.</summary>
public sealed class TokenEmbedding : nn.Module<Tensor, Tensor>
{
    private Parameter weight;

    /// <summary>Creates an uninitialised table.</summary>
    public TokenEmbedding(long vocabSize, long hiddenSize, ScalarType dtype, Device device)
        : base(nameof(TokenEmbedding))
    {
        weight = new Parameter(empty([vocabSize, hiddenSize], dtype, device));
        RegisterComponents();
    }

    /// <summary>The table [vocab, hidden].</summary>
    public Parameter Weight => weight;

    /// <summary>
    /// Looks up ids of any shape; returns [..., hidden] on the ids' device. A table on another device (a frozen table kept in
    /// host memory while the model runs on a GPU) is looked up where it lives and only the selected rows are copied: the
    /// same values, without the table's bytes on the GPU.
    /// </summary>
    public override Tensor forward(Tensor ids)
    {
        long[] shape = [.. ids.shape, weight.size(1)];
        using Tensor flat = ids.reshape(-1);
        if (flat.device.IsSameDevice(weight.device))
        {
            using Tensor rows = weight.index_select(0, flat);
            return rows.view(shape);
        }

        using Tensor there = flat.to(weight.device);
        using Tensor picked = weight.index_select(0, there);
        using Tensor moved = picked.to(ids.device);
        return moved.view(shape);
    }
}
