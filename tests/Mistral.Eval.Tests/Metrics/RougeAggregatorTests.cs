using Mistral.Eval.Metrics;

namespace Mistral.Eval.Tests.Metrics;

public class RougeAggregatorTests
{
    private static IReadOnlyDictionary<string, RougeScore> Example(double f) =>
        new Dictionary<string, RougeScore> { ["rouge1"] = new(f, f, f), ["rougeL"] = new(f / 2, f / 2, f / 2) };

    [Fact]
    public void Reports_the_exact_mean_and_a_seeded_interval_around_it()
    {
        var scores = Enumerable.Range(0, 100).Select(i => Example(i / 100.0)).ToArray();
        var aggregate = new RougeAggregator(new BootstrapOptions { Seed = 3 }).Aggregate(scores);
        RougeAggregate rouge1 = aggregate["rouge1"];
        rouge1.Mean.FMeasure.Should().BeApproximately(0.495, 1e-12);
        aggregate["rougeL"].Mean.Recall.Should().BeApproximately(0.2475, 1e-12);
        // Standard error of the mean of 0..0.99 is 0.2887/√100 ≈ 0.0289; the 95 % interval ≈ ±0.057.
        rouge1.Low.FMeasure.Should().BeInRange(0.495 - 0.075, 0.495 - 0.040);
        rouge1.High.FMeasure.Should().BeInRange(0.495 + 0.040, 0.495 + 0.075);
        rouge1.Mid.FMeasure.Should().BeApproximately(0.495, 0.01);
        rouge1.Low.FMeasure.Should().BeLessThan(rouge1.Mid.FMeasure);

        var again = new RougeAggregator(new BootstrapOptions { Seed = 3 }).Aggregate(scores);
        again["rouge1"].Should().Be(rouge1);
        new RougeAggregator(new BootstrapOptions { Seed = 4 }).Aggregate(scores)["rouge1"].Low
            .Should().NotBe(rouge1.Low);
    }

    [Fact]
    public void Identical_scores_give_a_degenerate_interval()
    {
        var aggregate = new RougeAggregator().Aggregate(Enumerable.Repeat(Example(0.25), 7).ToArray());
        aggregate["rouge1"].Should().Be(new RougeAggregate(
            new(0.25, 0.25, 0.25), new(0.25, 0.25, 0.25), new(0.25, 0.25, 0.25), new(0.25, 0.25, 0.25)));
        aggregate["rouge1"].ToPercent().Mean.FMeasure.Should().Be(25);
    }

    [Theory]
    [InlineData(new[] { 1.0, 2.0, 3.0, 4.0 }, 50, 2.5)]
    [InlineData(new[] { 1.0, 2.0, 3.0, 4.0 }, 2.5, 1.075)]
    [InlineData(new[] { 1.0, 2.0, 3.0, 4.0 }, 97.5, 3.925)]
    [InlineData(new[] { 0.0, 10.0 }, 100, 10.0)]
    [InlineData(new[] { 5.0 }, 2.5, 5.0)]
    public void Percentile_interpolates_linearly_like_numpy(double[] sorted, double q, double expected) =>
        RougeAggregator.Percentile(sorted, q).Should().BeApproximately(expected, 1e-12);

    [Fact]
    public void Bad_input_is_rejected_naming_the_argument_or_option()
    {
        FluentActions.Invoking(() => new RougeAggregator().Aggregate([]))
            .Should().Throw<ArgumentException>().WithParameterName("scores");
        FluentActions.Invoking(() => new RougeAggregator().Aggregate([Example(1), new Dictionary<string, RougeScore> { ["rouge2"] = default }]))
            .Should().Throw<ArgumentException>().WithMessage("scores[1] has ROUGE types [rouge2]*");
        FluentActions.Invoking(() => new RougeAggregator(new BootstrapOptions { Samples = 0 }))
            .Should().Throw<ArgumentOutOfRangeException>().WithMessage("*BootstrapOptions.Samples*");
        FluentActions.Invoking(() => new RougeAggregator(new BootstrapOptions { ConfidenceLevel = 1 }))
            .Should().Throw<ArgumentOutOfRangeException>().WithMessage("*BootstrapOptions.ConfidenceLevel*");
    }
}
