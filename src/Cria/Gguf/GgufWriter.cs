using System.Text;
using Cria.Numerics;

namespace Cria.Gguf;

/// <summary>
/// Builds a GGUF v3 file: metadata in insertion order, then the tensor directory, then the tensor
/// data, each tensor padded to the alignment. <see cref="Write"/> writes to a temporary file beside
/// the target and renames it into place, so a failed write never leaves a partial file.
/// </summary>
public sealed class GgufWriter
{
    private readonly List<KeyValuePair<string, GgufValue>> _metadata = new();
    private readonly List<PendingTensor> _tensors = new();
    private readonly HashSet<string> _tensorNames = new(StringComparer.Ordinal);

    /// <summary>Writes the tensor's bytes to the stream; must write exactly the tensor's byte size.</summary>
    public delegate void TensorDataWriter(Stream destination);

    private sealed record PendingTensor(string Name, GgmlType Type, long[] Dimensions, long ByteSize, TensorDataWriter Write);

    public uint Alignment { get; private set; } = GgufFile.DefaultAlignment;

    public GgufWriter Set(string key, GgufValue value)
    {
        int i = _metadata.FindIndex(kv => kv.Key == key);
        if (i >= 0) _metadata[i] = new(key, value);
        else _metadata.Add(new(key, value));
        if (key == "general.alignment")
        {
            if (value.Type != GgufValueType.UInt32) throw new ArgumentException("general.alignment must be a uint32");
            uint a = (uint)value.Value;
            if (a == 0 || (a & (a - 1)) != 0) throw new ArgumentException("general.alignment must be a power of two");
            Alignment = a;
        }
        return this;
    }

    public GgufWriter Set(string key, string value) => Set(key, GgufValue.Of(value));
    public GgufWriter Set(string key, uint value) => Set(key, GgufValue.Of(value));
    public GgufWriter Set(string key, int value) => Set(key, GgufValue.Of(value));
    public GgufWriter Set(string key, float value) => Set(key, GgufValue.Of(value));
    public GgufWriter Set(string key, bool value) => Set(key, GgufValue.Of(value));
    public GgufWriter Set(string key, GgufArray value) => Set(key, GgufValue.Of(value));

    /// <summary>Copies every metadata entry of an open file (except the alignment).</summary>
    public GgufWriter CopyMetadataFrom(GgufFile file, Func<string, bool>? include = null)
    {
        foreach (var kv in file.MetadataList)
            if (kv.Key != "general.alignment" && (include == null || include(kv.Key))) Set(kv.Key, kv.Value);
        return this;
    }

    /// <param name="dimensions">ggml order: row length first.</param>
    public GgufWriter AddTensor(string name, GgmlType type, long[] dimensions, TensorDataWriter write)
    {
        if (!_tensorNames.Add(name)) throw new ArgumentException($"tensor '{name}' was already added");
        if (dimensions.Length is 0 or > GgufFile.MaxDimensions) throw new ArgumentException($"tensor '{name}' must have 1 to 4 dimensions");
        long bytes = GgmlTypeInfo.RowBytes(type, dimensions[0]);
        for (int i = 1; i < dimensions.Length; i++) bytes *= dimensions[i];
        _tensors.Add(new PendingTensor(name, type, (long[])dimensions.Clone(), bytes, write));
        return this;
    }

    public GgufWriter AddTensor(string name, GgmlType type, long[] dimensions, byte[] data)
    {
        long expected = GgmlTypeInfo.RowBytes(type, dimensions[0]);
        for (int i = 1; i < dimensions.Length; i++) expected *= dimensions[i];
        if (data.LongLength != expected)
            throw new ArgumentException($"tensor '{name}' needs {expected} bytes of {GgmlTypeInfo.Name(type)} data, got {data.LongLength}");
        return AddTensor(name, type, dimensions, s => s.Write(data));
    }

    public GgufWriter AddTensor(string name, float[] data, long[] dimensions)
    {
        var bytes = new byte[data.Length * 4];
        Buffer.BlockCopy(data, 0, bytes, 0, bytes.Length);
        return AddTensor(name, GgmlType.F32, dimensions, bytes);
    }

