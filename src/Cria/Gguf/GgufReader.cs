using System.Text;
using Cria.Numerics;

namespace Cria.Gguf;

/// <summary>
/// Bounds-checked little-endian reader over the bytes of a GGUF header. Every read checks the
/// remaining length first, so a truncated or corrupted file ends in a <see cref="GgufFormatException"/>
/// rather than an out-of-range access or an allocation sized by garbage.
/// </summary>
internal unsafe ref struct GgufReader
{
    private readonly byte* _base;
    private readonly long _length;
    private long _pos;

    public GgufReader(byte* data, long length)
    {
        _base = data;
        _length = length;
        _pos = 0;
    }

    public long Position => _pos;
    public long Remaining => _length - _pos;

    private void Need(long n, string what)
    {
        if (n < 0 || n > _length - _pos)
            throw new GgufFormatException(
                $"file is truncated: {what} at byte {_pos} needs {n} bytes but only {_length - _pos} remain");
    }

    public byte U8(string what) { Need(1, what); return _base[_pos++]; }
    public ushort U16(string what) { Need(2, what); ushort v = *(ushort*)(_base + _pos); _pos += 2; return v; }
    public uint U32(string what) { Need(4, what); uint v = *(uint*)(_base + _pos); _pos += 4; return v; }
    public ulong U64(string what) { Need(8, what); ulong v = *(ulong*)(_base + _pos); _pos += 8; return v; }

    public string String(string what)
    {
        ulong len = U64(what + " length");
        if (len > (ulong)Remaining)
            throw new GgufFormatException(
                $"{what} at byte {_pos - 8} claims {len} bytes but only {Remaining} remain in the file");
        var s = Encoding.UTF8.GetString(new ReadOnlySpan<byte>(_base + _pos, (int)Math.Min(len, int.MaxValue)));
        _pos += (long)len;
        return s;
    }

    /// <summary>Smallest encoded size of one element of this type, used to bound array counts.</summary>
    private static int MinSize(GgufValueType t) => t switch
    {
        GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
        GgufValueType.UInt16 or GgufValueType.Int16 => 2,
        GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
        GgufValueType.UInt64 or GgufValueType.Int64 or GgufValueType.Float64 => 8,
        GgufValueType.String => 8,
        GgufValueType.Array => 12,
        _ => 1,
    };

    public GgufValueType ValueType(string what)
    {
        long at = _pos;
        uint t = U32(what);
        if (t > (uint)GgufValueType.Float64)
            throw new GgufFormatException($"{what} at byte {at} has unknown value type {t}");
        return (GgufValueType)t;
    }

    public GgufValue Value(GgufValueType type, string what, int depth)
    {
        switch (type)
        {
            case GgufValueType.UInt8: return new(type, U8(what));
            case GgufValueType.Int8: return new(type, (sbyte)U8(what));
            case GgufValueType.UInt16: return new(type, U16(what));
            case GgufValueType.Int16: return new(type, (short)U16(what));
            case GgufValueType.UInt32: return new(type, U32(what));
            case GgufValueType.Int32: return new(type, (int)U32(what));
            case GgufValueType.Float32: return new(type, BitConverter.UInt32BitsToSingle(U32(what)));
            case GgufValueType.UInt64: return new(type, U64(what));
            case GgufValueType.Int64: return new(type, (long)U64(what));
            case GgufValueType.Float64: return new(type, BitConverter.UInt64BitsToDouble(U64(what)));
            case GgufValueType.Bool:
            {
                long at = _pos;
                byte b = U8(what);
                if (b > 1) throw new GgufFormatException($"{what} at byte {at} is a bool with value {b} (must be 0 or 1)");
                return new(type, b == 1);
            }
            case GgufValueType.String: return new(type, String(what));
            case GgufValueType.Array: return new(type, Array(what, depth));
            default: throw new GgufFormatException($"{what} has unknown value type {(uint)type}");
        }
    }

    private GgufArray Array(string what, int depth)
    {
        if (depth > 8) throw new GgufFormatException($"{what} nests arrays more than 8 deep");
        var elem = ValueType(what + " element type");
        long at = _pos;
        ulong count = U64(what + " element count");
        if (count > (ulong)(Remaining / MinSize(elem)))
            throw new GgufFormatException(
                $"{what} at byte {at} claims {count} elements of type {elem}, more than the {Remaining} bytes left can hold");
        int n = (int)count;
        switch (elem)
        {
            case GgufValueType.UInt8: { var a = new byte[n]; Copy(a, n, what); return new(elem, a); }
            case GgufValueType.Int8: { var a = new sbyte[n]; Copy(a, n, what); return new(elem, a); }
            case GgufValueType.UInt16: { var a = new ushort[n]; Copy(a, n * 2L, what); return new(elem, a); }
            case GgufValueType.Int16: { var a = new short[n]; Copy(a, n * 2L, what); return new(elem, a); }
            case GgufValueType.UInt32: { var a = new uint[n]; Copy(a, n * 4L, what); return new(elem, a); }
            case GgufValueType.Int32: { var a = new int[n]; Copy(a, n * 4L, what); return new(elem, a); }
            case GgufValueType.Float32: { var a = new float[n]; Copy(a, n * 4L, what); return new(elem, a); }
            case GgufValueType.UInt64: { var a = new ulong[n]; Copy(a, n * 8L, what); return new(elem, a); }
            case GgufValueType.Int64: { var a = new long[n]; Copy(a, n * 8L, what); return new(elem, a); }
            case GgufValueType.Float64: { var a = new double[n]; Copy(a, n * 8L, what); return new(elem, a); }
            case GgufValueType.Bool:
            {
                var a = new bool[n];
                for (int i = 0; i < n; i++) a[i] = Value(GgufValueType.Bool, what, depth).AsBool();
                return new(elem, a);
            }
            case GgufValueType.String:
            {
                var a = new string[n];
                for (int i = 0; i < n; i++) a[i] = String(what);
                return new(elem, a);
            }
            case GgufValueType.Array:
            {
                var a = new GgufArray[n];
                for (int i = 0; i < n; i++) a[i] = Array(what, depth + 1);
                return new(elem, a);
            }
            default: throw new GgufFormatException($"{what} has unknown element type {(uint)elem}");
        }
    }

    private void Copy<T>(T[] dst, long bytes, string what) where T : unmanaged
    {
        Need(bytes, what);
        new ReadOnlySpan<byte>(_base + _pos, (int)bytes).CopyTo(System.Runtime.InteropServices.MemoryMarshal.AsBytes(dst.AsSpan()));
        _pos += bytes;
    }

    public static GgmlType TensorType(uint raw, string tensor)
    {
        var t = (GgmlType)raw;
        if (!GgmlTypeInfo.IsKnown(t))
            throw new GgufFormatException($"tensor '{tensor}' has unknown ggml type {raw}");
        return t;
    }
}
