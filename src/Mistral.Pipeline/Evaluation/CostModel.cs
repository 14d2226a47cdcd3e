namespace Mistral.Pipeline;

/// <summary>What compute costs, for the four pillars' cost figures (none by default: a report without a price shows no cost).</summary>
/// <param name="PricePerHour">The price of one hour of the machine (e.g. 1.212 for an AWS g5.2xlarge on demand, USD); positive.</param>
/// <param name="Currency">The currency's code or symbol, printed beside costs.</param>
public sealed record CostModel(decimal PricePerHour, string Currency = "USD")
{
    /// <summary>The cost of <paramref name="duration"/> of machine time.</summary>
    /// <param name="duration">The wall time.</param>
    /// <returns>The cost.</returns>
    public decimal CostOf(TimeSpan duration) => PricePerHour * (decimal)duration.TotalHours;

    /// <summary>Checks the price and currency; throws naming the field.</summary>
    /// <returns>This instance.</returns>
    /// <exception cref="ArgumentException">The price is not positive or the currency is empty.</exception>
    public CostModel Validate()
    {
        if (PricePerHour <= 0)
        {
            throw new ArgumentException($"CostModel.PricePerHour must be positive; got {PricePerHour}.", nameof(PricePerHour));
        }

        if (string.IsNullOrWhiteSpace(Currency))
        {
            throw new ArgumentException("CostModel.Currency must not be empty.", nameof(Currency));
        }

        return this;
    }
}
