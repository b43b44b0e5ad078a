using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using Cria.Numerics;

namespace Cria.Gguf;

/// <summary>
/// A GGUF file (version 2 or 3) opened for reading. The header (metadata and tensor directory) is
/// parsed once; tensor data stays in the memory-mapped file and is handed out as pointers into it,
/// so opening a model copies none of its weights.
/// </summary>
public sealed unsafe class GgufFile : IDisposable
{
    public const uint Magic = 0x46554747; // "GGUF" read as a little-endian uint32
    public const uint DefaultAlignment = 32;
    /// <summary>ggml tensors have at most four dimensions.</summary>
    public const int MaxDimensions = 4;

    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private GCHandle _pinned;
    private byte* _base;
    private readonly long _length;
    private readonly Dictionary<string, GgufTensorInfo> _tensorsByName;

    public string? Path { get; }
    public uint Version { get; }
    public uint Alignment { get; }
    /// <summary>Metadata in file order.</summary>
    public IReadOnlyList<KeyValuePair<string, GgufValue>> MetadataList { get; }
    public IReadOnlyDictionary<string, GgufValue> Metadata { get; }
    /// <summary>The tensor directory in file order.</summary>
    public IReadOnlyList<GgufTensorInfo> Tensors { get; }
    /// <summary>Absolute file offset of the (aligned) data section.</summary>
    public long DataOffset { get; }
    public long FileSize => _length;

    private GgufFile(string? path, MemoryMappedFile? map, MemoryMappedViewAccessor? view, GCHandle pinned, byte* data, long length)
    {
        Path = path;
        _map = map;
        _view = view;
        _pinned = pinned;
        _base = data;
        _length = length;
        try
        {
            var r = new GgufReader(data, length);
            uint magic = r.U32("magic");
            if (magic != Magic)
                throw new GgufFormatException($"not a GGUF file: the first four bytes are {FormatMagic(magic)}, expected \"GGUF\"");
            Version = r.U32("version");
            if (Version == 1)
                throw new GgufFormatException("GGUF version 1 is not supported (it was replaced in 2023); re-convert the model");
            if (Version is not (2 or 3))
                throw new GgufFormatException($"unsupported GGUF version {Version} (Cria reads versions 2 and 3)");

            ulong tensorCount = r.U64("tensor count");
            ulong kvCount = r.U64("metadata count");
            // Each metadata pair takes at least 8 (key length) + 4 (type) + 1 bytes, and each
            // tensor entry at least 8 + 4 + 8 + 4 + 8 bytes: reject counts the file cannot hold.
            if (kvCount > (ulong)(r.Remaining / 13))
                throw new GgufFormatException($"metadata count {kvCount} is larger than the file can hold");
            if (tensorCount > (ulong)(r.Remaining / 32))
                throw new GgufFormatException($"tensor count {tensorCount} is larger than the file can hold");

            var list = new List<KeyValuePair<string, GgufValue>>((int)kvCount);
            var dict = new Dictionary<string, GgufValue>((int)kvCount, StringComparer.Ordinal);
            for (ulong i = 0; i < kvCount; i++)
            {
                string key = r.String($"key of metadata entry {i}");
                var type = r.ValueType($"type of metadata '{key}'");
                var value = r.Value(type, $"metadata '{key}'", 0);
                if (!dict.TryAdd(key, value))
                    throw new GgufFormatException($"duplicate metadata key '{key}'");
                list.Add(new(key, value));
            }
            MetadataList = list;
            Metadata = dict;

            Alignment = DefaultAlignment;
            if (dict.TryGetValue("general.alignment", out var alignValue))
            {
                if (alignValue.Type != GgufValueType.UInt32)
                    throw new GgufFormatException($"general.alignment must be a uint32, found {alignValue.Type}");
                uint a = (uint)alignValue.Value;
                if (a == 0 || (a & (a - 1)) != 0)
                    throw new GgufFormatException($"general.alignment {a} is not a power of two");
                Alignment = a;
            }

            var tensors = new List<GgufTensorInfo>((int)tensorCount);
            _tensorsByName = new Dictionary<string, GgufTensorInfo>((int)tensorCount, StringComparer.Ordinal);
            for (ulong i = 0; i < tensorCount; i++)
            {
                string name = r.String($"name of tensor {i}");
                uint nDims = r.U32($"dimension count of tensor '{name}'");
                if (nDims == 0 || nDims > MaxDimensions)
                    throw new GgufFormatException($"tensor '{name}' has {nDims} dimensions (1 to {MaxDimensions} allowed)");
                var dims = new long[nDims];
                long elements = 1;
                for (int d = 0; d < nDims; d++)
                {
                    ulong dim = r.U64($"dimension {d} of tensor '{name}'");
                    if (dim == 0 || dim > int.MaxValue)
                        throw new GgufFormatException($"tensor '{name}' has dimension {d} of size {dim}");
                    dims[d] = (long)dim;
                    if (elements > long.MaxValue / (long)dim)
                        throw new GgufFormatException($"tensor '{name}' has too many elements");
                    elements *= (long)dim;
                }
                var type = GgufReader.TensorType(r.U32($"type of tensor '{name}'"), name);
                ulong offset = r.U64($"data offset of tensor '{name}'");
                int block = GgmlTypeInfo.BlockSize(type);
                if (dims[0] % block != 0)
                    throw new GgufFormatException(
                        $"tensor '{name}' has rows of {dims[0]} elements, not a multiple of the {GgmlTypeInfo.Name(type)} block size {block}");
                long bytes = GgmlTypeInfo.RowBytes(type, dims[0]);
                for (int d = 1; d < nDims; d++)
                {
                    if (bytes > long.MaxValue / dims[d]) throw new GgufFormatException($"tensor '{name}' is too large");
                    bytes *= dims[d];
                }
                if (offset % Alignment != 0)
                    throw new GgufFormatException($"tensor '{name}' data offset {offset} is not aligned to {Alignment} bytes");
                var info = new GgufTensorInfo(name, type, dims, offset, bytes);
                if (!_tensorsByName.TryAdd(name, info))
                    throw new GgufFormatException($"duplicate tensor name '{name}'");
                tensors.Add(info);
            }
            Tensors = tensors;

            long headerEnd = r.Position;
            long dataOffset = AlignUp(headerEnd, Alignment);
            if (tensorCount > 0 && dataOffset > length)
                throw new GgufFormatException($"file is truncated: the data section would start at byte {dataOffset} but the file has {length} bytes");
            DataOffset = Math.Min(dataOffset, length);
            long dataSize = length - DataOffset;
            foreach (var t in tensors)
            {
                if (t.Offset > (ulong)dataSize || (ulong)t.ByteSize > (ulong)dataSize - t.Offset)
                    throw new GgufFormatException(
                        $"tensor '{t.Name}' data ({t.ByteSize} bytes at offset {t.Offset}) runs past the end of the file (data section holds {dataSize} bytes)");
            }
        }
        catch
        {
            ReleaseMapping();
            throw;
        }
    }

