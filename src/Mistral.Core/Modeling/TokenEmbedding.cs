using Mistral.Core.Cuda;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mistral.Core.Modeling;

/// <summary>The token embedding table (<c>embed_tokens.weight</c> [vocab, hidden]).</summary>
public sealed class TokenEmbedding : nn.Module<Tensor, Tensor>
{
    private const string GatherSource = """
        // out[r, :] = table[ids[r], :] for r < rows, each row row_vecs 16-byte vectors. The table may be in pinned host
        // memory: with unified addressing its host address is valid on the device, so only the selected rows cross the
        // bus, the ids never go to the host and the host never waits for the device. An id outside [0, vocab) stops the
        // kernel with a device-side trap, as libtorch's CUDA index_select stops with a device-side assert.
        extern "C" __global__ void gather_rows(const uint4* table, const long long* ids, uint4* out, long long rows,
            long long row_vecs, long long vocab)
        {
            long long r = blockIdx.x;
            if (r >= rows) return;
            long long id = ids[r];
            if (id < 0 || id >= vocab) __trap();
            const uint4* src = table + id * row_vecs;
            uint4* dst = out + r * row_vecs;
            for (long long j = threadIdx.x; j < row_vecs; j += blockDim.x) dst[j] = src[j];
        }
        """;

    private static readonly CudaModule GatherModule = new("host_embedding", GatherSource, "gather_rows");

    private Parameter weight;

    /// <summary>Creates an uninitialised table.</summary>
    public TokenEmbedding(long vocabSize, long hiddenSize, ScalarType dtype, Device device)
        : base(nameof(TokenEmbedding))
    {
        weight = new Parameter(empty([vocabSize, hiddenSize], dtype, device));
        RegisterComponents();
        (_deviceType, _deviceIndex) = ModuleDevice.Origin(device);
    }

    /// <summary>
    /// Makes <paramref name="table"/> [vocab, hidden] the module's weight, not a copy: the parameter takes over the tensor's
    /// handle, so <paramref name="table"/> itself is no longer usable afterwards (TorchSharp's <c>Parameter</c> moves it).
    /// For instance a table in pinned host memory (<c>Tensor.pin_memory()</c>) that a model on a GPU reads row by row.
    /// </summary>
    public TokenEmbedding(Tensor table)
        : base(nameof(TokenEmbedding))
    {
        ArgumentNullException.ThrowIfNull(table);
        if (table.dim() != 2)
        {
            throw new ArgumentException($"An embedding table is [vocab, hidden]; got shape [{string.Join(", ", table.shape)}].", nameof(table));
        }

        Device device = table.device;
        weight = new Parameter(table);
        RegisterComponents();
        (_deviceType, _deviceIndex) = ModuleDevice.Origin(device);
    }

    /// <summary>The table [vocab, hidden].</summary>
    public Parameter Weight => weight;

    /// <summary>The host-table gather kernel (for tests of its assembled source).</summary>
    internal static CudaModule Kernels => GatherModule;

    /// <summary>
    /// Looks up ids of any shape; returns [..., hidden] on the ids' device. A table on another device (a frozen table kept in
    /// host memory while the model runs on a GPU) is read where it lives and only the selected rows reach the ids' device:
    /// the same values, without the table's bytes on the GPU. A pinned host table is read by a kernel on the GPU, with no
    /// wait for the device; a pageable one is looked up on the host after the ids are copied there.
    /// </summary>
    public override Tensor forward(Tensor ids)
    {
        long[] shape = [.. ids.shape, weight.size(1)];
        using Tensor flat = ids.reshape(-1);
        if (flat.device.IsSameDevice(weight.device))
        {
            using Tensor rows = weight.index_select(0, flat);
            return rows.view(shape);
        }

        if (TryGatherFromPinnedHost(flat) is Tensor gathered)
        {
            using (gathered)
            {
                return gathered.view(shape);
            }
        }

        using Tensor there = flat.to(weight.device);
        using Tensor picked = weight.index_select(0, there);
        using Tensor moved = picked.to(ids.device);
        return moved.view(shape);
    }

    // The rows of a pinned host table gathered on the ids' GPU, or null when the kernel does not apply: a table that needs a
    // gradient here, not pinned, not contiguous, rows not a whole number of 16-byte vectors, or no NVRTC.
    private unsafe Tensor? TryGatherFromPinnedHost(Tensor flat)
    {
        if (flat.device.type != DeviceType.CUDA || weight.device.type != DeviceType.CPU
            || (weight.requires_grad && is_grad_enabled()) || !weight.is_contiguous() || !weight.is_pinned()
            || flat.dtype is not (ScalarType.Int64 or ScalarType.Int32))
        {
            return null;
        }

        long rowBytes = weight.size(1) * weight.element_size();
        IntPtr table = CudaFunction.Pointer(weight);
        if (rowBytes % 16 != 0 || table % 16 != 0 || !GatherModule.TryGetFunction(flat, "gather_rows", out CudaFunction f))
        {
            return null;
        }

        using var scope = NewDisposeScope();
        Tensor ids = flat.dtype == ScalarType.Int64 && flat.is_contiguous() ? flat : flat.to(ScalarType.Int64).contiguous();
        long rows = ids.numel();
        Tensor output = empty([rows, weight.size(1)], weight.dtype, flat.device);
        if (rows == 0)
        {
            return output.MoveToOuterDisposeScope();
        }

        IntPtr pIds = CudaFunction.Pointer(ids);
        IntPtr pOut = CudaFunction.Pointer(output);
        long rowVecs = rowBytes / 16;
        long vocab = weight.size(0);
        IntPtr* args = stackalloc IntPtr[6];
        args[0] = (IntPtr)(&table);
        args[1] = (IntPtr)(&pIds);
        args[2] = (IntPtr)(&pOut);
        args[3] = (IntPtr)(&rows);
        args[4] = (IntPtr)(&rowVecs);
        args[5] = (IntPtr)(&vocab);
        f.Launch((uint)rows, 1, 1, (uint)Math.Min(256, ((rowVecs + 31) / 32) * 32), args);
        return output.MoveToOuterDisposeScope();
    }
}
