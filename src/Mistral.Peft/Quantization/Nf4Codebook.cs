namespace Mistral.Peft.Quantization;

/// <summary>
/// The fixed tables of bitsandbytes' NF4 data type: the 16 code values (index = 4-bit code) and the 15 decision
/// thresholds of its CUDA quantizer (<c>dQuantizeNF4</c>): float literals rounded directly to float32, which
/// differ by one ulp from the float32 midpoints of adjacent codes at thresholds 0, 8, 12 and 14.
/// </summary>
public static class Nf4Codebook
{
    private static readonly float[] CodeValues =
    [
        -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,
        -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,
        0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
        0.7229568362236023f, 1.0f,
    ];

    private static readonly float[] ThresholdValues =
    [
        -0.8480964004993439f, -0.6106329262256622f, -0.4599952697753906f, -0.33967943489551544f,
        -0.23460740596055984f, -0.13791173323988914f, -0.045525018125772476f, 0.03979014977812767f,
        0.1202552504837513f, 0.2035212516784668f, 0.2920137718319893f, 0.3893125355243683f,
        0.5016634166240692f, 0.6427869200706482f, 0.8614784181118011f,
    ];

    /// <summary>The 16 NF4 code values in code order (ascending; code 7 is exactly 0).</summary>
    public static IReadOnlyList<float> Values => CodeValues;

    /// <summary>
    /// The 15 ascending decision thresholds: a normalized value <c>x</c> gets the code equal to the number of
    /// thresholds <c>t</c> with <c>x &gt; t</c> (a value equal to a threshold goes to the lower code; NaN gets code 0).
    /// </summary>
    public static IReadOnlyList<float> Thresholds => ThresholdValues;

    internal static float[] ValuesArray() => (float[])CodeValues.Clone();

    internal static float[] ThresholdsArray() => (float[])ThresholdValues.Clone();
}
