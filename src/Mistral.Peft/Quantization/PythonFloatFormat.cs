using System.Globalization;
using System.Text;

namespace Mistral.Peft.Quantization;

/// <summary>Formats a double exactly as Python's <c>repr(float)</c> / <c>json.dumps</c> does.</summary>
internal static class PythonFloatFormat
{
    /// <summary>Shortest round-trip digits; fixed notation when the decimal exponent is in [-4, 16), else <c>d.ddde±XX</c>.</summary>
    public static string Format(double value)
    {
        if (double.IsNaN(value))
        {
            return "NaN";
        }

        if (double.IsInfinity(value))
        {
            return value > 0 ? "Infinity" : "-Infinity";
        }

        string shortest = value.ToString("R", CultureInfo.InvariantCulture);
        bool negative = shortest.StartsWith('-') || (value == 0 && double.IsNegative(value));
        string body = shortest.TrimStart('-');
        int exp10 = 0;
        int ePos = body.IndexOfAny(['E', 'e']);
        if (ePos >= 0)
        {
            exp10 = int.Parse(body[(ePos + 1)..], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
            body = body[..ePos];
        }

        int dot = body.IndexOf('.');
        string intPart = dot >= 0 ? body[..dot] : body;
        string fracPart = dot >= 0 ? body[(dot + 1)..] : string.Empty;
        string digits = (intPart + fracPart).TrimStart('0');
        int leadingZeros = (intPart + fracPart).Length - digits.Length;
        // position of the decimal point relative to the first significant digit
        int pointPos = intPart.Length - leadingZeros + exp10;
        digits = digits.TrimEnd('0');
        var sb = new StringBuilder();
        if (negative)
        {
            sb.Append('-');
        }

        if (digits.Length == 0)
        {
            sb.Append("0.0");
            return sb.ToString();
        }

        int decimalExponent = pointPos - 1; // scientific exponent
        if (decimalExponent >= -4 && decimalExponent < 16)
        {
            if (pointPos <= 0)
            {
                sb.Append("0.").Append('0', -pointPos).Append(digits);
            }
            else if (pointPos >= digits.Length)
            {
                sb.Append(digits).Append('0', pointPos - digits.Length).Append(".0");
            }
            else
            {
                sb.Append(digits, 0, pointPos).Append('.').Append(digits, pointPos, digits.Length - pointPos);
            }
        }
        else
        {
            sb.Append(digits[0]);
            if (digits.Length > 1)
            {
                sb.Append('.').Append(digits, 1, digits.Length - 1);
            }

            sb.Append('e').Append(decimalExponent < 0 ? '-' : '+');
            sb.Append(Math.Abs(decimalExponent).ToString("00", CultureInfo.InvariantCulture));
        }

        return sb.ToString();
    }
}
