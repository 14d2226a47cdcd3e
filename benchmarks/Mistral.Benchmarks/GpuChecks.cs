using Mistral.Core.Configuration;
using Mistral.Core.Generation;
using Mistral.Core.Modeling;
using Mistral.Peft.Lora;
using Mistral.Peft.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Benchmarks;

/// <summary>
/// The GPU test lane: correctness checks that need CUDA, run with one command on the GPU machine
/// (<c>Mistral.Benchmarks gpucheck --device cuda</c>; exit code 1 when any fails, 0 with a note when there is no GPU).
/// HF parity fixtures and NF4 bit-identity (the existing checks), fused kernels against the libtorch ops they replace
/// (RMSNorm, attention with fused RoPE and unrepeated GQA, SiLU product, 4-bit GEMV, the fused AdamW step, whole-model
/// greedy decoding in bf16 and NF4), bf16 padded attention (a left-padded batch against each row alone) and gradient
/// checkpointing (loss and LoRA gradients with and without it).
/// </summary>
internal static class GpuChecks
{
    private static readonly List<(string Name, bool Ok, string Detail)> Results = [];

    public static int Run(Args opts, Device device)
    {
        if (device.type != DeviceType.CUDA || !cuda.is_available())
        {
            Console.WriteLine("gpucheck: no CUDA device; skipped.");
            return 0;
        }

        Console.WriteLine($"fused kernels: {MistralForCausalLM.FusedKernelStatus} (before first use)");
        Record("hf parity fixtures (fp32 + bf16)", ParityCheck.Run(opts.Get("fixtures", "tests/fixtures/hf"), device) == 0, "see table above");
        Record("nf4 fixtures bit for bit", Nf4FixtureCheck.Run(opts.Get("nf4", "tests/fixtures/nf4"), device) == 0, "see table above");
        manual_seed(20261207);
        // One failing check (an exception) is recorded and the lane goes on.
        (string Name, Action Check)[] checks =
        [
            ("RMSNorm", () => RmsNormCheck(device)),
            ("model with cache, step of 1", () => AttentionCheck(device, 1)),
            ("model with cache, step of 7", () => AttentionCheck(device, 7)),
            ("decode attention kernel", () => DecodeAttentionKernelCheck(device)),
            ("MLP", () => MlpCheck(device)),
            ("4-bit GEMV", () => GemvCheck(device)),
            ("decode projections", () => DecodeProjectionCheck(device)),
            ("LoRA combine (bf16)", () => LoraCombineCheck(device, quantized: false)),
            ("LoRA combine (nf4)", () => LoraCombineCheck(device, quantized: true)),
            ("LoRA dropout", () => LoraDropoutCheck(device)),
            ("training RoPE (q)", () => RotaryTrainingCheck(device, 32)),
            ("training RoPE (k)", () => RotaryTrainingCheck(device, 8)),
            ("LoRA input projection (p 0.1)", () => LoraInputProjectionCheck(device, 0.1)),
            ("LoRA input projection (p 0)", () => LoraInputProjectionCheck(device, 0)),
            ("LoRA fused product (p 0.1, 4096)", () => LoraFusedProductCheck(device, 0.1, [4, 512, 4096], 16)),
            ("LoRA fused product (p 0.1, 14336)", () => LoraFusedProductCheck(device, 0.1, [4, 512, 14336], 16)),
            ("LoRA fused product (p 0, r 64)", () => LoraFusedProductCheck(device, 0, [2, 100, 4096], 64)),
            ("LoRA fused product (p 0.1, odd)", () => LoraFusedProductCheck(device, 0.1, [3, 37, 1032], 5)),
            ("LoRA fused output (4096)", () => LoraOutputCombineCheck(device, [4, 512], 4096, 16, roundUpdate: false)),
            ("LoRA fused output (14336, nf4 rounding)", () => LoraOutputCombineCheck(device, [4, 512], 14336, 16, roundUpdate: true)),
            ("LoRA fused output (1024, r 64, odd rows)", () => LoraOutputCombineCheck(device, [3, 37], 1024, 64, roundUpdate: false)),
            ("greedy decoding (bf16)", () => DecodeCheck(device, quantized: false)),
            ("greedy decoding (bf16, batch 1)", () => DecodeCheck(device, quantized: false, rows: 1)),
            ("greedy decoding (nf4)", () => DecodeCheck(device, quantized: true)),
            ("padded batch", () => PaddedBatchCheck(device)),
            ("embedding table in host memory", () => HostEmbeddingCheck(device)),
            ("model built on CUDA moved to the CPU", () => MoveToCpuCheck(device)),
            ("gradient checkpointing", () => CheckpointingCheck(device)),
            ("gradient checkpointing with dropout", () => CheckpointedDropoutCheck(device)),
            ("fused training step", () => FusedTrainingCheck(device)),
            ("loss-only forward", () => LossOnlyCheck(device)),
            ("foreach AdamW", () => ForeachOptimizerCheck(device)),
            ("fused AdamW kernel", () => FusedAdamWCheck(device)),
            ("fused gradient norm", () => FusedGradNormCheck(device)),
        ];
        foreach (var (name, check) in checks)
        {
            try
            {
                check();
            }
            catch (Exception e)
            {
                Record(name, false, $"threw {e.GetType().Name}: {e.Message}");
            }
        }

        Console.WriteLine($"fused kernels: {MistralForCausalLM.FusedKernelStatus}");
        Console.WriteLine("== gpucheck ==");
        foreach (var (name, ok, detail) in Results)
        {
            Console.WriteLine($"{(ok ? "PASS" : "FAIL")}  {name}: {detail}");
        }

        return Results.All(r => r.Ok) ? 0 : 1;
    }

    private static void Record(string name, bool ok, string detail) => Results.Add((name, ok, detail));

    private static double RelativeError(Tensor actual, Tensor expected)
    {
        using var scope = NewDisposeScope();
        Tensor a = actual.to(ScalarType.Float64);
        Tensor e = expected.to(ScalarType.Float64);
        if (!a.isfinite().all().item<bool>())
        {
            return double.NaN;
        }

        return (a - e).norm().item<double>() / Math.Max(e.norm().item<double>(), 1e-30);
    }

    // Elements differing by more than one bf16 ulp of the expected value.
    private static long BeyondOneUlp(Tensor actual, Tensor expected)
    {
        using var scope = NewDisposeScope();
        Tensor a = actual.to(ScalarType.Float32);
        Tensor e = expected.to(ScalarType.Float32);
        Tensor ulp = e.abs().clamp_min(1e-30f) * (1.0f / 128);
        return (a - e).abs().gt(ulp * 1.0001f).sum().item<long>();
    }

    // The largest |actual − expected| over the RMS of expected.
    private static double WorstOverRms(Tensor actual, Tensor expected)
    {
        using var scope = NewDisposeScope();
        Tensor a = actual.to(ScalarType.Float64);
        Tensor e = expected.to(ScalarType.Float64);
        return (a - e).abs().max().item<double>() / Math.Max(e.square().mean().sqrt().item<double>(), 1e-30);
    }

    private static MistralConfig SmallConfig() => new()
    {
        VocabSize = 1024, HiddenSize = 512, IntermediateSize = 1536, NumHiddenLayers = 3, NumAttentionHeads = 8,
        NumKeyValueHeads = 2, HeadDim = 64, SlidingWindow = 48, MaxPositionEmbeddings = 4096,
    };

