using System.Text;

namespace Mistral.Core.Tokenization;

/// <summary>
/// A minimal reader of the protocol-buffers wire format, enough to read a SentencePiece <c>ModelProto</c>.
/// Every malformed input raises <see cref="InvalidDataException"/>.
/// </summary>
internal ref struct ProtoWireReader
{
    private readonly ReadOnlySpan<byte> _data;
    private int _position;

    public ProtoWireReader(ReadOnlySpan<byte> data)
    {
        _data = data;
        _position = 0;
    }

    public readonly bool AtEnd => _position >= _data.Length;

    /// <summary>Reads the next tag, returning the field number and wire type.</summary>
    public (int Field, int WireType) ReadTag()
    {
        ulong tag = ReadVarint();
        int field = (int)(tag >> 3);
        if (field <= 0)
        {
            throw new InvalidDataException($"invalid protobuf field number {field} at byte {_position}");
        }

        return (field, (int)(tag & 7));
    }

    public ulong ReadVarint()
    {
        ulong result = 0;
        for (int shift = 0; shift < 64; shift += 7)
        {
            if (_position >= _data.Length)
            {
                throw new InvalidDataException("truncated protobuf varint");
            }

            byte b = _data[_position++];
            result |= (ulong)(b & 0x7F) << shift;
            if ((b & 0x80) == 0)
            {
                return result;
            }
        }

        throw new InvalidDataException("protobuf varint longer than 10 bytes");
    }

    public float ReadFixed32Float()
    {
        if (_position + 4 > _data.Length)
        {
            throw new InvalidDataException("truncated protobuf fixed32");
        }

        float value = BitConverter.Int32BitsToSingle(System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(_data.Slice(_position, 4)));
        _position += 4;
        return value;
    }

    public ReadOnlySpan<byte> ReadLengthDelimited()
    {
        ulong length = ReadVarint();
        if (length > (ulong)(_data.Length - _position))
        {
            throw new InvalidDataException($"protobuf length {length} runs past the end of the data");
        }

        ReadOnlySpan<byte> slice = _data.Slice(_position, (int)length);
        _position += (int)length;
        return slice;
    }

    public string ReadString()
    {
        try
        {
            return new UTF8Encoding(false, true).GetString(ReadLengthDelimited());
        }
        catch (DecoderFallbackException e)
        {
            throw new InvalidDataException("protobuf string is not valid UTF-8", e);
        }
    }

    public void Skip(int wireType)
    {
        switch (wireType)
        {
            case 0: ReadVarint(); break;
            case 1: Advance(8); break;
            case 2: ReadLengthDelimited(); break;
            case 5: Advance(4); break;
            default: throw new InvalidDataException($"unsupported protobuf wire type {wireType}");
        }
    }

    private void Advance(int count)
    {
        if (_position + count > _data.Length)
        {
            throw new InvalidDataException("truncated protobuf field");
        }

        _position += count;
    }
}
