namespace Mistral.Eval.Benchmarks;

/// <summary>
/// Deterministic dialogue-summary-like pairs, generated exactly as
/// tools/eval_metrics/rouge_reference.py's bench_pairs does (SplitMix64, same word lists), so that
/// both sides score identical text.
/// </summary>
internal static class SyntheticSummaries
{
    private static readonly string[] Names = ["Amanda", "Tom", "Betty", "Jerry", "Hannah", "Greg", "Olivia", "Leon", "Sam", "Mia"];

    private static readonly string[] Words =
        ("will be there tomorrow at the office meeting party dinner call later today "
         + "sorry late running going bringing cookies pizza movie tonight weekend "
         + "thanks great okay sure maybe need help with project presentation report "
         + "flight train station picked up dog cat vet birthday present buying "
         + "shopping cinema tickets booked cancelled rescheduled wondering whether "
         + "happened yesterday morning evening nice good bad tired working home")
        .Split(' ');

    public static (string Target, string Prediction)[] Pairs(int count, ulong seed = 12345)
    {
        var rng = new SplitMix64(seed);
        var pairs = new (string, string)[count];
        for (int i = 0; i < count; i++)
        {
            string target = Summary(rng);
            string prediction = Summary(rng);
            pairs[i] = (target, prediction);
        }

        return pairs;
    }

    private static string Summary(SplitMix64 rng)
    {
        int sentences = 1 + (int)rng.Below(3);
        var lines = new string[sentences];
        for (int s = 0; s < sentences; s++)
        {
            var words = new List<string> { Names[rng.Below((ulong)Names.Length)] };
            int extra = 4 + (int)rng.Below(10);
            for (int w = 0; w < extra; w++)
            {
                words.Add(Words[rng.Below((ulong)Words.Length)]);
            }

            lines[s] = string.Join(' ', words) + ".";
        }

        return string.Join('\n', lines);
    }

    private sealed class SplitMix64(ulong state)
    {
        private ulong _state = state;

        public ulong Next()
        {
            _state += 0x9E3779B97F4A7C15UL;
            ulong z = _state;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return z ^ (z >> 31);
        }

        public ulong Below(ulong n) => Next() % n;
    }
}
