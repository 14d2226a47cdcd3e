using System.Globalization;
using System.Numerics;

namespace Mistral.Eval.Metrics;

/// <summary>Python's <c>format(x, ".{d}f")</c>: the exact binary value rounded half to even.</summary>
internal static class PythonFloatFormat
{
    /// <summary>Formats <paramref name="value"/> with <paramref name="digits"/> decimals as Python does.</summary>
    public static string Fixed(double value, int digits)
    {
        if (double.IsNaN(value))
        {
            return "nan";
        }

        if (double.IsInfinity(value))
        {
            return value > 0 ? "inf" : "-inf";
        }

        bool negative = double.IsNegative(value);
        long bits = BitConverter.DoubleToInt64Bits(Math.Abs(value));
        int exponentBits = (int)((bits >> 52) & 0x7FF);
        long fraction = bits & 0xFFFFFFFFFFFFFL;
        BigInteger mantissa = exponentBits == 0 ? fraction : fraction | (1L << 52);
        int exponent = (exponentBits == 0 ? 1 : exponentBits) - 1075;

        // |value| * 10^digits = mantissa * 10^digits * 2^exponent, rounded half to even.
        BigInteger scaled = mantissa * BigInteger.Pow(10, digits);
        BigInteger rounded;
        if (exponent >= 0)
        {
            rounded = scaled << exponent;
        }
        else
        {
            BigInteger denominator = BigInteger.One << -exponent;
            rounded = BigInteger.DivRem(scaled, denominator, out BigInteger remainder);
            int comparison = (remainder * 2).CompareTo(denominator);
            if (comparison > 0 || (comparison == 0 && !rounded.IsEven))
            {
                rounded += 1;
            }
        }

        string integerDigits = rounded.ToString(CultureInfo.InvariantCulture).PadLeft(digits + 1, '0');
        string result = digits == 0
            ? integerDigits
            : integerDigits[..^digits] + "." + integerDigits[^digits..];
        return negative ? "-" + result : result;
    }
}
