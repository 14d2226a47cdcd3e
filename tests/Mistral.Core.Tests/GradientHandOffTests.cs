using FluentAssertions;
using Mistral.Core.Modeling;
using Xunit;
using static TorchSharp.torch;

namespace Mistral.Core.Tests;

/// <summary>
/// <see cref="GradientHandOff"/>: a custom backward's incoming gradient handle goes at once, its returned handles at the
/// next backward on the same thread, and a gradient passed straight through is not disposed under the caller.
/// </summary>
public class GradientHandOffTests
{
    [Fact]
    public void TheIncomingHandleGoesAtOnceAndTheReturnedOnesAtTheNextBackward()
    {
        // A thread of its own: the hand-off list is per thread, and the test must not release another test's gradients.
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                var incoming = ones(3);
                var returned = zeros(3);
                var result = GradientHandOff.Return(incoming, [returned, null!]);
                result.Should().HaveCount(2);
                incoming.IsInvalid.Should().BeTrue("libtorch keeps its own reference to the incoming gradient");
                returned.IsInvalid.Should().BeFalse("libtorch has not taken the returned gradient yet");

                var incoming2 = ones(2);
                GradientHandOff.Return(incoming2, [incoming2]);
                returned.IsInvalid.Should().BeTrue("by the next backward libtorch has copied the previous one's gradients");
                incoming2.IsInvalid.Should().BeFalse("a gradient returned as it came in stays for libtorch to take");

                GradientHandOff.Return(ones(1), []);
                incoming2.IsInvalid.Should().BeTrue();
            }
            catch (Exception e)
            {
                failure = e;
            }
        });
        thread.Start();
        thread.Join();
        failure.Should().BeNull();
    }
}
