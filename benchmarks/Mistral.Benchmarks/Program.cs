using System.Diagnostics;
using System.Globalization;
using Mistral.Benchmarks;
using TorchSharp;
using static TorchSharp.torch;

// Mistral.NET benchmarks and device checks. Usage:
//   parity   --fixtures DIR [--device cuda]            HF fixture parity on a device (the CPU run is the test suite)
//   generate [--device cuda] [--model 7b|tiny] [--batch 1,8] [--prompt 128] [--new 128] [--runs 3] [--quant nf4]
//            [--fused true|false|both] [--fused-decode-attention false] [--fused-decode-gemv false] [--profile true]
//   train    [--device cuda] [--mode qlora|lora] [--r 16] [--targets all|qv] [--seq 512] [--batch 4] [--steps 5]
//            [--checkpoint DIR [--stage-host false] [--host-embeddings true]] [--dtype bf16] [--fused-dropout false] [--dropout 0.1] [--tf32 true] [--breakdown true] [--memory-trace true] [--profile true]
//   nf4check [--fixtures DIR] [--device cuda]             NF4 outputs vs tools/nf4/nf4_reference.py fixtures, bit for bit
//   nf4ops   [--device cuda]                               NF4 quantize/dequantize and Linear4bit step cost
//   nf4load  --checkpoint DIR [--device cuda] [--bf16 false]   bf16 HF checkpoint -> NF4, memory and decode speed
//   pipeline --checkpoint DIR [--device cuda] [--train 400] [--test 64] [--r 16] [--targets all|qv] [--merged DIR]
//   overhead [--device cuda] [--ops 20000]               host cost per op / per thin decode step
//   gpucheck [--device cuda]                           the GPU test lane: parity, NF4 bits, fused kernels, padding, checkpointing
//   mergedcheck --out DIR [--device cuda]               tiny pipeline -> merged export + our logits, for tools/merged_check.py
// Prints a table last.
string mode = args.Length > 0 ? args[0] : "help";
var opts = Args.Parse(args.Skip(1).ToArray());
Device device = opts.Get("device", "cpu") == "cuda" ? Cuda() : CPU;
CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
Console.WriteLine($"device: {device}, torch threads {get_num_threads()}");
switch (mode)
{
    case "parity":
        return ParityCheck.Run(opts.Get("fixtures", "tests/fixtures/hf"), device);
    case "generate":
        return GenerateBenchmark.Run(opts, device);
    case "train":
        return TrainStepBenchmark.Run(opts, device);
    case "nf4check":
        return Nf4FixtureCheck.Run(opts.Get("fixtures", "tests/fixtures/nf4"), device);
    case "nf4ops":
        return Nf4OpsBenchmark.Run(device);
    case "nf4load":
        return Nf4LoadBenchmark.Run(opts, device);
    case "pipeline":
        return PipelineBenchmark.Run(opts, device);
    case "overhead":
        return OverheadBenchmark.Run(opts, device);
    case "gpucheck":
        return GpuChecks.Run(opts, device);
    case "mergedcheck":
        return PipelineBenchmark.MergedCheck(opts, device);
    default:
        Console.WriteLine("usage: Mistral.Benchmarks parity|generate [--device cuda] ...");
        return 2;
}

static Device Cuda()
{
    InitializeDeviceType(DeviceType.CUDA);
    return CUDA;
}
