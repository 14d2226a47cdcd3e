using System.Text;
using Mistral.Core.Checkpoints;
using Mistral.Core.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace Mistral.Core.Tests;

public class SafeTensorsTests
{
    private static byte[] Build(string header, int dataBytes)
    {
        byte[] h = Encoding.UTF8.GetBytes(header);
        var ms = new MemoryStream();
        ms.Write(BitConverter.GetBytes((long)h.Length));
        ms.Write(h);
        ms.Write(new byte[dataBytes]);
        return ms.ToArray();
    }

    private static string WriteFile(byte[] bytes)
    {
        string path = Path.Combine(TestPaths.TempDir(), "model.safetensors");
        File.WriteAllBytes(path, bytes);
        return path;
    }

    [Fact]
    public void RoundTripsEveryDtypeByteExactly()
    {
        string dir = TestPaths.TempDir();
        string path = Path.Combine(dir, "t.safetensors");
        using var f32 = arange(0, 12, ScalarType.Float32).reshape(3, 4) / 7;
        using var bf16 = f32.to_type(ScalarType.BFloat16);
        using var f16 = f32.to_type(ScalarType.Float16);
        using var u8 = arange(0, 5, ScalarType.Byte);
        using var i64 = tensor(new long[] { -1, long.MaxValue });
        using var empty0 = zeros([0, 3]);
        SafeTensorsWriter.Write(path, new Dictionary<string, Tensor> { ["a"] = f32, ["b"] = bf16, ["c"] = f16, ["d"] = u8, ["e"] = i64, ["z"] = empty0 },
            new Dictionary<string, string> { ["format"] = "pt" });
        Directory.GetFiles(dir).Should().ContainSingle("no temporary file is left behind");

        using SafeTensorsFile file = SafeTensorsFile.Open(path);
        file.Metadata.Should().Equal(new Dictionary<string, string> { ["format"] = "pt" });
        file.Tensors["b"].DTypeName.Should().Be("BF16");
        using (var a = file.Load("a")) { TensorChecks.Exactly(a, f32).Should().BeTrue(); }
        using (var b = file.Load("b")) { b.dtype.Should().Be(ScalarType.BFloat16); TensorChecks.Exactly(b, bf16).Should().BeTrue(); }
        using (var b32 = file.Load("b", ScalarType.Float32)) { TensorChecks.Exactly(b32, bf16.to_type(ScalarType.Float32)).Should().BeTrue(); }
        using (var c = file.Load("c")) { TensorChecks.Exactly(c, f16).Should().BeTrue(); }
        using (var d = file.Load("d")) { TensorChecks.Exactly(d, u8).Should().BeTrue(); }
        using (var e = file.Load("e")) { e.data<long>().ToArray().Should().Equal(-1, long.MaxValue); }
        using (var z = file.Load("z")) { z.shape.Should().Equal(0, 3); }
        file.ReadBytes("d").Should().Equal(0, 1, 2, 3, 4);
        (new FileInfo(path).Length - 8 - BitConverter.ToInt64(File.ReadAllBytes(path), 0)).Should().Be((12 * 4) + (12 * 2 * 2) + 5 + 16);
        (BitConverter.ToInt64(File.ReadAllBytes(path), 0) % 8).Should().Be(0, "the header is padded to 8 bytes");
    }

    [Fact]
    public void AFileReachedThroughARelativeSymlinkOpensAsTheHubCacheLaysItOut()
    {
        // snapshots/<commit>/model.safetensors -> ../../blobs/<sha256>, as huggingface_hub writes it: the link's own size
        // (FileInfo.Length of a link) must not be taken for the file's.
        string repo = TestPaths.TempDir();
        string blob = Path.Combine(repo, "blobs", "0123abcd");
        Directory.CreateDirectory(Path.GetDirectoryName(blob)!);
        using var t = arange(0, 64, ScalarType.Float32);
        SafeTensorsWriter.Write(blob, new Dictionary<string, Tensor> { ["w"] = t });
        string snapshot = Path.Combine(repo, "snapshots", "c0ffee");
        Directory.CreateDirectory(snapshot);
        string link = Path.Combine(snapshot, "model.safetensors");
        File.CreateSymbolicLink(link, "../../blobs/0123abcd");

        using SafeTensorsFile file = SafeTensorsFile.Open(link);
        using var w = file.Load("w");
        TensorChecks.Exactly(w, t).Should().BeTrue();
    }

