using System.Diagnostics;
using Mistral.Core.Configuration;
using Mistral.Core.Modeling;
using Mistral.Peft.Lora;
using Mistral.Peft.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Benchmarks;

/// <summary>
/// One LoRA/QLoRA training step as the study runs it — random Mistral weights (bf16 base, or NF4 with double quant),
/// LoRA adapters in float32, gradient checkpointing, AdamW on the adapters, gradient clipping 0.3 — timed after warm-up
/// (median of the steps, CUDA-synchronised), with the process's peak device memory from nvidia-smi.
/// Same measurement as tools/hf_bench_train.py (HF + PEFT) in the same device call.
/// </summary>
internal static class TrainStepBenchmark
{
    public static int Run(Args opts, Device device)
    {
        string which = opts.Get("model", device.type == DeviceType.CUDA ? "7b" : "tiny");
        MistralConfig config = which == "7b"
            ? MistralConfig.Mistral7B
            : new MistralConfig { VocabSize = 1000, HiddenSize = 128, IntermediateSize = 256, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2, HeadDim = 32, SlidingWindow = 4096 };
        if (opts.GetInt("layers", 0) is int layers && layers > 0)
        {
            config = config with { NumHiddenLayers = layers }; // same per-layer work, fewer layers: for kernel-level profiles
            which += $"-{layers}layers";
        }

        bool qlora = opts.Get("mode", "qlora") == "qlora";
        int r = opts.GetInt("r", 16);
        string targets = opts.Get("targets", "all");
        int seq = opts.GetInt("seq", 512);
        int batch = opts.GetInt("batch", 4);
        int steps = opts.GetInt("steps", 5);
        bool checkpointing = opts.Get("checkpointing", "true") == "true";
        // Like the trainer: the loss without full float32 logits (chunked lm_head + cross-entropy); false for the full logits.
        bool lossOnly = opts.Get("loss-only", "true") == "true";
        // bf16 on CUDA; float32 on the CPU unless --dtype bf16 (to look at bf16 training's memory on a machine without a GPU).
        ScalarType dtype = device.type == DeviceType.CUDA || opts.Get("dtype", "") == "bf16" ? ScalarType.BFloat16 : ScalarType.Float32;

        using var mem = new GpuMemory();
        bool memoryTrace = opts.Get("memory-trace", "false") == "true";
        if (memoryTrace && device.type == DeviceType.CUDA)
        {
            // What the process holds before any model tensor: the CUDA context, libtorch's kernels and cuBLAS's handle.
            using var probe = ones(64, 64, dtype: ScalarType.BFloat16, device: device);
            using var product = probe.matmul(probe);
            Sync(device);
            Console.WriteLine($"memory before the model (CUDA context, libtorch, cuBLAS): {GpuMemory.CurrentMiB()} MiB");
        }

        string checkpoint = opts.Get("checkpoint", "");
        MistralForCausalLM model;
        if (qlora && checkpoint.Length > 0)
        {
            // Straight from a bf16 checkpoint into NF4, layer by layer: no bf16 copy of the model ever sits on the device.
            // --stage-host false reads each projection whole to the device before quantizing it (the loader's old way).
            bool stageOnHost = opts.Get("stage-host", "true") == "true";
            // --host-embeddings false keeps the embedding table on the GPU (QuantizedLoadOptions.EmbeddingsOnHost, default true).
            bool hostEmbeddings = opts.Get("host-embeddings", "true") == "true";
            var loaded = QuantizedModelLoader.Load(checkpoint, new QuantizedLoadOptions { Device = device, StageOnHost = stageOnHost, EmbeddingsOnHost = hostEmbeddings });
            model = loaded.Model;
            if (memoryTrace)
            {
                Console.WriteLine($"memory after loading (process, staged on host: {stageOnHost}, embeddings on host: {hostEmbeddings}, {loaded.Elapsed.TotalSeconds:F1} s): {GpuMemory.CurrentMiB()} MiB; model tensors {loaded.TotalBytes / 1048576.0:F0} MiB");
            }

            config = model.Config;
            which = Path.GetFileName(checkpoint.TrimEnd('/'));
        }
        else
        {
            model = RandomModel(config, dtype, device, qlora);
        }

        var lora = LoraInjector.Inject(model, new LoraOptions
        {
            R = r,
            Alpha = 16,
            Dropout = double.Parse(opts.Get("dropout", "0.1"), System.Globalization.CultureInfo.InvariantCulture),
            TargetModules = targets == "all" ? [LoraOptions.AllLinear] : ["q_proj", "v_proj"],
        });
        model.GradientCheckpointing = checkpointing;
        model.UseFusedKernels = opts.Get("fused", "true") == "true";
        // Float32 matmuls (the LoRA adapters') on tensor cores, as torch.backends.cuda.matmul.allow_tf32 = True does in
        // PyTorch: process-wide, so only when asked (the benchmark's own process), for a like-for-like comparison with
        // tools/hf_bench_train.py --tf32.
        bool tf32 = opts.Get("tf32", "false") == "true";
        if (tf32)
        {
            backends.cuda.matmul.allow_tf32 = true;
        }
        lora.UseFusedDropout = model.UseFusedKernels && opts.Get("fused-dropout", "true") == "true";
        lora.UseFusedProduct = model.UseFusedKernels && opts.Get("fused-product", "true") == "true";
        model.train();
        var parameters = lora.AdapterParameters();
        var optimizer = optim.AdamW(parameters, lr: 2e-4);
        // What the trainer does by default (TrainingOptions.ForeachOptimizer): AdamW, clipping and zeroing over flat buffers.
        using var flat = opts.Get("foreach", "true") == "true" ? Mistral.Peft.Training.FlatAdamW.TryCreate(optimizer) : null;
        Console.WriteLine($"{(qlora ? "qlora nf4" : "lora bf16")} {which} r {r} targets {targets}: {lora.TrainableParameters()}; device memory after setup {GpuMemory.CurrentMiB()} MiB");
        if (memoryTrace)
        {
            long flatBytes = flat?.FlatGradients.Sum(g => 3 * g.numel() * g.element_size()) ?? 0; // gradients, first and second moments
            Console.WriteLine($"tensors after setup: model with adapters {ModelBytes(model) / 1048576.0:F0} MiB, optimizer's gradients (flat) and moments {flatBytes / 1048576.0:F0} MiB");
        }

        mem.ResetPeak();

        using var ids = randint(3, config.VocabSize, [batch, seq], ScalarType.Int64, device);
        CausalLMOutput Forward() => model.forward(new CausalLMInput(ids) { Labels = ids, LossOnly = lossOnly });
        void ClipAndUpdate()
        {
            if (flat is not null)
            {
                Mistral.Peft.Training.GradientClipping.ClipGradNorm(parameters, 0.3, flat).Dispose();
                flat.Step();
                flat.ZeroGrad();
            }
            else
            {
                nn.utils.clip_grad_norm_(parameters, 0.3);
                optimizer.step();
                optimizer.zero_grad();
            }
        }

        var times = new List<double>();
        var losses = new List<float>();
        bool breakdown = opts.Get("breakdown", "false") == "true";
        // Process memory after each phase of the first steps: on CUDA the device memory (nvidia-smi; the caching allocator
        // never gives memory back, so the phase whose line grows sets the peak), on the CPU the resident set (large
        // tensors are mapped and unmapped as they come and go, so it follows the live tensors).
        var phases = new List<string>();
        if (memoryTrace && device.type != DeviceType.CUDA && File.Exists("/proc/self/clear_refs"))
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
        }

