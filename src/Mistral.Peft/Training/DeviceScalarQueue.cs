using static TorchSharp.torch;

namespace Mistral.Peft.Training;

/// <summary>
/// Scalar tensors (step losses, gradient norms) kept on their device until they are needed on the host, then read all at
/// once: one stack and one device-to-host copy for the lot, instead of a synchronizing <c>item()</c> each.
/// </summary>
internal sealed class DeviceScalarQueue : IDisposable
{
    private readonly List<Tensor> _values = [];

    /// <summary>Scalars waiting to be read.</summary>
    public int Count => _values.Count;

    /// <summary>
    /// Takes ownership of a 0-d tensor (it must not belong to a dispose scope) and returns its index in the next read. A
    /// non-float32 scalar (a bf16 gradient norm) is replaced by its exact float32 copy on the same device.
    /// </summary>
    public int Add(Tensor scalar)
    {
        Tensor value = scalar;
        if (scalar.dtype != ScalarType.Float32)
        {
            value = scalar.to_type(ScalarType.Float32).DetachFromDisposeScope();
            scalar.Dispose();
        }

        _values.Add(value);
        return _values.Count - 1;
    }

    /// <summary>Copies every pending scalar to the host as float32 in one transfer, disposes them and empties the queue.</summary>
    public float[] ReadAll()
    {
        if (_values.Count == 0)
        {
            return [];
        }

        float[] host;
        using (var scope = NewDisposeScope())
        {
            Tensor all = stack(_values).cpu();
            host = all.data<float>().ToArray();
        }

        Clear();
        return host;
    }

    /// <inheritdoc />
    public void Dispose() => Clear();

    private void Clear()
    {
        foreach (var t in _values)
        {
            t.Dispose();
        }

        _values.Clear();
    }
}
