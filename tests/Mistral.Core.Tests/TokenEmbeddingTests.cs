using FluentAssertions;
using Mistral.Core.Modeling;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Mistral.Core.Tests;

/// <summary>
/// <see cref="TokenEmbedding"/> built around an existing table: the lookup is the table's rows (bf16 bits included), the
/// table becomes the parameter itself, and a table that is not [vocab, hidden] is refused naming the argument. The pinned
/// host-table kernel needs a GPU; it is checked by host emulation (tools/cuda/emulate_check.py) and the GPU lane.
/// </summary>
public class TokenEmbeddingTests
{
    [Fact]
    public void AWrappedTableLooksUpItsOwnRows()
    {
        using var scope = NewDisposeScope();
        Tensor table = arange(0, 7 * 8, ScalarType.Float32).reshape(7, 8).div(3).to(ScalarType.BFloat16);
        using Tensor expected = table.clone();
        using var embedding = new TokenEmbedding(table);
        embedding.Weight.shape.Should().Equal([7L, 8L]);
        embedding.named_parameters().Select(p => p.name).Should().Equal("weight");
        using Tensor ids = tensor(new long[] { 6, 0, 3, 3, 1, 5 }).reshape(2, 3);
        using Tensor rows = embedding.forward(ids);
        rows.shape.Should().Equal([2L, 3L, 8L]);
        using Tensor reference = expected.index_select(0, ids.reshape(-1)).reshape(2, 3, 8);
        rows.ne(reference).sum().item<long>().Should().Be(0, "each id's row, bit for bit");
        rows[0, 0, 7].to(ScalarType.Float32).item<float>().Should().Be(18.375f, "row 6, column 7: 55 / 3 rounded to bf16");
    }

    [Fact]
    public void ATableThatIsNotTwoDimensionalIsRefused()
    {
        using var scope = NewDisposeScope();
        Tensor flat = zeros(12);
        var act = () => new TokenEmbedding(flat);
        act.Should().Throw<ArgumentException>().Which.ParamName.Should().Be("table");
        act.Should().Throw<ArgumentException>().WithMessage("*[vocab, hidden]*[12]*");
    }
}
