using Mistral.Core.Tokenization;
using Mistral.Peft.Training;

namespace Mistral.Peft.Tests.Training;

public class SftCompletionBuilderTests
{
    private static readonly TokenizedCompletion[] Pairs =
    [
        new([5, 6, 7], [8, 9]),  // 1 5 6 7 | 8 9 2       length 7, prompt 4, 3 targets
        new([10], [11]),         // 1 10 | 11 2           length 4, prompt 2, 2 targets
    ];

    [Fact]
    public void FramesBosPromptTargetEosAndLabelsOnlyTheTarget()
    {
        var d = new SftCompletionBuilder().Build(Pairs);
        d.Count.Should().Be(2);
        d.Sequences[0].InputIds.Should().Equal(1, 5, 6, 7, 8, 9, 2);
        d.Sequences[0].PromptLength.Should().Be(4);
        d.Sequences[0].Labels().Should().Equal(-100, -100, -100, -100, 8, 9, 2);
        d.Sequences[0].TargetTokens.Should().Be(3);
        d.Sequences[1].InputIds.Should().Equal(1, 10, 11, 2);
        d.Sequences[1].Labels().Should().Equal(-100, -100, 11, 2);
        d.Sequences.Select(s => (s.SourceIndex, s.Truncated)).Should().Equal((0, false), (1, false));
        (d.TokenCount, d.TargetTokenCount, d.LongestLength, d.PadId).Should().Be((11L, 5L, 7, 2));
        d.Describe().Should().Be("2 examples from 2 prompt/target pairs (11 tokens, 5 in the loss, longest 7); max length 512: 0 truncated (0 tokens cut), 0 dropped");
    }

    [Fact]
    public void AMicroBatchIsRightPaddedWithMaskZeroAndLabelMinus100OnThePadding()
    {
        var d = new SftCompletionBuilder(new SftCompletionOptions { PadId = 0 }).Build(Pairs);
        var b = d.CreateBatch([1, 0]);
        (b.Rows, b.Columns, b.Tokens, b.TargetTokens).Should().Be((2, 7, 11L, 5L));
        b.InputIds.Should().Equal(1, 10, 11, 2, 0, 0, 0, /**/ 1, 5, 6, 7, 8, 9, 2);
        b.AttentionMask.Should().Equal(1, 1, 1, 1, 0, 0, 0, /**/ 1, 1, 1, 1, 1, 1, 1);
        b.Labels.Should().Equal(-100, -100, 11, 2, -100, -100, -100, /**/ -100, -100, -100, -100, 8, 9, 2);

        var single = d.CreateBatch([0]);
        (single.Columns, single.TargetTokens).Should().Be((7, 3L));
        single.AttentionMask.Should().OnlyContain(m => m == 1);
    }

    [Fact]
    public void TruncationKeepsTheStartCountsTheCutAndDropsExamplesWithNoTargetLeft()
    {
        TokenizedCompletion[] pairs =
        [
            new([5, 6, 7], [8, 9]),          // length 7 → 6: 1 5 6 7 8 9 (EOS cut), 2 targets
            new([3, 3, 3, 3, 3, 3], [4]),    // prompt fills 7 > 6 tokens: no target left → dropped
            new([10], [11]),                 // length 4: kept whole
            new([3, 3, 3, 3], [4, 4, 4]),    // length 9 → 6: prompt 5 + 1 target
            new([3, 3, 3, 3, 3], [4]),       // length 8 → 6: the prompt (6 with BOS) fills it → dropped
        ];
        var d = new SftCompletionBuilder(new SftCompletionOptions { MaxLength = 6 }).Build(pairs);
        d.Sequences.Select(s => s.SourceIndex).Should().Equal(0, 2, 3);
        d.Sequences[0].InputIds.Should().Equal(1, 5, 6, 7, 8, 9);
        d.Sequences[0].Labels().Should().Equal(-100, -100, -100, -100, 8, 9);
        d.Sequences[2].InputIds.Should().Equal(1, 3, 3, 3, 3, 4);
        d.Sequences.Select(s => s.TargetTokens).Should().Equal(2, 2, 1);
        d.Sequences.Select(s => s.Truncated).Should().Equal(true, false, true);
        d.DroppedSourceIndices.Should().Equal(1, 4);
        (d.TruncatedCount, d.TruncatedTokens, d.SourceCount).Should().Be((2, 4L, 5));
        d.Describe().Should().Be("3 examples from 5 prompt/target pairs (16 tokens, 5 in the loss, longest 6); max length 6: 2 truncated (4 tokens cut), 2 dropped (no target token left: pairs 1, 4)");
    }

    [Fact]
    public void WithoutBosOrEosTheFramingFollowsTheOptions()
    {
        var d = new SftCompletionBuilder(new SftCompletionOptions { PrependBos = false, AppendEos = false, BosId = -1 }).Build(Pairs);
        d.Sequences[0].InputIds.Should().Equal(5, 6, 7, 8, 9);
        d.Sequences[0].PromptLength.Should().Be(3);
        d.Sequences[0].TargetTokens.Should().Be(2);

        // An empty prompt without BOS: the first target token has nothing before it and is not a target.
        var e = new SftCompletionBuilder(new SftCompletionOptions { PrependBos = false, EosId = 90 }).Build([new([], [4, 5])]);
        e.Sequences[0].InputIds.Should().Equal(4, 5, 90);
        e.Sequences[0].TargetTokens.Should().Be(2);
        e.CreateBatch([0]).TargetTokens.Should().Be(2);
    }