    /// <summary>Writes the file atomically (temporary file, then rename).</summary>
    public void Write(string path)
    {
        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full) ?? ".";
        string tmp = Path.Combine(dir, "." + Path.GetFileName(full) + "." + Environment.ProcessId + ".tmp");
        try
        {
            using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
            {
                WriteTo(fs);
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    public void WriteTo(Stream output)
    {
        var w = new BinaryWriter(output, Encoding.UTF8, leaveOpen: true);
        w.Write(GgufFile.Magic);
        w.Write(3u);
        w.Write((ulong)_tensors.Count);
        var meta = new List<KeyValuePair<string, GgufValue>>(_metadata);
        if (Alignment != GgufFile.DefaultAlignment && !meta.Exists(kv => kv.Key == "general.alignment"))
            meta.Add(new("general.alignment", GgufValue.Of(Alignment)));
        w.Write((ulong)meta.Count);
        foreach (var kv in meta)
        {
            WriteString(w, kv.Key);
            w.Write((uint)kv.Value.Type);
            WriteValue(w, kv.Value.Type, kv.Value.Value);
        }
        ulong offset = 0;
        foreach (var t in _tensors)
        {
            WriteString(w, t.Name);
            w.Write((uint)t.Dimensions.Length);
            foreach (long d in t.Dimensions) w.Write((ulong)d);
            w.Write((uint)t.Type);
            w.Write(offset);
            offset = (ulong)GgufFile.AlignUp((long)offset + t.ByteSize, Alignment);
        }
        w.Flush();
        long pos = 0;
        // Position may not be available on every stream; count what we wrote instead.
        pos = output.CanSeek ? output.Position : HeaderSize(meta);
        Pad(output, pos, Alignment);
        foreach (var t in _tensors)
        {
            long start = output.CanSeek ? output.Position : -1;
            t.Write(output);
            if (start >= 0 && output.Position - start != t.ByteSize)
                throw new InvalidOperationException($"tensor '{t.Name}' wrote {output.Position - start} bytes, expected {t.ByteSize}");
            Pad(output, t.ByteSize, Alignment);
        }
    }

    private long HeaderSize(List<KeyValuePair<string, GgufValue>> meta)
    {
        using var counter = new MemoryStream();
        var w = new BinaryWriter(counter);
        foreach (var kv in meta)
        {
            WriteString(w, kv.Key);
            w.Write((uint)kv.Value.Type);
            WriteValue(w, kv.Value.Type, kv.Value.Value);
        }
        long n = 24 + counter.Length;
        foreach (var t in _tensors) n += 8 + Encoding.UTF8.GetByteCount(t.Name) + 4 + 8L * t.Dimensions.Length + 4 + 8;
        return n;
    }

    private static void Pad(Stream s, long written, uint alignment)
    {
        long pad = GgufFile.AlignUp(written, alignment) - written;
        for (long i = 0; i < pad; i++) s.WriteByte(0);
    }

    private static void WriteString(BinaryWriter w, string s)
    {
        var bytes = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    private static void WriteValue(BinaryWriter w, GgufValueType type, object value)
    {
        switch (type)
        {
            case GgufValueType.UInt8: w.Write((byte)value); break;
            case GgufValueType.Int8: w.Write((sbyte)value); break;
            case GgufValueType.UInt16: w.Write((ushort)value); break;
            case GgufValueType.Int16: w.Write((short)value); break;
            case GgufValueType.UInt32: w.Write((uint)value); break;
            case GgufValueType.Int32: w.Write((int)value); break;
            case GgufValueType.Float32: w.Write((float)value); break;
            case GgufValueType.UInt64: w.Write((ulong)value); break;
            case GgufValueType.Int64: w.Write((long)value); break;
            case GgufValueType.Float64: w.Write((double)value); break;
            case GgufValueType.Bool: w.Write((byte)((bool)value ? 1 : 0)); break;
            case GgufValueType.String: WriteString(w, (string)value); break;
            case GgufValueType.Array:
            {
                var a = (GgufArray)value;
                w.Write((uint)a.ElementType);
                w.Write((ulong)a.Count);
                for (int i = 0; i < a.Count; i++) WriteValue(w, a.ElementType, a.Items.GetValue(i)!);
                break;
            }
            default: throw new ArgumentException($"cannot write GGUF value type {type}");
        }
    }
}
