using Mistral.Eval.Parsing;

namespace Mistral.Eval.Tests.Parsing;

public class LabelParserTests
{
    private static readonly string[] Labels = ["sci.space", "comp.sys.mac.hardware", "comp.sys.ibm.pc.hardware", "rec.autos", "talk.politics.misc"];
    private readonly LabelParser _parser = new(Labels);

    [Fact]
    public void Exact_is_the_study_rule_for_the_fine_tuned_model()
    {
        _parser.Parse("sci.space", LabelParseMode.Exact).Label.Should().Be("sci.space");
        var r = _parser.Parse("sci.space\n", LabelParseMode.Exact);
        r.IsParsed.Should().BeFalse();
        r.Prediction.Should().Be("sci.space\n", "the study scored the raw continuation");
    }

    [Fact]
    public void Study_baseline_removes_newlines_then_strips()
    {
        _parser.Parse(" \nsci.\nspace \t", LabelParseMode.StudyBaseline).Label.Should().Be("sci.space");
        var r = _parser.Parse("Sci.space", LabelParseMode.StudyBaseline);
        r.IsParsed.Should().BeFalse();
        r.Prediction.Should().Be("Sci.space");
    }

    [Fact]
    public void Study_clean_strips_exactly_pythons_whitespace_set()
    {
        // Python 3.11: [c for c in range(0x110000) if chr(c).isspace()]
        int[] python = [0x9, 0xa, 0xb, 0xc, 0xd, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003,
            0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000];
        var stripped = Enumerable.Range(0, 0x10000).Where(c => c is < 0xD800 or > 0xDFFF && c != 'x')
            .Where(c => LabelParser.StudyClean((char)c + "x" + (char)c) == "x").ToArray();
        stripped.Should().Equal(python);
    }

    [Theory]
    [InlineData("Sci.Space", "sci.space", LabelMatchKind.Normalized)]
    [InlineData("  sci space!\n### Sentence: more", "sci.space", LabelMatchKind.Normalized)]
    [InlineData("\n\ncomp.sys.mac.hardware.", "comp.sys.mac.hardware", LabelMatchKind.Normalized)]
    [InlineData("rec.autos because of cars", "rec.autos", LabelMatchKind.NormalizedPrefix)]
    [InlineData("rec.autosport", null, LabelMatchKind.None)]
    [InlineData("---", null, LabelMatchKind.None)]
    public void Normalized_matches_case_whitespace_punctuation_first_line_and_prefix(string generated, string? label, LabelMatchKind kind)
    {
        var r = _parser.Parse(generated, LabelParseMode.Normalized);
        r.Label.Should().Be(label);
        r.Match.Should().Be(kind);
    }

    [Fact]
    public void Closest_takes_the_smallest_edit_distance_within_the_threshold()
    {
        var r = _parser.Parse("comp.sys.mac.hardwre", LabelParseMode.Closest);
        r.Label.Should().Be("comp.sys.mac.hardware");
        r.Match.Should().Be(LabelMatchKind.Closest);
        r.EditDistance.Should().Be(1);
        _parser.Parse("rec.autosport", LabelParseMode.Closest).Should().Match<LabelParseResult>(x => x.Label == "rec.autos" && x.EditDistance == 4);
        _parser.Parse("the weather is nice", LabelParseMode.Closest).IsParsed.Should().BeFalse();
        new LabelParser(Labels, new LabelParserOptions { MaxClosestDistance = 1 }).Parse("the weather is nice", LabelParseMode.Closest).IsParsed.Should().BeTrue();
    }

    [Fact]
    public void Edit_distance_is_levenshtein()
    {
        LabelParser.EditDistance("kitten", "sitting").Should().Be(3);
        LabelParser.EditDistance("", "abc").Should().Be(3);
        LabelParser.EditDistance("flaw", "lawn").Should().Be(2);
    }

    [Fact]
    public void Summary_counts_unparseable_outputs_per_mode()
    {
        string[] outputs = ["sci.space", "Sci.Space", "rec.autos\n", "comp.sys.mac.hardwre", "blah"];
        _parser.ParseAll(outputs, LabelParseMode.Exact).Unparseable.Should().Be(4);
        _parser.ParseAll(outputs, LabelParseMode.StudyBaseline).Unparseable.Should().Be(3);
        _parser.ParseAll(outputs, LabelParseMode.Normalized).Unparseable.Should().Be(2);
        var closest = _parser.ParseAll(outputs, LabelParseMode.Closest);
        closest.Unparseable.Should().Be(1);
        closest.Predictions.Should().Equal("sci.space", "sci.space", "rec.autos", "comp.sys.mac.hardware", "blah");
        closest.Describe().Should().Be("Closest: 4 of 5 parsed (Exact 2, Normalized 1, Closest 1), 1 unparseable");
    }

    [Fact]
    public void Labels_that_normalize_alike_are_rejected_naming_both()
    {
        var act = () => new LabelParser(["sci.space", "Sci Space"]);
        act.Should().Throw<ArgumentException>().WithMessage("Labels 'sci.space' and 'Sci Space' both normalize to 'sci space'.*");
    }
}