        void Phase(int step, string name)
        {
            if (memoryTrace && step < 2)
            {
                Sync(device);
                if (device.type == DeviceType.CUDA)
                {
                    phases.Add($"step {step} {name} {GpuMemory.CurrentMiB()}");
                }
                else
                {
                    // The phase's own peak: Linux resets the high-water mark when "5" is written to clear_refs.
                    phases.Add($"step {step} {name} {GpuMemory.HostMiB()} (peak in phase {GpuMemory.HostPeakMiB()})");
                    File.WriteAllText("/proc/self/clear_refs", "5");
                }
            }
        }
        var forwardTimes = new List<double>();
        var backwardTimes = new List<double>();
        int warmup = opts.GetInt("warmup", 2);
        for (int step = 0; step < steps + warmup; step++)
        {
            Sync(device);
            var sw = Stopwatch.StartNew();
            using (var scope = NewDisposeScope())
            {
                var output = Forward();
                if (breakdown)
                {
                    Sync(device);
                    forwardTimes.Add(sw.Elapsed.TotalSeconds);
                }

                Phase(step, "forward");
                output.Loss!.backward();
                if (breakdown)
                {
                    Sync(device);
                    backwardTimes.Add(sw.Elapsed.TotalSeconds);
                }

                Phase(step, "backward");
                ClipAndUpdate();
                Phase(step, "clip+AdamW");
                losses.Add(output.Loss.item<float>());
            }

            Sync(device);
            if (step >= warmup)
            {
                times.Add(sw.Elapsed.TotalSeconds);
            }
        }

