using Parquet.Meta;

namespace Mistral.Eval.Data;

/// <summary>
/// Walks the page headers of a Parquet column chunk (Thrift compact protocol) and checks them against the chunk's
/// metadata before Parquet.Net reads it: Parquet.Net allocates a page's stated sizes and follows its stated
/// lengths, so a corrupt size allocated hundreds of megabytes and a negative one could loop for ever.
/// </summary>
internal static class ParquetPages
{
    private const int MaxHeaderBytes = 16 << 20;

    /// <summary>Returns null when the pages are consistent, else what is wrong.</summary>
    public static string? Check(Stream file, ColumnMetaData meta)
    {
        long start = Math.Min(meta.DataPageOffset, meta.DictionaryPageOffset is { } d && d > 0 ? d : long.MaxValue);
        long end = start + meta.TotalCompressedSize;
        long values = 0;
        long pos = start;
        while (values < meta.NumValues)
        {
            if (pos >= end)
            {
                return $"the column chunk's pages end at byte {end} after {values} of its {meta.NumValues} values";
            }

            var header = ReadHeader(file, pos, end, out int headerLength);
            if (header is null)
            {
                return $"the page header at byte {pos} is not valid Thrift or runs past the column chunk (bytes {start} to {end})";
            }

            var h = header.Value;
            if (h.Compressed < 0 || h.Uncompressed < 0 || h.Compressed > end - pos - headerLength)
            {
                return $"the page at byte {pos} says it is {h.Compressed} bytes ({h.Uncompressed} uncompressed); expected 0 to {end - pos - headerLength}, the rest of the column chunk";
            }

            if (h.Uncompressed > Math.Max(meta.TotalUncompressedSize, 0))
            {
                return $"the page at byte {pos} says it is {h.Uncompressed} bytes uncompressed; expected at most the column chunk's {meta.TotalUncompressedSize}";
            }

            if (h.Values < 0 || h.Values > meta.NumValues - (h.IsData ? values : 0))
            {
                return $"the page at byte {pos} says it holds {h.Values} values; the column chunk has {meta.NumValues - values} left";
            }

            // Snappier allocates the length a Snappy block states (128 MiB for a corrupt one) before decoding it.
            if (meta.Codec == CompressionCodec.SNAPPY && h.Compressed > h.LevelBytes && h.LevelBytes >= 0
                && SnappyLength(file, pos + headerLength + h.LevelBytes, (int)Math.Min(5, h.Compressed - h.LevelBytes)) is var snappy
                && (snappy is null || snappy > h.Uncompressed))
            {
                return $"the Snappy data of the page at byte {pos} says it is {(snappy is null ? "an unreadable number of" : snappy)} bytes uncompressed; the page header says {h.Uncompressed}";
            }

            if (h.IsData)
            {
                values += h.Values;
            }

            pos += headerLength + h.Compressed;
        }

        return null;
    }

    /// <summary>
    /// Checks that the footer is one well-formed Thrift struct whose lists fit in its bytes (Parquet.Net allocated a
    /// list's stated size, 256 MiB for a corrupt one, and then parsed empty elements past the end for minutes).
    /// </summary>
    /// <returns>Null when well-formed, else what is wrong.</returns>
    public static string? CheckFooter(ReadOnlySpan<byte> footer)
    {
        var reader = new Reader(footer);
        try
        {
            reader.SkipStruct();
            return reader.Position == footer.Length ? null : $"its struct ends at byte {reader.Position} of {footer.Length}";
        }
        catch (Exception e) when (e is IndexOutOfRangeException or InvalidDataException or OverflowException)
        {
            return e is IndexOutOfRangeException ? "a value or list runs past its end" : e.Message;
        }
    }

    private static long? SnappyLength(Stream file, long at, int available)
    {
        var bytes = new byte[available];
        file.Seek(at, SeekOrigin.Begin);
        file.ReadExactly(bytes);
        long v = 0;
        for (int i = 0; i < available; i++)
        {
            v |= (long)(bytes[i] & 0x7F) << (7 * i);
            if ((bytes[i] & 0x80) == 0)
            {
                return v;
            }
        }

        return null;
    }

    // LevelBytes: for DATA_PAGE_V2 the uncompressed repetition and definition levels before the compressed values.
    private readonly record struct PageHeader(int Type, long Uncompressed, long Compressed, long Values, long LevelBytes)
    {
        public bool IsData => Type is 0 or 3; // DATA_PAGE, DATA_PAGE_V2
    }

    private static PageHeader? ReadHeader(Stream file, long pos, long end, out int length)
    {
        length = 0;
        int window = (int)Math.Min(end - pos, 4096);
        while (true)
        {
            var buffer = new byte[window];
            file.Seek(pos, SeekOrigin.Begin);
            file.ReadExactly(buffer);
            var reader = new Reader(buffer);
            try
            {
                var h = reader.PageHeader();
                length = reader.Position;
                return h;
            }
            catch (IndexOutOfRangeException) when (window < end - pos && window < MaxHeaderBytes)
            {
                window = (int)Math.Min(Math.Min(end - pos, MaxHeaderBytes), 4L * window);
            }
            catch (Exception e) when (e is IndexOutOfRangeException or InvalidDataException or OverflowException)
            {
                return null;
            }
        }
    }