    private static void RmsNormGradCheck(Device device)
    {
        using var scope = NewDisposeScope();
        var norm = new RmsNorm(4096, 1e-5, ScalarType.BFloat16, device);
        using (no_grad())
        {
            norm.Weight.copy_(rand(4096, device: device) + 0.5);
        }

        norm.Weight.requires_grad_(false);
        Tensor x = (randn(37, 4096, device: device) * 3).to(ScalarType.BFloat16).requires_grad_(true);
        Tensor gy = randn(37, 4096, device: device).to(ScalarType.BFloat16);
        Tensor Grad(bool fused)
        {
            norm.UseFusedKernel = fused;
            x.grad = null;
            norm.forward(x).backward([gy]);
            return x.grad!.clone();
        }

        Tensor expected = Grad(false);
        Tensor actual = Grad(true);
        double rel = RelativeError(actual, expected);
        Record("rmsnorm input gradient fused vs libtorch autograd (frozen weight)", rel < 1e-2, $"relative error {rel:E2}");
    }

    private static void RmsNormCheck(Device device)
    {
        RmsNormGradCheck(device);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var norm = new RmsNorm(4096, 1e-5, ScalarType.BFloat16, device);
        norm.Weight.copy_(rand(4096, device: device) + 0.5);
        Tensor x = (randn(37, 4096, device: device) * 3).to(ScalarType.BFloat16);
        norm.UseFusedKernel = false;
        Tensor expected = norm.forward(x);
        norm.UseFusedKernel = true;
        Tensor actual = norm.forward(x);
        long off = BeyondOneUlp(actual, expected);
        long differ = actual.ne(expected).sum().item<long>();
        Record("rmsnorm fused vs libtorch (37 x 4096 bf16)", off == 0, $"{differ} of {x.numel()} elements differ, {off} by more than 1 ulp");
    }

    private static void AttentionCheck(Device device, int t)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        MistralConfig config = SmallConfig();
        var model = RandomWeights.Model(config, ScalarType.BFloat16, device);
        model.eval();
        Tensor ids = randint(3, config.VocabSize, [3, 40 + t], ScalarType.Int64, device);
        Tensor mask = ones([3, 40 + t], ScalarType.Int64, device);
        mask[1, ..5] = 0; // a left-padded row
        using var cache1 = new KvCache(config, 3, 64, ScalarType.BFloat16, device);
        using var cache2 = new KvCache(config, 3, 64, ScalarType.BFloat16, device);
        Tensor Run(bool fused, KvCache cache)
        {
            model.UseFusedKernels = fused;
            model.UseFusedAttention = fused;
            model.UseFusedDecodeAttention = fused;
            model.UseFusedDecodeProjections = fused;
            using var prompt = model.forward(new CausalLMInput(ids[.., ..40]) { AttentionMask = mask[.., ..40], Cache = cache });
            using var step = model.forward(new CausalLMInput(ids[.., 40..]) { AttentionMask = mask[.., 40..], Cache = cache });
            return cat([prompt.Logits, step.Logits], 1).MoveToOuterDisposeScope();
        }