    private static string FormatMagic(uint m)
    {
        Span<byte> b = stackalloc byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(b, m);
        return Convert.ToHexString(b);
    }

    internal static long AlignUp(long x, long a) => (x + a - 1) / a * a;

    /// <summary>Opens and memory-maps a GGUF file.</summary>
    /// <exception cref="GgufFormatException">the file is not a well-formed GGUF v2/v3 file</exception>
    /// <exception cref="FileNotFoundException">there is no such file</exception>
    public static GgufFile Open(string path)
    {
        var fi = new FileInfo(path);
        if (!fi.Exists) throw new FileNotFoundException($"no such file: {path}", path);
        long length = fi.Length;
        if (length < 24)
            throw new GgufFormatException($"not a GGUF file: {path} is only {length} bytes long");
        string fullPath = System.IO.Path.GetFullPath(path);
        var map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        MemoryMappedViewAccessor? view = null;
        byte* p = null;
        try
        {
            view = map.CreateViewAccessor(0, length, MemoryMappedFileAccess.Read);
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        }
        catch
        {
            view?.Dispose();
            map.Dispose();
            throw;
        }
        // From here the object owns the mapping: its constructor releases it when the file is rejected, Dispose otherwise.
        return new GgufFile(fullPath, map, view, default, p + view.PointerOffset, length);
    }

    /// <summary>Parses a GGUF image held in memory (the array is pinned for the object's life).</summary>
    public static GgufFile FromBytes(byte[] bytes)
    {
        var handle = GCHandle.Alloc(bytes, GCHandleType.Pinned);
        // From here the object owns the handle: its constructor frees it when the image is rejected, Dispose otherwise.
        // (Freeing it here as well freed it twice, and the handle table then gave its slot to two later owners.)
        return new GgufFile(null, null, null, handle, (byte*)handle.AddrOfPinnedObject(), bytes.Length);
    }

    public bool TryGetTensor(string name, out GgufTensorInfo info) => _tensorsByName.TryGetValue(name, out info!);

    public GgufTensorInfo GetTensor(string name) =>
        _tensorsByName.TryGetValue(name, out var t) ? t : throw new KeyNotFoundException($"tensor '{name}' is not in the file");

    /// <summary>Pointer to a tensor's first byte inside the mapping; valid until the file is disposed.</summary>
    public byte* GetTensorData(GgufTensorInfo tensor)
    {
        ObjectDisposedException.ThrowIf(_base == null, this);
        return _base + DataOffset + (long)tensor.Offset;
    }

    /// <summary>A tensor's bytes as a span (tensors over 2 GiB must use <see cref="GetTensorData"/>).</summary>
    public ReadOnlySpan<byte> GetTensorBytes(GgufTensorInfo tensor) =>
        new(GetTensorData(tensor), checked((int)tensor.ByteSize));

    public bool TryGet(string key, out GgufValue value) => Metadata.TryGetValue(key, out value!);

    public string? GetString(string key) => Metadata.TryGetValue(key, out var v) && v.Value is string s ? s : null;

    public long? GetInt(string key) => Metadata.TryGetValue(key, out var v) && (v.IsInteger || v.Type == GgufValueType.Bool) ? v.AsInt64() : null;

    public double? GetFloat(string key) =>
        Metadata.TryGetValue(key, out var v) && (v.IsInteger || v.Type is GgufValueType.Float32 or GgufValueType.Float64) ? v.AsDouble() : null;

    public bool? GetBool(string key) => Metadata.TryGetValue(key, out var v) && (v.Type == GgufValueType.Bool || v.IsInteger) ? v.AsBool() : null;

    public GgufArray? GetArray(string key) => Metadata.TryGetValue(key, out var v) ? v.Value as GgufArray : null;

    private void ReleaseMapping()
    {
        if (_view != null)
        {
            if (_base != null) _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
        }
        _map?.Dispose();
        if (_pinned.IsAllocated) _pinned.Free();
        _base = null;
    }

    public void Dispose()
    {
        if (_base == null && _view == null && _map == null && !_pinned.IsAllocated) return;
        ReleaseMapping();
        GC.SuppressFinalize(this);
    }
}