    [Fact]
    public void TextPairsAreTokenizedJointlyAndSplitAtTheLongestCommonPrefix()
    {
        // Mistral-7B-v0.1's tokenizer: "### Class:" → ▁### ▁Class : ; with "greeting" after it: … : gre eting (no merge).
        // "### Class: " ends in "▁" alone, but jointly the space joins the next word (▁gre): a token spans the boundary.
        // "hello wor" + "ld": ▁hell o ▁wor vs ▁hell o ▁world — the split falls inside a word.
        var tokenizer = MistralTokenizer.FromFile(TestPaths.FixturePath("tokenizer", "mistral-7b-v0.1.model"));
        CompletionExample[] pairs = [new("### Class:", "greeting"), new("### Class: ", "greeting"), new("hello wor", "ld")];
        var d = new SftCompletionBuilder(new SftCompletionOptions { BosId = 70, EosId = 71 }).Build(pairs, tokenizer);
        d.Sequences[0].InputIds.Should().Equal(1, 774, 4950, 28747, 13052, 7323, 2);
        d.Sequences[0].PromptLength.Should().Be(4);
        d.Sequences[1].InputIds.Should().Equal(1, 774, 4950, 28747, 3656, 7323, 2);
        d.Sequences[1].PromptLength.Should().Be(4, "▁gre (the prompt's trailing space and the target's first letters) is a target token");
        d.Sequences[2].InputIds.Should().Equal(1, 6312, 28709, 1526, 2);
        d.Sequences[2].Labels().Should().Equal(-100, -100, -100, 1526, 2);
        d.BoundaryMergeCount.Should().Be(2);
        d.PadId.Should().Be(2, "padding defaults to the tokenizer's EOS");
        d.Describe().Should().EndWith("; 2 with a token spanning the prompt/target boundary (labelled as target)");

        // The joint ids are exactly the tokenizer's ids for the whole text, framed with its BOS and EOS.
        foreach (var (s, p) in d.Sequences.Zip(pairs))
        {
            s.InputIds.Should().Equal(tokenizer.Encode(p.Prompt + p.Target, addBeginningOfSentence: true, addEndOfSentence: true));
        }
    }

    [Fact]
    public void BadInputIsRejectedNamingTheOptionOrThePair()
    {
        FluentActions.Invoking(() => new SftCompletionBuilder(new SftCompletionOptions { MaxLength = 1 }))
            .Should().Throw<ArgumentException>().WithMessage("SftCompletionOptions.MaxLength must be at least 2*got 1.*").Which.ParamName.Should().Be("MaxLength");
        FluentActions.Invoking(() => new SftCompletionBuilder(new SftCompletionOptions { BosId = -1 }))
            .Should().Throw<ArgumentException>().Which.ParamName.Should().Be("BosId");
        FluentActions.Invoking(() => new SftCompletionBuilder(new SftCompletionOptions { EosId = -2 }))
            .Should().Throw<ArgumentException>().Which.ParamName.Should().Be("EosId");
        FluentActions.Invoking(() => new SftCompletionBuilder(new SftCompletionOptions { PadId = -1 }))
            .Should().Throw<ArgumentException>().WithMessage("*PadId*got -1.*").Which.ParamName.Should().Be("PadId");
        FluentActions.Invoking(() => new SftCompletionBuilder(new SftCompletionOptions { AppendEos = false, EosId = -1 }))
            .Should().Throw<ArgumentException>("the padding falls back to the EOS id").Which.ParamName.Should().Be("PadId");
        new SftCompletionBuilder(new SftCompletionOptions { AppendEos = false, EosId = -1, PadId = 0 }).Options.EffectivePadId.Should().Be(0);

        var builder = new SftCompletionBuilder();
        FluentActions.Invoking(() => builder.Build([Pairs[0], null!]))
            .Should().Throw<ArgumentException>().WithMessage("examples[1] is null.*");
        FluentActions.Invoking(() => builder.Build([Pairs[0], new([3], [4, -7])]))
            .Should().Throw<ArgumentException>().WithMessage("examples[1].TargetIds[1] is a negative token id (-7).*");
        FluentActions.Invoking(() => builder.Build([new(null!, [4])]))
            .Should().Throw<ArgumentException>().WithMessage("examples[0].PromptIds is null.*");
        FluentActions.Invoking(() => new SftCompletionBuilder(new SftCompletionOptions { AppendEos = false }).Build([Pairs[0], new([3], [])]))
            .Should().Throw<ArgumentException>().WithMessage("examples[1] has no target token to learn*");
        var tokenizer = MistralTokenizer.FromFile(TestPaths.FixturePath("tokenizer", "tiny-bpe.model"));
        FluentActions.Invoking(() => builder.Build([new CompletionExample("a", null!)], tokenizer))
            .Should().Throw<ArgumentException>().WithMessage("examples[0].Target is null.*");

        using var cts = new CancellationTokenSource();
        cts.Cancel();
        FluentActions.Invoking(() => builder.Build(Pairs, cts.Token)).Should().Throw<OperationCanceledException>();
    }

    [Fact]
    public void OptionDefaultsAreMistralsIdsWithPaddingAsEos()
    {
        var o = new SftCompletionOptions();
        (o.MaxLength, o.PrependBos, o.BosId, o.AppendEos, o.EosId, o.PadId, o.EffectivePadId).Should().Be((512, true, 1, true, 2, (int?)null, 2));
        (o with { PadId = 0 }).EffectivePadId.Should().Be(0);
        o.Validate().Should().BeSameAs(o);
    }
}