    [Fact]
    public void TruncatedFileIsRejectedWithTheTensorName()
    {
        string path = WriteFile(Build("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8));
        Action act = () => SafeTensorsFile.Open(path);
        act.Should().Throw<InvalidDataException>().Which.Message.Should().Contain(path).And.Contain("'w'").And.Contain("outside");
    }

    [Fact]
    public void HeaderClaimingMoreBytesThanTheFileIsRejectedBeforeAllocating()
    {
        var bytes = new byte[64];
        BitConverter.GetBytes(50_000_000_000L).CopyTo(bytes, 0);
        string path = WriteFile(bytes);
        Action act = () => SafeTensorsFile.Open(path);
        act.Should().Throw<InvalidDataException>().WithMessage("*header claims 50000000000 bytes*");
    }

    [Fact]
    public void TinyFileIsRejected()
    {
        string path = WriteFile([1, 2, 3]);
        Action act = () => SafeTensorsFile.Open(path);
        act.Should().Throw<InvalidDataException>().WithMessage("*3 bytes*");
    }

    [Fact]
    public void UnknownDtypeIsNamed()
    {
        string path = WriteFile(Build("{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2));
        Action act = () => SafeTensorsFile.Open(path);
        act.Should().Throw<InvalidDataException>().Which.Message.Should().Contain("'w'").And.Contain("F8_E4M3");
    }

    [Fact]
    public void SizeNotMatchingShapeIsRejected()
    {
        string path = WriteFile(Build("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8));
        Action act = () => SafeTensorsFile.Open(path);
        act.Should().Throw<InvalidDataException>().WithMessage("*'w'*8 data bytes do not match shape [3]*");
    }

    [Theory]
    [InlineData("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}", 6, "overlap")]
    [InlineData("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[6,8]}}", 8, "belong to no tensor")]
    [InlineData("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 9, "cover 4 data bytes but the file holds 9")]
    [InlineData("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}", 8, "appears twice")]
    public void DataSectionMustBeTiledExactlyByUniqueTensors(string header, int dataBytes, string message)
    {
        string path = WriteFile(Build(header, dataBytes));
        Action act = () => SafeTensorsFile.Open(path);
        act.Should().Throw<InvalidDataException>().Which.Message.Should().Contain(path).And.Contain(message);
    }

    [Fact]
    public void MalformedJsonIsRejected()
    {
        string path = WriteFile(Build("{\"w\":", 0));
        Action act = () => SafeTensorsFile.Open(path);
        act.Should().Throw<InvalidDataException>().WithMessage("*not valid JSON*");
    }

    [Fact]
    public void MissingShardIsNamed()
    {
        string dir = TestPaths.TempDir();
        File.WriteAllText(Path.Combine(dir, CheckpointReader.IndexFileName),
            "{\"metadata\":{},\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\",\"b\":\"model-00002-of-00002.safetensors\"}}");
        using (var t = ones(2))
        {
            SafeTensorsWriter.Write(Path.Combine(dir, "model-00001-of-00002.safetensors"), new Dictionary<string, Tensor> { ["a"] = t });
        }

        Action act = () => CheckpointReader.Open(dir);
        act.Should().Throw<FileNotFoundException>().WithMessage("*model-00002-of-00002.safetensors*");
    }

    [Fact]
    public void EmptyFolderSaysWhatIsExpected()
    {
        Action act = () => CheckpointReader.Open(TestPaths.TempDir());
        act.Should().Throw<FileNotFoundException>().WithMessage("*model.safetensors*model.safetensors.index.json*");
    }

    [Fact]
    public void ShardedCheckpointLoadsIntoTheModel()
    {
        var config = TinyModels.Tiny();
        using var source = TinyModels.RandomModel(config, seed: 3);
        string dir = TestPaths.TempDir();
        var state = source.state_dict();
        var names = state.Keys.OrderBy(n => n, StringComparer.Ordinal).ToList();
        var first = names.Take(names.Count / 2).ToDictionary(n => n, n => state[n].to_type(ScalarType.BFloat16));
        var second = names.Skip(names.Count / 2).ToDictionary(n => n, n => state[n].to_type(ScalarType.BFloat16));
        SafeTensorsWriter.Write(Path.Combine(dir, "model-00001-of-00002.safetensors"), first);
        SafeTensorsWriter.Write(Path.Combine(dir, "model-00002-of-00002.safetensors"), second);
        var map = names.ToDictionary(n => n, n => first.ContainsKey(n) ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors");
        File.WriteAllText(Path.Combine(dir, CheckpointReader.IndexFileName), System.Text.Json.JsonSerializer.Serialize(new { metadata = new { }, weight_map = map }));

        using var target = new MistralForCausalLM(config, ScalarType.Float32, CPU);
        var progress = new List<CheckpointLoadProgress>();
        CheckpointLoader.Load(target, dir, progress: new SyncProgress<CheckpointLoadProgress>(progress.Add)).Should().HaveCount(names.Count);
        progress.Should().HaveCount(names.Count);
        progress[^1].TensorsLoaded.Should().Be(names.Count);
        foreach (var (name, p) in target.named_parameters())
        {
            TensorChecks.Exactly(p, state[name].to_type(ScalarType.BFloat16).to_type(ScalarType.Float32)).Should().BeTrue(name);
        }
    }

    [Fact]
    public void MismatchListsEveryMissingUnexpectedAndMisShapedTensor()
    {
        var config = TinyModels.Tiny();
        using var source = TinyModels.RandomModel(config);
        var state = source.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value);
        state.Remove("model.norm.weight");
        state.Remove("lm_head.weight");
        state["model.extra.weight"] = ones(3);
        state["model.layers.0.self_attn.k_proj.weight"] = ones(9, 32);
        string dir = TestPaths.TempDir();
        SafeTensorsWriter.Write(Path.Combine(dir, CheckpointReader.SingleFileName), state);

        using var target = new MistralForCausalLM(config, ScalarType.Float32, CPU);
        Action act = () => CheckpointLoader.Load(target, dir);
        var ex = act.Should().Throw<CheckpointMismatchException>().Which;
        ex.Missing.Should().Equal("lm_head.weight", "model.norm.weight");
        ex.Unexpected.Should().Equal("model.extra.weight");
        ex.MisShaped.Should().ContainSingle().Which.Should().Contain("model.layers.0.self_attn.k_proj.weight").And.Contain("[9, 32]").And.Contain("[8, 32]");
        ex.Message.Should().Contain("lm_head.weight").And.Contain("model.extra.weight");

        state["model.layers.0.self_attn.k_proj.weight"] = source.state_dict()["model.layers.0.self_attn.k_proj.weight"];
        SafeTensorsWriter.Write(Path.Combine(dir, CheckpointReader.SingleFileName), state);
        CheckpointLoader.Load(target, dir, new CheckpointLoadOptions { Strict = false }).Should().NotContain("lm_head.weight");
    }

    private sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