        if (memoryTrace)
        {
            Console.WriteLine($"memory by phase (process MiB): {string.Join(", ", phases)}");
        }

        if (opts.Get("profile", "false") == "true" && device.type == DeviceType.CUDA && KernelProfiler.TryInitialize())
        {
            // Two more steps under CUPTI: every kernel of a whole step (forward, recompute, backward, clip, AdamW).
            Sync(device);
            KernelProfiler.Start();
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < 2; i++)
            {
                using var scope = NewDisposeScope();
                var output = Forward();
                output.Loss!.backward();
                ClipAndUpdate();

                losses.Add(output.Loss.item<float>());
            }

            Sync(device);
            double wall = sw.Elapsed.TotalSeconds;
            KernelProfiler.Stop();
            KernelProfiler.Print($"{(qlora ? "QLoRA nf4" : "LoRA bf16")} r {r} {targets} train step", 2, wall);
        }

        times.Sort();
        double median = times[times.Count / 2];
        // Frozen-base LoRA with recompute: forward 2N, recomputed forward 2N, input gradients 2N FLOP per token (N: weights in matmuls).
        double n = model.Config.ParameterCount - ((double)model.Config.VocabSize * model.Config.HiddenSize);
        double peakTflops = double.Parse(opts.Get("peak-tflops", "989"), System.Globalization.CultureInfo.InvariantCulture);
        double flopPerToken = (checkpointing ? 6 : 4) * n;
        double mfu = flopPerToken * batch * seq / median / 1e12;
        Console.WriteLine("== train step ==");
        Console.WriteLine($"model FLOP: {flopPerToken / 1e9:F1} GFLOP/token -> {mfu:F0} TFLOP/s = {100 * mfu / peakTflops:F1}% of {peakTflops:F0} (dense bf16 peak)");
        Console.WriteLine($"mistral.net {(qlora ? "QLoRA nf4" : "LoRA bf16")} {which} r {r} {targets}, seq {seq} x batch {batch}, checkpointing {checkpointing}, fused {model.UseFusedKernels}, fused dropout {lora.UseFusedDropout}, fused product {lora.UseFusedProduct}, foreach AdamW {flat is not null}, loss only {lossOnly}{(tf32 ? ", tf32 True" : string.Empty)}: {median:F3} s/step, {batch * seq / median:F0} tokens/s, peak device memory {mem.PeakMiB} MiB (process), losses {string.Join(" ", losses.Select(l => l.ToString("F4")))}");
        if (breakdown)
        {
            double Median(List<double> xs) => xs.Skip(warmup).OrderBy(x => x).ElementAt((xs.Count - warmup) / 2);
            double f = Median(forwardTimes);
            double fb = Median(backwardTimes);
            Console.WriteLine($"breakdown (median, synchronised): forward {f:F3} s, backward {fb - f:F3} s, clip+AdamW+zero {median - fb:F3} s");
        }

        model.Dispose();
        return 0;
    }

    internal static MistralForCausalLM RandomModel(MistralConfig config, ScalarType dtype, Device device, bool qlora)
    {
        var model = RandomWeights.Model(config, dtype, device);
        if (qlora)
        {
            var names = ModuleTree.NamedModules(model).Where(m => m.Module is Linear && m.Name != "lm_head").Select(m => m.Name).ToList();
            foreach (string name in names)
            {
                var linear = (Linear)ModuleTree.Get(model, name);
                var q = Linear4bit.FromLinear(linear, new Nf4Options { ComputeDtype = dtype });
                ModuleTree.Replace(model, name, q).Dispose();
            }
        }

        return model;
    }

    private static long ModelBytes(nn.Module model) =>
        model.parameters().Sum(t => t.numel() * t.element_size()) + model.buffers().Sum(t => t.numel() * t.element_size());

    private static void Sync(Device device)
    {
        if (device.type == DeviceType.CUDA)
        {
            cuda.synchronize(device);
        }
    }
}