    private ref struct Reader
    {
        private readonly ReadOnlySpan<byte> _b;
        private int _depth;

        public Reader(ReadOnlySpan<byte> bytes)
        {
            _b = bytes;
            Position = 0;
            _depth = 0;
        }

        public int Position { get; private set; }

        public void SkipStruct() => Skip(12);

        public PageHeader PageHeader()
        {
            int type = -1;
            long uncompressed = -1, compressed = -1, values = 0, levels = 0;
            short id = 0;
            while (Field(ref id, out int t))
            {
                switch (id)
                {
                    case 1 when t == 5: type = checked((int)ZigZag()); break;
                    case 2 when t == 5: uncompressed = ZigZag(); break;
                    case 3 when t == 5: compressed = ZigZag(); break;
                    case 5 or 7 or 8 when t == 12: (values, levels) = NumValues(); break;
                    default: Skip(t); break;
                }
            }

            if (type < 0 || uncompressed == -1 || compressed == -1)
            {
                throw new InvalidDataException("a required page header field is missing");
            }

            return new PageHeader(type, uncompressed, compressed, values, levels);
        }

        // DataPageHeader, DictionaryPageHeader and DataPageHeaderV2 all hold num_values as field 1 (i32); V2 holds
        // the byte lengths of its definition and repetition levels as fields 5 and 6 (the other headers have no
        // i32 fields 5 and 6).
        private (long Values, long LevelBytes) NumValues()
        {
            long values = -1, levels = 0;
            bool uncompressedValues = false;
            short id = 0;
            while (Field(ref id, out int t))
            {
                if (id == 1 && t == 5)
                {
                    values = ZigZag();
                }
                else if (id is 5 or 6 && t == 5)
                {
                    levels += ZigZag();
                }
                else if (id == 7 && t == 2)
                {
                    uncompressedValues = true; // V2 is_compressed = false: no Snappy block to check
                }
                else
                {
                    Skip(t);
                }
            }

            return (values, uncompressedValues ? -1 : levels);
        }

        private bool Field(ref short id, out int type)
        {
            byte h = _b[Position++];
            type = h & 0x0F;
            if (type == 0)
            {
                // STOP is the byte 0; a field delta with no type is corrupt (Parquet.Net read on past the footer for ever).
                return h == 0 ? false : throw new InvalidDataException($"the field header 0x{h:X2} has no type");
            }

            int delta = h >> 4;
            id = delta != 0 ? (short)(id + delta) : checked((short)ZigZag());
            return true;
        }

        private void Skip(int type)
        {
            switch (type)
            {
                case 1 or 2: break; // booleans live in the field header
                case 3: Position++; break;
                case 4 or 5 or 6: Varint(); break;
                case 7: Position += 8; break;
                case 8:
                    int size = checked((int)Varint()); // read before Position is used: the varint moves it
                    Position = checked(Position + size);
                    if (Position > _b.Length)
                    {
                        throw new IndexOutOfRangeException();
                    }

                    break;
                case 9 or 10:
                {
                    byte h = _b[Position++];
                    long n = h >> 4 == 15 ? checked((long)Varint()) : h >> 4;
                    Elements(n, h & 0x0F);
                    break;
                }

                case 11:
                {
                    long n = checked((long)Varint());
                    if (n > 0)
                    {
                        byte kv = _b[Position++];
                        for (long i = 0; i < n; i++)
                        {
                            Element(kv >> 4);
                            Element(kv & 0x0F);
                        }
                    }

                    break;
                }

                case 12:
                {
                    if (++_depth > 64)
                    {
                        throw new InvalidDataException("nested too deeply");
                    }

                    short id = 0;
                    while (Field(ref id, out int t))
                    {
                        Skip(t);
                    }

                    _depth--;
                    break;
                }

                default: throw new InvalidDataException($"unknown Thrift type {type}");
            }
        }

        private void Elements(long n, int type)
        {
            if (n > _b.Length - Position)
            {
                throw new IndexOutOfRangeException(); // every element takes at least a byte
            }

            for (long i = 0; i < n; i++)
            {
                Element(type);
            }
        }

        // In lists and maps a boolean is a byte.
        private void Element(int type)
        {
            if (type is 1 or 2)
            {
                Position++;
            }
            else
            {
                Skip(type);
            }
        }

        private long ZigZag()
        {
            ulong v = Varint();
            return (long)(v >> 1) ^ -(long)(v & 1);
        }

        private ulong Varint()
        {
            ulong v = 0;
            for (int shift = 0; shift < 70; shift += 7)
            {
                byte b = _b[Position++];
                v |= (ulong)(b & 0x7F) << shift;
                if ((b & 0x80) == 0)
                {
                    return v;
                }
            }

            throw new InvalidDataException("a varint is too long");
        }
    }
}