        Tensor expected = Run(false, cache1);
        Tensor actual = Run(true, cache2);
        double rel = RelativeError(actual, expected);
        Record($"model with cache fused vs libtorch (prefill 40 + step of {t}, left padding, window 48)", rel < 5e-3, $"relative error {rel:E2}");
        model.Dispose();
    }

    // The decoding attention kernel against float32 attention computed from the same bf16 inputs: 4 rows, 32 query heads
    // over 8 key/value heads, keys read from a strided cache view, a padded row and a row with every key masked (zeros).
    private static void DecodeAttentionKernelCheck(Device device)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        const int b = 4, h = 32, kv = 8, d = 128, cap = 300, s = 257;
        Tensor q = randn(b, h, 1, d).to(ScalarType.BFloat16).to(device);
        Tensor cacheK = randn(b, kv, cap, d).to(ScalarType.BFloat16).to(device);
        Tensor cacheV = randn(b, kv, cap, d).to(ScalarType.BFloat16).to(device);
        Tensor keys = cacheK.narrow(2, 0, s);
        Tensor vals = cacheV.narrow(2, 0, s);
        Tensor mask = ones([b, 1, 1, s], ScalarType.Bool, device);
        mask[1, .., .., ..100] = false;
        mask[3] = false;
        Tensor? actual = Mistral.Core.Cuda.FusedOps.DecodeAttention(q, keys, vals, mask, h, kv, d);
        if (actual is null)
        {
            Record("decode attention kernel vs float32 attention", false, "the kernel did not apply");
            return;
        }

        Tensor kf = keys.to(ScalarType.Float32).repeat_interleave(h / kv, 1);
        Tensor vf = vals.to(ScalarType.Float32).repeat_interleave(h / kv, 1);
        Tensor scores = q.to(ScalarType.Float32).matmul(kf.transpose(2, 3)) / Math.Sqrt(d);
        scores = scores.masked_fill(mask.logical_not(), double.NegativeInfinity);
        Tensor probs = scores.softmax(-1).nan_to_num(0.0);
        Tensor expected = probs.matmul(vf).transpose(1, 2).reshape(b, 1, h * d);
        double rel = RelativeError(actual.narrow(0, 0, 3).to(ScalarType.Float32), expected.narrow(0, 0, 3));
        double maskedRow = actual[3].abs().max().to(ScalarType.Float32).item<float>();
        Record("decode attention kernel vs float32 attention (GQA 32/8, strided cache, padded row, fully masked row)", rel < 5e-3 && maskedRow == 0,
            $"relative error {rel:E2} (bf16 output rounding), fully masked row max |out| {maskedRow}");
    }

    private static void MlpCheck(Device device)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var mlp = new MistralMlp(SmallConfig(), ScalarType.BFloat16, device);
        foreach (var p in mlp.parameters())
        {
            p.normal_(0, 0.05);
        }

        Tensor x = randn(2, 9, 512, device: device).to(ScalarType.BFloat16);
        mlp.UseFusedKernels = false;
        Tensor expected = mlp.forward(x);
        mlp.UseFusedKernels = true;
        Tensor actual = mlp.forward(x);
        long differ = actual.ne(expected).sum().item<long>();
        Record("mlp silu product fused vs libtorch", BeyondOneUlp(actual, expected) == 0, $"{differ} of {expected.numel()} outputs differ");
    }

    // The decoding projection kernel against libtorch's linear at the 7B model's shapes: q/k/v side by side and the MLP's
    // gated product, 1, 3 and 8 rows; only the float32 summation order differs, so outputs stay within one bf16 step.
    private static void DecodeProjectionCheck(Device device)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        Tensor Weight(long n, long k) => (randn(n, k, device: device) * 0.02).to(ScalarType.BFloat16);
        Tensor wq = Weight(4096, 4096), wk = Weight(1024, 4096), wv = Weight(1024, 4096), wg = Weight(14336, 4096), wu = Weight(14336, 4096);
        foreach (int rows in new[] { 1, 2, 8 }) // bf16 weights take the kernel up to 2 rows; 8 checks the kernel's limit
        {
            Tensor x = randn(rows, 4096, device: device).to(ScalarType.BFloat16);
            Tensor expectedQkv = cat([nn.functional.linear(x, wq), nn.functional.linear(x, wk), nn.functional.linear(x, wv)], 1);
            Tensor? qkv = Mistral.Core.Cuda.FusedOps.DecodeProjection(x, wq, wk, wv, siluUp: false);
            // Sums of 4096 terms in another order: an output near zero (terms cancelling) may move by more than one bf16
            // step of itself, so the worst difference is measured against the outputs' scale (their RMS).
            double worstQkv = qkv is null ? double.NaN : WorstOverRms(qkv, expectedQkv);
            double relQkv = qkv is null ? double.NaN : RelativeError(qkv, expectedQkv);
            Record($"decode projection q/k/v vs linear, {rows} rows", qkv is not null && relQkv < 1e-3 && worstQkv < 2e-2,
                qkv is null ? "kernel did not apply" : $"relative error {relQkv:E2}, worst difference {worstQkv:E2} of the RMS, {BeyondOneUlp(qkv, expectedQkv)} beyond one bf16 step of themselves");
            Tensor residual = (randn(rows, 4096, device: device) * 4).to(ScalarType.BFloat16);
            Tensor expectedSum = residual + nn.functional.linear(x, wq);
            Tensor? sum = Mistral.Core.Cuda.FusedOps.DecodeProjection(x, wq, null, null, siluUp: false, residual);
            double worstSum = sum is null ? double.NaN : WorstOverRms(sum, expectedSum);
            Record($"decode projection residual + o_proj vs libtorch, {rows} rows", sum is not null && worstSum < 2e-2,
                sum is null ? "kernel did not apply" : $"relative error {RelativeError(sum, expectedSum):E2}, worst difference {worstSum:E2} of the RMS");
            Tensor expectedGated = nn.functional.silu(nn.functional.linear(x, wg)) * nn.functional.linear(x, wu);
            Tensor? gated = Mistral.Core.Cuda.FusedOps.DecodeProjection(x, wg, wu, null, siluUp: true);
            // A gate or up value one step apart moves the product by up to two steps.
            double rel = gated is null ? double.NaN : RelativeError(gated, expectedGated);
            Record($"decode projection silu(gate)·up vs libtorch, {rows} rows", gated is not null && rel < 1e-2,
                gated is null ? "kernel did not apply" : $"relative error {rel:E2}");
        }

        // The 4-bit layers: q/k/v and gate/up through one GEMV launch against each layer's dequantize-then-matmul.
        Linear4bit Quantized(Tensor w)
        {
            var dense = new Mistral.Core.Modeling.Linear(w.shape[1], w.shape[0], false, ScalarType.BFloat16, device);
            dense.Weight.copy_(w);
            var q = Linear4bit.FromLinear(dense, new Nf4Options { ComputeDtype = ScalarType.BFloat16, DoubleQuant = true });
            q.eval();
            dense.Dispose();
            return q;
        }

        Linear4bit q4 = Quantized(wq), k4 = Quantized(wk), v4 = Quantized(wv), g4 = Quantized(wg), u4 = Quantized(wu);
        foreach (int rows in new[] { 1, 8 })
        {
            Tensor x = randn(rows, 4096, device: device).to(ScalarType.BFloat16);
            Tensor Plain(Linear4bit l)
            {
                l.UseFusedKernels = false;
                Tensor y = l.forward(x);
                l.UseFusedKernels = true;
                return y;
            }

            Tensor expectedQkv = cat([Plain(q4), Plain(k4), Plain(v4)], 1);
            Tensor? qkv = ((IFusedDecodeProjection)q4).TryProjectWith(x, [k4, v4], siluUp: false);
            double relQkv = qkv is null ? double.NaN : RelativeError(qkv, expectedQkv);
            Record($"nf4 decode projection q/k/v vs dequantize+matmul, {rows} rows", qkv is not null && relQkv < 4e-3,
                qkv is null ? "kernel did not apply" : $"relative error {relQkv:E2}");
            Tensor expectedGated = nn.functional.silu(Plain(g4)) * Plain(u4);
            Tensor? gated = ((IFusedDecodeProjection)g4).TryProjectWith(x, [u4], siluUp: true);
            double relGated = gated is null ? double.NaN : RelativeError(gated, expectedGated);
            Record($"nf4 decode projection silu(gate)·up vs dequantize+matmul, {rows} rows", gated is not null && relGated < 1e-2,
                gated is null ? "kernel did not apply" : $"relative error {relGated:E2}");
            Tensor residual = (randn(rows, 4096, device: device) * 4).to(ScalarType.BFloat16);
            Tensor expectedSum = residual + Plain(q4);
            Tensor? sum = ((IFusedDecodeProjection)q4).TryProjectWith(x, [], siluUp: false, residual);
            double worstSum = sum is null ? double.NaN : WorstOverRms(sum, expectedSum);
            Record($"nf4 decode projection residual + projection vs libtorch, {rows} rows", sum is not null && worstSum < 2e-2,
                sum is null ? "kernel did not apply" : $"worst difference {worstSum:E2} of the RMS");
        }

        foreach (var l in new[] { q4, k4, v4, g4, u4 })
        {
            l.Dispose();
        }
    }

    private static void GemvCheck(Device device)
    {
        foreach (var (n, k, dq) in new[] { (4096L, 4096L, true), (14336L, 4096L, true), (4096L, 14336L, false), (1024L, 4096L, true) })
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            var dense = new Mistral.Core.Modeling.Linear(k, n, false, ScalarType.BFloat16, device);
            dense.Weight.normal_(0, 0.02);
            var q = Linear4bit.FromLinear(dense, new Nf4Options { ComputeDtype = ScalarType.BFloat16, DoubleQuant = dq });
            q.eval();
            foreach (int rows in new[] { 1, 3, 8 })
            {
                Tensor x = randn(rows, k, device: device).to(ScalarType.BFloat16);
                q.UseFusedKernels = false;
                Tensor expected = q.forward(x);
                q.UseFusedKernels = true;
                Tensor actual = q.forward(x);
                double rel = RelativeError(actual, expected);
                Record($"nf4 gemv vs dequantize+matmul [{rows} x {k}] @ [{n} x {k}]^T double-quant {dq}", rel < 4e-3, $"relative error {rel:E2}");
            }

            q.Dispose();
            dense.Dispose();
        }
    }

    private static void LoraCombineCheck(Device device, bool quantized)
    {
        using var scope = NewDisposeScope();
        var dense = new Mistral.Core.Modeling.Linear(1024, 2048, false, ScalarType.BFloat16, device);
        using (no_grad())
        {
            dense.Weight.normal_(0, 0.02);
        }

        nn.Module<Tensor, Tensor> baseLayer = quantized ? Linear4bit.FromLinear(dense, new Nf4Options { ComputeDtype = ScalarType.BFloat16 }) : dense;
        var lora = new LoraLinear(baseLayer, new LoraOptions { R = 16, Alpha = 32, Dropout = 0 });
        using (no_grad())
        {
            lora.LoraB.normal_(0, 0.05);
        }

        lora.train();
        Tensor x = randn(3, 77, 1024, device: device).to(ScalarType.BFloat16).requires_grad_(true);
        Tensor gradOut = randn(3, 77, 2048, device: device).to(ScalarType.BFloat16);
        // The combine alone: the fused first product (float32 rounding of cuBLAS's, its own checks) stays off on both sides.
        lora.UseFusedProduct = false;
        (Tensor Y, Tensor Gx, Tensor Ga, Tensor Gb) Run(bool fused)
        {
            lora.UseFusedKernels = fused;
            x.grad = null;
            lora.LoraA.grad = null;
            lora.LoraB.grad = null;
            Tensor y = lora.forward(x);
            y.backward([gradOut]);
            return (y.detach().clone(), x.grad!.clone(), lora.LoraA.grad!.clone(), lora.LoraB.grad!.clone());
        }

        var e = Run(false);
        var a = Run(true);
        long dy = a.Y.ne(e.Y).sum().item<long>();
        long dx = a.Gx.ne(e.Gx).sum().item<long>();
        long da = a.Ga.ne(e.Ga).sum().item<long>();
        long db = a.Gb.ne(e.Gb).sum().item<long>();
        Record($"lora combine fused vs libtorch ({(quantized ? "nf4" : "bf16")} base): output, input and adapter gradients", dy + dx + da + db == 0,
            $"elements differing: output {dy}, grad x {dx}, grad A {da}, grad B {db}");
    }

    // The fused cast + dropout of a LoRA input: kept values are float(x)/(1-p) exactly, about p of them dropped, the
    // gradient is bf16(gy/(1-p)) on the kept elements and 0 elsewhere, and the same CUDA generator state gives the same mask.
    private static void LoraDropoutCheck(Device device)
    {
        using var scope = NewDisposeScope();
        const double p = 0.1;
        Tensor x = randn(2048, 4096 + 3).to(ScalarType.BFloat16).to(device).requires_grad_(true); // odd width: vector and tail paths
        Tensor gy = randn(2048, 4096 + 3).to(device);
        if (!Mistral.Peft.Lora.LoraDropoutFunction.TryGetKernel(x, p, out Mistral.Core.Cuda.CudaFunction kernel))
        {
            Record("LoRA dropout fused", false, "the kernel did not apply");
            return;
        }

        cuda.manual_seed(5);
        Tensor y = Mistral.Peft.Lora.LoraDropoutFunction.Dropout(kernel, x, p);
        y.backward([gy]);
        // The kernel's mask, replayed over ones (an x that is exactly 0 — randn gives a few in 8 million — keeps y = 0 when kept).
        Tensor kept;
        cuda.manual_seed(5);
        using (no_grad())
        {
            kept = Mistral.Peft.Lora.LoraDropoutFunction.Dropout(kernel, ones_like(x), p).ne(0);
        }

        double dropped = 1.0 - kept.to(ScalarType.Float32).mean().item<float>();
        float scale = (float)(1.0 / (1.0 - p));
        Tensor expectedY = (x.detach().to(ScalarType.Float32) * scale).where(kept, zeros_like(y));
        long yDiffer = y.detach().ne(expectedY).sum().item<long>();
        Tensor expectedGx = (gy * scale).where(kept, zeros_like(gy)).to(ScalarType.BFloat16);
        long gDiffer = x.grad!.ne(expectedGx).sum().item<long>();
        cuda.manual_seed(5);
        Tensor again;
        using (no_grad())
        {
            again = Mistral.Peft.Lora.LoraDropoutFunction.Dropout(kernel, x.detach(), p);
        }

        long replayDiffer = again.ne(y.detach()).sum().item<long>();
        double sigma = Math.Sqrt(p * (1 - p) / x.numel());
        // Where a gradient differs, what each side holds (the last call saw one element of 8.4 million differ).
        string where = string.Empty;
        if (gDiffer > 0)
        {
            long[] at = x.grad!.ne(expectedGx).flatten().nonzero().flatten().narrow(0, 0, Math.Min(gDiffer, 3)).cpu().data<long>().ToArray();
            Tensor xf = x.detach().flatten().to(ScalarType.Float32);
            Tensor yf = y.detach().flatten();
            Tensor gyf = gy.flatten();
            Tensor gxf = x.grad!.flatten().to(ScalarType.Float32);
            Tensor ef = expectedGx.flatten().to(ScalarType.Float32);
            where = "; at " + string.Join(", ", at.Select(i =>
                $"[{i}] x {xf[i].item<float>():R} y {yf[i].item<float>():R} gy {gyf[i].item<float>():R} gx {gxf[i].item<float>():R} expected {ef[i].item<float>():R}"));
        }

        Record("LoRA dropout fused (cast + dropout + backward, replay from the generator state)",
            Math.Abs(dropped - p) < 5 * sigma && yDiffer == 0 && gDiffer == 0 && replayDiffer == 0,
            $"dropped {dropped:F5} (p {p}, 5 sigma {5 * sigma:F5}); values differing {yDiffer}, gradients differing {gDiffer}, replay differing {replayDiffer}{where}");
    }

    // Training's fused RoPE (one kernel each way) against HF's rotate_half ops under autograd, at 7B shapes: values and
    // input gradients bit for bit (the projection's rows are a column slice of a wider tensor, as a fused q/k/v would give).
    private static void RotaryTrainingCheck(Device device, int heads)
    {
        using var scope = NewDisposeScope();
        const int b = 4, t = 512, d = 128;
        Tensor wide = (randn(b, t, (heads * d) + 256) * 2).to(ScalarType.BFloat16).to(device);
        Tensor positions = arange(0, t, 1, ScalarType.Int64, device).unsqueeze(0).expand(b, t);
        using var rope = new RotaryEmbedding(d, 1e6);
        var (cos, sin) = rope.Compute(positions, ScalarType.BFloat16);
        Tensor g = randn(b, heads, t, d).to(ScalarType.BFloat16).to(device);
        (Tensor Y, Tensor Gx) Run(bool fused)
        {
            Tensor leaf = wide.detach().clone().requires_grad_(true);
            Tensor xp = leaf.narrow(2, 128, heads * d);
            Tensor y = fused
                ? Mistral.Core.Cuda.FusedOps.Rotary(xp, cos, sin, heads, d) ?? throw new InvalidOperationException("the fused RoPE did not apply")
                : RotaryEmbedding.Apply(xp.view(b, t, heads, d).transpose(1, 2), cos, sin);
            y.backward([g]);
            return (y.detach(), leaf.grad!.clone());
        }

        var (y0, g0) = Run(false);
        var (y1, g1) = Run(true);
        // Bits, not values: −0 and +0 compare equal as numbers.
        static long Differ(Tensor a, Tensor b) => a.ne(b).logical_or(a.signbit().ne(b.signbit())).sum().item<long>();
        long yd = Differ(y1, y0);
        long gd = Differ(g1, g0);
        Record($"training RoPE fused vs rotate_half under autograd ([{b}, {t}, {heads} x {d}], strided rows): values and input gradients",
            yd == 0 && gd == 0 && y1.is_contiguous(), $"elements differing: values {yd}, gradients {gd}");
    }

    // lora_A(dropout(x.to(float32))) keeping the bf16 input (and the dropout seed) and making the float32 input again in
    // backward, against the fused dropout (or the cast) followed by an autograd linear: output, input and lora_A gradients
    // bit for bit at 7B width, each side drawing its seed from the same generator state.
    private static void LoraInputProjectionCheck(Device device, double p)
    {
        using var scope = NewDisposeScope();
        Tensor x0 = (randn(4, 512, 4096) * 2).to(ScalarType.BFloat16).to(device);
        Tensor gh = randn(4, 512, 16).to(device);
        var kernel = default(Mistral.Core.Cuda.CudaFunction);
        var a = new TorchSharp.Modules.Parameter((randn(16, 4096) * 0.02f).to(device));
        if (!Mistral.Peft.Lora.LoraInputProjectionFunction.Applies(x0.requires_grad_(true), a, p, true, out kernel))
        {
            Record($"LoRA input projection (p {p})", false, "the function did not apply");
            return;
        }

        var (h0, gx0, ga0) = InputProjectionStep(x0, a, gh, p, kernel, fusedProduct: null);
        var (h1, gx1, ga1) = InputProjectionStep(x0, a, gh, p, kernel, fusedProduct: false);
        long hd = h1.ne(h0).sum().item<long>(), xd = gx1.ne(gx0).sum().item<long>(), ad = ga1.ne(ga0).sum().item<long>();
        Record($"LoRA input projection keeping bf16 input vs autograd linear over the float32 input (p {p}, [4, 512, 4096] -> 16)",
            hd == 0 && xd == 0 && ad == 0 && ga0.abs().max().item<float>() > 0,
            $"elements differing: output {hd}, grad x {xd}, grad A {ad}");
    }

    // One forward and backward of lora_A(dropout(x.to(float32))) from the CUDA generator seeded 7: through
    // LoraInputProjectionFunction with or without the fused product kernels, or (fusedProduct null) as the reference,
    // the fused dropout followed by an autograd linear. Returns the output, x's and A's gradients.
    private static (Tensor H, Tensor Gx, Tensor Ga) InputProjectionStep(Tensor x0, TorchSharp.Modules.Parameter a, Tensor gh, double p,
        Mistral.Core.Cuda.CudaFunction kernel, bool? fusedProduct)
    {
        var x = x0.detach().clone().requires_grad_(true);
        a.grad = null;
        cuda.manual_seed(7);
        Tensor h;
        if (fusedProduct is bool fused)
        {
            h = Mistral.Peft.Lora.LoraInputProjectionFunction.apply(x, a, p, kernel, fused);
        }
        else
        {
            Tensor y = p > 0 ? Mistral.Peft.Lora.LoraDropoutFunction.Dropout(kernel, x, p) : x.to(ScalarType.Float32);
            h = nn.functional.linear(y, a);
        }

        h.backward([gh]);
        return (h.detach(), x.grad!.clone(), a.grad!.clone());
    }

    // The fused product kernels (the dropout made inside y·Aᵀ, gᵀ·y and g·A; the float32 input never written) against the
    // fused dropout followed by an autograd linear, each side drawing its seed from the same generator state: the same
    // mask (dropped input-gradient elements zero on both sides), output and A's gradient within float32 summation order
    // (relative error ≤ 1e-6), x's gradient within bf16 rounding of that (≤ 1e-3 relative, no element beyond 2 ulp plus
    // 1e-4 of the RMS).
    private static void LoraFusedProductCheck(Device device, double p, long[] shape, int r)
    {
        using var scope = NewDisposeScope();
        long k = shape[^1];
        Tensor x0 = (randn(shape) * 2).to(ScalarType.BFloat16).to(device);
        Tensor gh = randn([.. shape[..^1], r]).to(device);
        var a = new TorchSharp.Modules.Parameter((randn(r, k) * 0.02f).to(device));
        string name = $"LoRA fused product vs dropout + autograd linear (p {p}, [{string.Join(", ", shape)}] -> {r})";
        if (!Mistral.Peft.Lora.LoraInputProjectionFunction.Applies(x0.requires_grad_(true), a, p, true, out var kernel)
            || !Mistral.Peft.Lora.LoraDropoutFunction.CanProject(x0, a))
        {
            Record(name, false, "the fused product does not apply: " + Mistral.Peft.Lora.LoraDropoutFunction.Kernels.Status);
            return;
        }

        var (h0, gx0, ga0) = InputProjectionStep(x0, a, gh, p, kernel, fusedProduct: null);
        var (h1, gx1, ga1) = InputProjectionStep(x0, a, gh, p, kernel, fusedProduct: true);
        double hr = RelativeError(h1, h0), ar = RelativeError(ga1, ga0), xr = RelativeError(gx1, gx0);
        long maskDiffer = gx1.eq(0).ne(gx0.eq(0)).sum().item<long>();
        long beyond = BeyondOneUlp(gx1, gx0);
        // Beyond 2 bf16 ulp of the element plus 1e-4 of the RMS: a sum that nearly cancels has a float32 error of the
        // products' size, not of its own, and may round to another bf16 value more than one ulp away.
        Tensor e32 = gx0.to(ScalarType.Float32);
        double rms = e32.square().mean().sqrt().item<float>();
        long far = (gx1.to(ScalarType.Float32) - e32).abs().gt(e32.abs() * (2.0 / 128) + (1e-4 * rms)).sum().item<long>();
        double dropped = gx1.eq(0).to(ScalarType.Float64).mean().item<double>();
        Record(name, hr <= 1e-6 && ar <= 1e-6 && xr <= 1e-3 && maskDiffer == 0 && far == 0 && Math.Abs(dropped - p) < 0.01 && ga0.abs().max().item<float>() > 0,
            $"relative error: output {hr:E2}, grad A {ar:E2}, grad x {xr:E2} ({beyond} elements beyond 1 bf16 ulp, {far} beyond 2 + 1e-4 RMS); "
            + $"zero pattern differing {maskDiffer}; dropped {dropped:F4}");
    }

    // lora_B inside the combine (the float32 update never written) against libtorch's ops under autograd: linear, scale,
    // promoting add and cast (over a 4-bit base: the update rounded to bf16 first, then added). Output within bf16
    // rounding of the update's float32 sums, h's and B's gradients within float32 summation order (≤ 1e-6 relative),
    // the base output's gradient the output gradient itself.
    private static void LoraOutputCombineCheck(Device device, long[] lead, long n, int r, bool roundUpdate)
    {
        using var scope = NewDisposeScope();
        const double s = 2.0;
        Tensor result = (randn([.. lead, n]) * 0.5f).to(ScalarType.BFloat16).to(device);
        Tensor h0 = randn([.. lead, r]).to(device);
        var b = new TorchSharp.Modules.Parameter((randn(n, r) * 0.05f).to(device));
        Tensor gradOut = randn([.. lead, n]).to(ScalarType.BFloat16).to(device);
        string name = $"LoRA fused output (lora_B inside the combine) vs libtorch ops ([{string.Join(", ", lead)}, {r}] -> {n}, update rounded {roundUpdate})";
        if (!Mistral.Peft.Lora.LoraOutputCombineFunction.Applies(result, h0, b))
        {
            Record(name, false, "the fused output does not apply: " + Mistral.Peft.Lora.LoraCombineFunction.Kernels.Status);
            return;
        }

        (Tensor Y, Tensor Gr, Tensor Gh, Tensor Gb) Run(bool fused)
        {
            var res = result.detach().clone().requires_grad_(true);
            var h = h0.detach().clone().requires_grad_(true);
            b.grad = null;
            Tensor y;
            if (fused)
            {
                y = Mistral.Peft.Lora.LoraOutputCombineFunction.apply(res, h, b, s, roundUpdate);
            }
            else
            {
                Tensor update = nn.functional.linear(h, b).mul(s);
                y = roundUpdate ? res + update.to(ScalarType.BFloat16) : (res.to(ScalarType.Float32) + update).to(ScalarType.BFloat16);
            }

            y.backward([gradOut]);
            return (y.detach(), res.grad!.clone(), h.grad!.clone(), b.grad!.clone());
        }

        var e = Run(fused: false);
        var a = Run(fused: true);
        double yr = RelativeError(a.Y, e.Y), hr = RelativeError(a.Gh, e.Gh), br = RelativeError(a.Gb, e.Gb);
        long grDiffer = a.Gr.ne(e.Gr).sum().item<long>();
        long beyond = BeyondOneUlp(a.Y, e.Y);
        Tensor e32 = e.Y.to(ScalarType.Float32);
        double rms = e32.square().mean().sqrt().item<float>();
        long far = (a.Y.to(ScalarType.Float32) - e32).abs().gt(e32.abs() * (2.0 / 128) + (1e-4 * rms)).sum().item<long>();
        Record(name, yr <= 1e-3 && far == 0 && hr <= 1e-6 && br <= 1e-6 && grDiffer == 0 && a.Y.dtype == ScalarType.BFloat16,
            $"relative error: output {yr:E2} ({beyond} elements beyond 1 bf16 ulp, {far} beyond 2 + 1e-4 RMS), grad h {hr:E2}, grad B {br:E2}; "
            + $"base output gradient elements differing {grDiffer}");
    }

    // Decoding with every fused decoding kernel against the libtorch path, teacher-forced: both run the same left-padded
    // batch (prompts of 12, 30 and 7 tokens) through prefill and 40 cached single-token steps fed the libtorch path's own
    // greedy tokens, and every step's logits are compared. A random small model's top logits often lie within rounding of
    // each other, so free-running greedy paths may part anywhere; what must hold is that the logits stay close and that
    // the chosen token differs only where the libtorch path's own top-2 margin is within the measured difference.
    private static void DecodeCheck(Device device, bool quantized, int rows = 3)
    {
        using var scope = NewDisposeScope();
        using var _ = inference_mode();
        MistralConfig config = SmallConfig();
        var model = TrainStepBenchmark.RandomModel(config, ScalarType.BFloat16, device, qlora: quantized);
        model.eval();
        var rng = new Random(3);
        // Batch 1 (and 2) is where bf16 weights take the fused decoding projections.
        int[] lengths = rows == 1 ? [30] : [12, 30, 7];
        int width = lengths.Max();
        var ids = new long[lengths.Length * width];
        var mask = new long[lengths.Length * width];
        for (int r = 0; r < lengths.Length; r++)
        {
            for (int c = width - lengths[r]; c < width; c++)
            {
                ids[(r * width) + c] = rng.Next(3, config.VocabSize);
                mask[(r * width) + c] = 1;
            }
        }

        const int steps = 40;
        Tensor promptIds = tensor(ids, [lengths.Length, width], ScalarType.Int64, device);
        Tensor promptMask = tensor(mask, [lengths.Length, width], ScalarType.Int64, device);
        // Runs prefill + steps; feeds `forced` tokens when given, else its own argmax. Returns the per-step logits [steps, B, V].
        Tensor Run(bool fused, Tensor? forced)
        {
            model.UseFusedKernels = fused;
            model.UseFusedAttention = fused;
            model.UseFusedDecodeAttention = fused;
            model.UseFusedDecodeProjections = fused;
            using var cache = new KvCache(config, lengths.Length, width + steps + 1, ScalarType.BFloat16, device);
            var all = new List<Tensor>();
            using var prefill = model.forward(new CausalLMInput(promptIds) { AttentionMask = promptMask, Cache = cache, LastPositionLogitsOnly = true });
            Tensor last = prefill.Logits.select(1, 0).to(ScalarType.Float32);
            for (int i = 0; i < steps; i++)
            {
                all.Add(last);
                Tensor next = forced is null ? last.argmax(-1) : forced[i];
                using var output = model.forward(new CausalLMInput(next.unsqueeze(1)) { AttentionMask = ones([lengths.Length, 1], ScalarType.Int64, device), Cache = cache, LastPositionLogitsOnly = true });
                last = output.Logits.select(1, 0).to(ScalarType.Float32);
            }

            return stack(all);
        }

        Tensor expected = Run(false, null);
        Tensor reference = expected.argmax(-1);
        Tensor actual = Run(true, reference);
        double rel = RelativeError(actual, expected);
        Tensor diff = (actual - expected).abs().amax(-1);
        Tensor top2 = expected.topk(2, -1).values;
        Tensor margin = top2.select(-1, 0) - top2.select(-1, 1);
        Tensor flipped = actual.argmax(-1).ne(reference);
        long flips = flipped.sum().item<long>();
        long unexplained = flipped.logical_and(margin.gt(diff * 2)).sum().item<long>();
        Record($"decoding fused vs libtorch, teacher-forced ({(quantized ? "nf4" : "bf16")}, batch {lengths.Length}{(lengths.Length > 1 ? " with left padding" : string.Empty)}, prefill + {steps} steps)",
            rel < 1e-2 && unexplained == 0,
            $"logits relative error {rel:E2}; greedy choice differs at {flips} of {reference.numel()} steps, {unexplained} of them where the top-2 margin exceeds twice the logit difference");
        model.Dispose();
    }

    private static void PaddedBatchCheck(Device device)
    {
        using var scope = NewDisposeScope();
        using var _ = inference_mode();
        MistralConfig config = SmallConfig() with { SlidingWindow = 4096 };
        var model = RandomWeights.Model(config, ScalarType.BFloat16, device);
        model.eval();
        Tensor ids = randint(3, config.VocabSize, [2, 24], ScalarType.Int64, device);
        Tensor mask = ones([2, 24], ScalarType.Int64, device);
        mask[1, ..9] = 0;
        using var batch = model.forward(new CausalLMInput(ids) { AttentionMask = mask });
        using var alone = model.forward(new CausalLMInput(ids[1..2, 9..]));
        double rel = RelativeError(batch.Logits[1..2, 9..], alone.Logits);
        Record("bf16 padded attention: left-padded row vs the row alone", rel < 1e-2, $"relative error {rel:E2}");
        model.Dispose();
    }

    // QuantizedLoadOptions.EmbeddingsOnHost, through the loader as a user reaches it: one small bf16 checkpoint loaded
    // twice to CUDA, the table once on the GPU and once in host memory. The lookup happens on the host and only the rows
    // move, so the logits must be bit-identical and the model's Device stays CUDA. (A module built on CUDA and then
    // moved with nn.Module.to(CPU) would not do: TorchSharp's Module.to compares against the device it last moved to,
    // CPU by default, and moves nothing.)
    private static void HostEmbeddingCheck(Device device)
    {
        using var scope = NewDisposeScope();
        string folder = Path.Combine(Path.GetTempPath(), $"mistral-hostemb-{Environment.ProcessId}");
        try
        {
            MistralConfig config = SmallConfig();
            using (var source = RandomWeights.Model(config, ScalarType.BFloat16, CPU))
            {
                Mistral.Core.Checkpoints.CheckpointLoader.Save(source, folder);
            }

            File.WriteAllText(Path.Combine(folder, "config.json"), config.ToJson());
            QuantizedLoadOptions Options(bool onHost) => new() { Device = device, DType = ScalarType.BFloat16, EmbeddingsOnHost = onHost };
            using var onGpu = QuantizedModelLoader.Load(folder, Options(false)).Model;
            using var onHostModel = QuantizedModelLoader.Load(folder, Options(true)).Model;
            using var _ = inference_mode();
            Tensor ids = randint(3, config.VocabSize, [2, 24], ScalarType.Int64, device);
            using var reference = onGpu.forward(new CausalLMInput(ids));
            using var actual = onHostModel.forward(new CausalLMInput(ids));
            var hostTable = ((TokenEmbedding)onHostModel.Model.EmbedTokens).Weight;
            var table = hostTable.device;
            bool pinned = hostTable.is_pinned();
            bool split = table.type == DeviceType.CPU && onHostModel.Device.type == DeviceType.CUDA
                && ((TokenEmbedding)onGpu.Model.EmbedTokens).Weight.device.type == DeviceType.CUDA;
            long differ = actual.Logits.ne(reference.Logits).sum().item<long>();
            // The gather kernel alone: int32 and int64 ids with repeats and the table's first and last rows, against
            // index_select on the host.
            Tensor someIds = tensor(new long[] { 0, config.VocabSize - 1, 5, 5, 17, 900, 3 }, device: device);
            using var gatheredLong = ((TokenEmbedding)onHostModel.Model.EmbedTokens).forward(someIds);
            using var gatheredInt = ((TokenEmbedding)onHostModel.Model.EmbedTokens).forward(someIds.to(ScalarType.Int32));
            using var expected = hostTable.index_select(0, someIds.cpu());
            long rowsDiffer = gatheredLong.cpu().ne(expected).any(1).sum().item<long>() + gatheredInt.cpu().ne(expected).any(1).sum().item<long>();
            Record("embedding table in pinned host memory vs on the GPU (4-bit load of a bf16 checkpoint, forward; gather kernel)",
                split && pinned && differ == 0 && rowsDiffer == 0 && actual.Logits.device.type == DeviceType.CUDA,
                $"table on {table}, pinned {pinned}, model.Device {onHostModel.Device}; logits differing {differ} of {actual.Logits.numel()}; "
                + $"gathered rows differing {rowsDiffer} of 14; kernel: {TokenEmbedding.Kernels.Status}");
        }
        finally
        {
            if (Directory.Exists(folder))
            {
                Directory.Delete(folder, recursive: true);
            }
        }
    }

    // nn.Module.to(CPU) of a LoRA model built on CUDA moves every parameter and buffer (TorchSharp moves nothing when a
    // module believes it is already there, and starts out believing it is on the CPU: ModuleDevice records the real
    // device), and the model then gives the same logits on the CPU within bf16 rounding.
    private static void MoveToCpuCheck(Device device)
    {
        using var scope = NewDisposeScope();
        var (model, _, ids) = LoraSetup(device);
        model.eval();
        Tensor onGpu;
        using (inference_mode())
        {
            onGpu = model.forward(new CausalLMInput(ids)).Logits.cpu().to(ScalarType.Float32);
        }

        model.to(CPU);
        var left = model.named_parameters().Select(p => (p.name, p.parameter.device.type))
            .Concat(model.named_buffers().Select(b => (b.name, b.buffer.device.type)))
            .Where(t => t.type != DeviceType.CPU).Select(t => t.name).ToList();
        double rel = double.NaN;
        if (left.Count == 0)
        {
            using var _ = inference_mode();
            using var onCpu = model.forward(new CausalLMInput(ids.cpu()));
            rel = RelativeError(onCpu.Logits.to(ScalarType.Float32), onGpu);
        }

        Record("model with LoRA built on CUDA, then .to(CPU): every tensor moves, same logits", left.Count == 0 && rel < 2e-2,
            $"tensors left off the CPU {left.Count}{(left.Count > 0 ? " (" + string.Join(", ", left.Take(3)) + ")" : string.Empty)}; logits relative error {rel:E2}");
        model.Dispose();
    }

    private static void FusedTrainingCheck(Device device)
    {
        using var scope = NewDisposeScope();
        var (model, lora, ids) = LoraSetup(device);
        model.GradientCheckpointing = true;
        model.UseFusedKernels = false;
        var (l0, g0) = LoraStep(model, lora, ids);
        model.UseFusedKernels = true;
        var (l1, g1) = LoraStep(model, lora, ids);
        double rel = RelativeError(g1, g0);
        Record("LoRA training step fused vs libtorch (bf16, checkpointing): loss and adapter gradients",
            Math.Abs(l0 - l1) <= 1e-3 * Math.Abs(l0) && rel < 2e-2, $"loss {l0:F6} vs {l1:F6}, gradient relative error {rel:E2}");
        model.Dispose();
    }

    // The trainer's loss-only forward (chunked lm_head + cross-entropy) against the full float32 logits on CUDA in bf16.
    private static void LossOnlyCheck(Device device)
    {
        using var scope = NewDisposeScope();
        var (model, lora, ids) = LoraSetup(device);
        var (l0, g0) = LoraStep(model, lora, ids);
        var (l1, g1) = LoraStep(model, lora, ids, lossOnly: true);
        double rel = RelativeError(g1, g0);
        Record("loss-only forward (chunked lm_head + cross-entropy) vs full logits (bf16, CUDA): loss and adapter gradients",
            Math.Abs(l0 - l1) <= 1e-3 * Math.Abs(l0) && rel < 2e-2, $"loss {l0:F6} vs {l1:F6}, gradient relative error {rel:E2} (bf16 logits of a chunk may round apart from the full matmul's)");
        model.Dispose();
    }

    // How AdamWSteps steps: TorchSharp's per-parameter AdamW, or FlatAdamW through the libtorch op sequence or its fused kernel.
    private enum AdamWPath
    {
        PerParameter,
        FlatOps,
        FlatFused,
    }

    // Five AdamW steps (weight decay, clipping) on the same parameters and gradients along one path: the weights after, and
    // for the flat paths how many steps took the fused kernel for every group and how many launches it made.
    private static (List<Tensor> Weights, int FusedSteps, long FusedLaunches) AdamWSteps(Device device, AdamWPath path)
    {
        using var scope = NewDisposeScope();
        manual_seed(11);
        // Drawn on the CPU and moved: manual_seed does not reach the CUDA generator, and every run must start alike.
        var ps = new List<TorchSharp.Modules.Parameter> { new(randn(16, 512).to(device)), new(randn(2048, 16).to(device)), new(randn(7).to(device)) };
        var optimizer = optim.AdamW(ps, lr: 1e-2, weight_decay: 0.1);
        using var flat = path == AdamWPath.PerParameter ? null : Mistral.Peft.Training.FlatAdamW.TryCreate(optimizer);
        if (flat is not null)
        {
            flat.UseFusedKernel = path == AdamWPath.FlatFused;
        }

        int fusedSteps = 0;
        for (int step = 0; step < 5; step++)
        {
            manual_seed(100 + step);
            using (var _ = no_grad())
            {
                foreach (var p in ps)
                {
                    using var g = randn(p.shape).to(device);
                    if (flat is null)
                    {
                        p.grad = g.clone();
                    }
                    else
                    {
                        p.grad!.copy_(g);
                    }
                }
            }

            if (flat is null)
            {
                Mistral.Peft.Training.GradientClipping.ClipGradNorm(ps, 1.0).Dispose();
                optimizer.step();
            }
            else
            {
                Mistral.Peft.Training.GradientClipping.ClipGradNorm(ps, 1.0, flat).Dispose();
                flat.Step();
                fusedSteps += flat.LastStepFused ? 1 : 0;
                flat.ZeroGrad();
            }
        }

        return ([.. ps.Select(p => p.detach().clone().MoveToOuterDisposeScope())], fusedSteps, flat?.FusedLaunches ?? 0);
    }

    private static void ForeachOptimizerCheck(Device device)
    {
        // The flat buffers' libtorch op sequence (the fused kernel off) against TorchSharp's per-parameter loop.
        using var scope = NewDisposeScope();
        var e = AdamWSteps(device, AdamWPath.PerParameter).Weights;
        var a = AdamWSteps(device, AdamWPath.FlatOps).Weights;
        long differ = e.Zip(a).Sum(t => t.First.ne(t.Second).sum().item<long>());
        double rel = e.Zip(a).Max(t => RelativeError(t.Second, t.First));
        Record("foreach AdamW vs TorchSharp's AdamW on CUDA (5 steps, weight decay, clipping)", rel < 1e-6,
            $"{differ} of {e.Sum(t => t.numel())} weights differ, max relative error {rel:E2}");
    }

    private static void FusedAdamWCheck(Device device)
    {
        // The fused kernel (one launch per group and step) against the same flat step through the libtorch op sequence:
        // the same float32 operations in the same order, so equal unless libtorch's kernels round differently (an fma
        // contracted or not, a division taken as a reciprocal product or not); and the kernel must actually have run.
        using var scope = NewDisposeScope();
        var e = AdamWSteps(device, AdamWPath.FlatOps).Weights;
        var (a, fusedSteps, launches) = AdamWSteps(device, AdamWPath.FlatFused);
        long differ = e.Zip(a).Sum(t => t.First.ne(t.Second).sum().item<long>());
        double rel = e.Zip(a).Max(t => RelativeError(t.Second, t.First));
        double worstAbs = e.Zip(a).Max(t => (t.Second - t.First).abs().max().item<float>());
        Record("fused AdamW kernel vs flat foreach AdamW on CUDA (5 steps, weight decay, clipping)", rel <= 1e-6 && fusedSteps == 5 && launches == 5,
            $"{differ} of {e.Sum(t => t.numel())} weights differ (largest by {worstAbs:E2}), max relative error {rel:E2}; fused steps {fusedSteps} of 5, "
            + $"kernel launches {launches} (1 group){(fusedSteps == 5 ? string.Empty : "; the fused kernel did not run: " + Mistral.Peft.Training.FlatAdamW.KernelStatus)}");
    }

    private static void FusedGradNormCheck(Device device)
    {
        // The QLoRA r 16 adapter set of Mistral-7B on every projection (32 layers × q, k, v, o, gate, up, down × A, B: 448
        // gradients, 41.9 M elements) with one gradient of 7 elements in the middle (the later ones start 28 bytes past a
        // 16-byte boundary: the kernel's element path), as views of FlatAdamW's flat buffer, as the trainer has them. The
        // fused norm (two launches) against libtorch's stack of per-gradient norms on separate copies, twice (the same bits:
        // no atomics), then clipping to 1 against the libtorch path's clipping of the copies.
        using var scope = NewDisposeScope();
        long[][] layer =
        [
            [16, 4096], [4096, 16], [16, 4096], [1024, 16], [16, 4096], [1024, 16], [16, 4096], [4096, 16],
            [16, 4096], [14336, 16], [16, 4096], [14336, 16], [16, 14336], [4096, 16],
        ];
        var shapes = Enumerable.Range(0, 32).SelectMany(_ => layer).ToList();
        shapes.Insert(shapes.Count / 2, [7]);
        var ps = shapes.Select(s => new TorchSharp.Modules.Parameter(zeros(s, device: device))).ToList();
        using var optimizer = optim.AdamW(ps, lr: 1e-2);
        using var flat = Mistral.Peft.Training.FlatAdamW.TryCreate(optimizer) ?? throw new InvalidOperationException("FlatAdamW did not apply");
        manual_seed(21);
        using (var _ = no_grad())
        {
            for (int i = 0; i < ps.Count; i++)
            {
                using var g = randn(ps[i].shape).mul_(Math.Pow(2, (i % 9) - 4)); // magnitudes from 1/16 to 16
                ps[i].grad!.copy_(g);
            }
        }

        var copies = ps.Select(p => new TorchSharp.Modules.Parameter(p.detach().clone()) { grad = p.grad!.clone() }).ToList();
        long before = flat.NormCache.FusedNorms;
        using var fused = Mistral.Peft.Training.GradientClipping.ClipGradNorm(ps, null, flat);
        using var again = Mistral.Peft.Training.GradientClipping.ClipGradNorm(ps, null, flat);
        using var libtorch = Mistral.Peft.Training.GradientClipping.ClipGradNorm(copies, null);
        double exact;
        using (var _ = NewDisposeScope())
        {
            exact = stack(copies.Select(p => p.grad!.to(ScalarType.Float64).norm())).norm().item<double>();
        }

        float f = fused.item<float>();
        float l = libtorch.item<float>();
        bool same = BitConverter.SingleToInt32Bits(f) == BitConverter.SingleToInt32Bits(again.item<float>());
        double rel = Math.Abs((double)f - l) / l;

        // Time per norm, each path synchronized around 20 calls (the fused one launches 2 kernels, libtorch one per gradient + 1).
        double Time(Func<Tensor> norm)
        {
            norm().Dispose();
            cuda.synchronize(device);
            var watch = System.Diagnostics.Stopwatch.StartNew();
            for (int i = 0; i < 20; i++)
            {
                norm().Dispose();
            }

            cuda.synchronize(device);
            return watch.Elapsed.TotalMilliseconds / 20;
        }

        double fusedMs = Time(() => Mistral.Peft.Training.GradientClipping.ClipGradNorm(ps, null, flat));
        double libtorchMs = Time(() => Mistral.Peft.Training.GradientClipping.ClipGradNorm(copies, null));

        using var clippedNorm = Mistral.Peft.Training.GradientClipping.ClipGradNorm(ps, 1.0, flat);
        using var referenceNorm = Mistral.Peft.Training.GradientClipping.ClipGradNorm(copies, 1.0);
        double clipRel;
        using (var _ = NewDisposeScope())
        {
            clipRel = RelativeError(cat(ps.Select(p => p.grad!.reshape(-1)).ToArray()), cat(copies.Select(p => p.grad!.reshape(-1)).ToArray()));
        }

        long norms = flat.NormCache.FusedNorms - before;
        bool ran = norms == 2 + 21 + 1; // the two compared, 21 timed, the clipping one
        Record($"fused gradient norm vs libtorch's stack of norms on CUDA ({ps.Count} float32 gradients, {flat.FlatGradients[0].numel()} elements, clipping to 1)",
            rel <= 1e-6 && clipRel <= 1e-6 && same && ran,
            $"norm {f:R} vs {l:R} (relative {rel:E2}; float64 {exact:R}: fused {Math.Abs(f - exact) / exact:E2}, libtorch {Math.Abs(l - exact) / exact:E2}), "
            + $"second run {(same ? "bit-identical" : "DIFFERS")}, clipped gradients relative error {clipRel:E2}; {fusedMs:F3} ms vs {libtorchMs:F3} ms a norm; "
            + $"fused norms {norms} of 24{(ran ? string.Empty : "; the fused kernels did not run: " + Mistral.Peft.Training.GradientClipping.KernelStatus)}");
        foreach (var p in copies.Concat(ps))
        {
            p.Dispose();
        }
    }

    private static void CheckpointingCheck(Device device)
    {
        using var scope = NewDisposeScope();
        var (model, lora, ids) = LoraSetup(device);
        model.GradientCheckpointing = false;
        var (l0, g0) = LoraStep(model, lora, ids);
        model.GradientCheckpointing = true;
        var (l1, g1) = LoraStep(model, lora, ids);
        double rel = RelativeError(g1, g0);
        Record("gradient checkpointing on CUDA (LoRA, dropout 0): loss and gradients", l0 == l1 && rel < 1e-6, $"loss {l0:F6} vs {l1:F6}, gradient relative difference {rel:E2}");
        model.Dispose();
    }

    // With LoRA dropout and checkpointing on CUDA, a layer's first forward runs without autograd (the fused product
    // called directly, drawing its seed) and its recomputation under autograd (LoraInputProjectionFunction) must draw the
    // same masks. The reference is the same checkpointed step with cuBLAS's products (UseFusedProduct off: the fused
    // dropout kernel, whose forward/recomputation replay the lane checked before), the same seeds, hence the same masks:
    // loss within float32 summation order, gradients as close as the fused-vs-libtorch step (a mask drawn apart in the
    // recomputation gave gradients 0.4 apart in call 11). (Without checkpointing the masks differ by design: each
    // checkpointed layer reseeds the CUDA generator from the CPU one, which TorchSharp cannot read.)
    private static void CheckpointedDropoutCheck(Device device)
    {
        using var scope = NewDisposeScope();
        var (model, lora, ids) = LoraSetup(device, dropout: 0.1);
        model.GradientCheckpointing = true;
        (float Loss, Tensor Grads) Step(bool fusedProduct, int seed)
        {
            lora.UseFusedProduct = fusedProduct;
            manual_seed(seed);
            cuda.manual_seed_all(seed);
            return LoraStep(model, lora, ids);
        }

        var (l0, g0) = Step(fusedProduct: false, 5);
        var (l1, g1) = Step(fusedProduct: true, 5);
        var (l2, _) = Step(fusedProduct: true, 6);
        double rel = RelativeError(g1, g0);
        bool fused = lora.UseFusedDropout;
        Record("gradient checkpointing with LoRA dropout 0.1 on CUDA: fused product vs cuBLAS's, same seeds (same masks in forward and recomputation)",
            fused && Math.Abs(l0 - l1) <= 1e-4 * Math.Abs(l0) && rel < 2e-2 && l2 != l1,
            $"fused dropout {fused}; loss {l0:F6} vs {l1:F6} (seed 6: {l2:F6}), gradient relative error {rel:E2}");
        model.Dispose();
    }

    // The small bf16 model with LoRA r 8 on every projection (dropout 0 unless given, adapters drawn N(0, 0.02)) in
    // training mode, and a batch.
    private static (MistralForCausalLM Model, LoraModel Lora, Tensor Ids) LoraSetup(Device device, double dropout = 0)
    {
        MistralConfig config = SmallConfig();
        var model = RandomWeights.Model(config, ScalarType.BFloat16, device);
        var lora = LoraInjector.Inject(model, new LoraOptions { R = 8, Alpha = 16, Dropout = dropout, TargetModules = [LoraOptions.AllLinear] });
        using (no_grad())
        {
            foreach (var p in lora.AdapterParameters())
            {
                p.normal_(0, 0.02);
            }
        }

        model.train();
        return (model, lora, randint(3, config.VocabSize, [2, 64], ScalarType.Int64, device));
    }

    // One forward and backward with labels = ids: the loss and every adapter gradient, flattened into one tensor.
    private static (float Loss, Tensor Grads) LoraStep(MistralForCausalLM model, LoraModel lora, Tensor ids, bool lossOnly = false)
    {
        foreach (var p in lora.AdapterParameters())
        {
            p.grad = null;
        }

        using var output = model.forward(new CausalLMInput(ids) { Labels = ids, LossOnly = lossOnly });
        output.Loss!.backward();
        Tensor grads = cat(lora.AdapterParameters().Select(p => p.grad!.reshape(-1)).ToArray()).MoveToOuterDisposeScope();
        return (output.Loss.item<float>(), grads);
    }
}
