using System.IO.MemoryMappedFiles;
using System.Text.Json;
using Cria.Numerics.Formats;

namespace Cria.Conversion;

/// <summary>The element types of a safetensors file (the <c>dtype</c> strings of its header).</summary>
public enum SafetensorsDType
{
    F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, Bool, F8_E4M3, F8_E5M2,
}

/// <summary>One tensor of a safetensors file: shape in PyTorch order (outermost first) and its byte range.</summary>
/// <param name="Begin">offset of the first byte, relative to the start of the data section</param>
public sealed record SafetensorsTensor(string Name, SafetensorsDType DType, long[] Shape, long Begin, long End)
{
    public long ElementCount
    {
        get
        {
            long n = 1;
            foreach (long d in Shape) n *= d;
            return n;
        }
    }

    public long ByteSize => End - Begin;
}

/// <summary>
/// A memory-mapped safetensors file (Hugging Face's format): an 8-byte little-endian header length N, N bytes of
/// JSON <c>{"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {string: string}}</c>,
/// then the data section the offsets point into. Every entry is checked on open: a known dtype, non-negative
/// dimensions, offsets inside the file, a byte size equal to dtype size × element count, and no two tensors
/// overlapping; any violation is an <see cref="InvalidDataException"/>. Nothing is copied until a tensor is read.
/// </summary>
public sealed unsafe class SafetensorsFile : IDisposable
{
    /// <summary>The largest header accepted (the reference implementation's limit is 100 MB).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private byte* _base;
    private readonly long _dataStart;
    private readonly Dictionary<string, SafetensorsTensor> _byName;

    public string Path { get; }
    public long FileSize { get; }
    /// <summary>Tensors in file (data offset) order.</summary>
    public IReadOnlyList<SafetensorsTensor> Tensors { get; }
    /// <summary>The <c>__metadata__</c> entries (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    private SafetensorsFile(string path, long fileSize, MemoryMappedFile? map, MemoryMappedViewAccessor? view, long dataStart,
        List<SafetensorsTensor> tensors, Dictionary<string, string> metadata)
    {
        Path = path;
        FileSize = fileSize;
        _map = map;
        _view = view;
        _dataStart = dataStart;
        Tensors = tensors;
        Metadata = metadata;
        _byName = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
        if (view != null)
        {
            byte* p = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            _base = p + view.PointerOffset;
        }
    }

    /// <summary>Opens and validates <paramref name="path"/>.</summary>
    /// <exception cref="InvalidDataException">the file is not a well-formed safetensors file</exception>
    public static SafetensorsFile Open(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"safetensors file not found: {path}", path);
        long size = new FileInfo(path).Length;
        string name = System.IO.Path.GetFileName(path);
        if (size < 8) throw new InvalidDataException($"{name} is not a safetensors file: {size} bytes is shorter than the 8-byte header length");
        byte[] header;
        long headerLength;
        using (var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read))
        {
            Span<byte> len = stackalloc byte[8];
            fs.ReadExactly(len);
            ulong n = BitConverter.ToUInt64(len);
            if (n > (ulong)(size - 8))
                throw new InvalidDataException($"{name}: the header length {n} runs past the end of the file ({size} bytes); the file is truncated or not safetensors");
            if (n > MaxHeaderBytes)
                throw new InvalidDataException($"{name}: the header length {n} exceeds the {MaxHeaderBytes}-byte limit");
            headerLength = (long)n;
            header = new byte[headerLength];
            fs.ReadExactly(header);
        }
        long dataStart = 8 + headerLength;
        var (tensors, metadata) = ParseHeader(name, header, size - dataStart);
        var map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        try
        {
            var view = map.CreateViewAccessor(0, size, MemoryMappedFileAccess.Read);
            return new SafetensorsFile(path, size, map, view, dataStart, tensors, metadata);
        }
        catch
        {
            map.Dispose();
            throw;
        }
    }

    /// <summary>Parses and validates a header against a data section of <paramref name="dataLength"/> bytes.</summary>
    internal static (List<SafetensorsTensor> Tensors, Dictionary<string, string> Metadata) ParseHeader(string name, byte[] header, long dataLength)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(header); }
        catch (JsonException e) { throw new InvalidDataException($"{name}: the header is not valid JSON ({e.Message})", e); }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"{name}: the header must be a JSON object");
            var tensors = new List<SafetensorsTensor>();
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (prop.Name == "__metadata__")
                {
                    if (prop.Value.ValueKind != JsonValueKind.Object)
                        throw new InvalidDataException($"{name}: __metadata__ must be an object of strings");
                    foreach (var m in prop.Value.EnumerateObject())
                        metadata[m.Name] = m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString()! : m.Value.GetRawText();
                    continue;
                }
                tensors.Add(ParseEntry(name, prop.Name, prop.Value, dataLength));
            }
            tensors.Sort((a, b) => a.Begin != b.Begin ? a.Begin.CompareTo(b.Begin) : a.End.CompareTo(b.End));
            for (int i = 1; i < tensors.Count; i++)
                if (tensors[i].Begin < tensors[i - 1].End)
                    throw new InvalidDataException($"{name}: tensors '{tensors[i - 1].Name}' (bytes {tensors[i - 1].Begin}..{tensors[i - 1].End}) and '{tensors[i].Name}' (bytes {tensors[i].Begin}..{tensors[i].End}) overlap");
            return (tensors, metadata);
        }
    }

    private static SafetensorsTensor ParseEntry(string file, string tensor, JsonElement e, long dataLength)
    {
        string where = $"{file}: tensor '{tensor}'";
        if (e.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{where} is not a JSON object");
        if (!e.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String)
            throw new InvalidDataException($"{where} has no dtype");
        var dtype = ParseDType(dt.GetString()!) ?? throw new InvalidDataException($"{where} has an unknown dtype '{dt.GetString()}'");
        if (!e.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array)
            throw new InvalidDataException($"{where} has no shape array");
        var shape = new long[sh.GetArrayLength()];
        long count = 1;
        int k = 0;
        foreach (var d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long v) || v < 0)
                throw new InvalidDataException($"{where} has an invalid dimension {d.GetRawText()}");
            shape[k++] = v;
            try { count = checked(count * v); }
            catch (OverflowException) { throw new InvalidDataException($"{where} has an impossibly large shape"); }
        }
        if (!e.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw new InvalidDataException($"{where} has no [begin, end] data_offsets");
        long begin = -1, end = -1;
        k = 0;
        foreach (var o in off.EnumerateArray())
        {
            if (o.ValueKind != JsonValueKind.Number || !o.TryGetInt64(out long v) || v < 0)
                throw new InvalidDataException($"{where} has an invalid data offset {o.GetRawText()}");
            if (k++ == 0) begin = v; else end = v;
        }
        if (end < begin) throw new InvalidDataException($"{where}: data_offsets [{begin}, {end}] end before they begin");
        if (end > dataLength)
            throw new InvalidDataException($"{where}: data_offsets [{begin}, {end}] run past the end of the data ({dataLength} bytes); the file is truncated");
        long expected;
        try { expected = checked(count * ElementSize(dtype)); }
        catch (OverflowException) { throw new InvalidDataException($"{where} has an impossibly large shape"); }
        if (end - begin != expected)
            throw new InvalidDataException($"{where}: {end - begin} bytes of data, but {dtype} × [{string.Join(", ", shape)}] needs {expected}");
        return new SafetensorsTensor(tensor, dtype, shape, begin, end);
    }

    private static SafetensorsDType? ParseDType(string s) => s switch
    {
        "F64" => SafetensorsDType.F64, "F32" => SafetensorsDType.F32, "F16" => SafetensorsDType.F16, "BF16" => SafetensorsDType.BF16,
        "I64" => SafetensorsDType.I64, "I32" => SafetensorsDType.I32, "I16" => SafetensorsDType.I16, "I8" => SafetensorsDType.I8,
        "U64" => SafetensorsDType.U64, "U32" => SafetensorsDType.U32, "U16" => SafetensorsDType.U16, "U8" => SafetensorsDType.U8,
        "BOOL" => SafetensorsDType.Bool, "F8_E4M3" => SafetensorsDType.F8_E4M3, "F8_E5M2" => SafetensorsDType.F8_E5M2,
        _ => null,
    };

    /// <summary>Bytes per element of <paramref name="dtype"/>.</summary>
    public static int ElementSize(SafetensorsDType dtype) => dtype switch
    {
        SafetensorsDType.F64 or SafetensorsDType.I64 or SafetensorsDType.U64 => 8,
        SafetensorsDType.F32 or SafetensorsDType.I32 or SafetensorsDType.U32 => 4,
        SafetensorsDType.F16 or SafetensorsDType.BF16 or SafetensorsDType.I16 or SafetensorsDType.U16 => 2,
        _ => 1,
    };

    public bool TryGetTensor(string name, out SafetensorsTensor tensor) => _byName.TryGetValue(name, out tensor!);

    public SafetensorsTensor GetTensor(string name) =>
        _byName.TryGetValue(name, out var t) ? t : throw new KeyNotFoundException($"{System.IO.Path.GetFileName(Path)} has no tensor '{name}'");

    /// <summary>The raw bytes of a tensor (a view of the mapped file).</summary>
    public ReadOnlySpan<byte> GetBytes(SafetensorsTensor tensor)
    {
        if (tensor.ByteSize == 0) return ReadOnlySpan<byte>.Empty;
        if (tensor.ByteSize > int.MaxValue) throw new NotSupportedException($"tensor '{tensor.Name}' is larger than 2 GB; read it by rows");
        return new ReadOnlySpan<byte>(Pointer(tensor, 0), (int)tensor.ByteSize);
    }

    private byte* Pointer(SafetensorsTensor tensor, long byteOffset)
    {
        if (_base == null) throw new ObjectDisposedException(nameof(SafetensorsFile));
        return _base + _dataStart + tensor.Begin + byteOffset;
    }

    /// <summary>True when <see cref="ReadFloats"/> can convert this dtype.</summary>
    public static bool IsFloat(SafetensorsDType dtype) =>
        dtype is SafetensorsDType.F32 or SafetensorsDType.F16 or SafetensorsDType.BF16 or SafetensorsDType.F64;

    /// <summary>
    /// Converts <c>destination.Length</c> elements starting at element <paramref name="start"/> of a floating-point
    /// tensor (F32, F16, BF16, F64) to float32.
    /// </summary>
    public void ReadFloats(SafetensorsTensor tensor, long start, Span<float> destination)
    {
        if (start < 0 || start + destination.Length > tensor.ElementCount)
            throw new ArgumentOutOfRangeException(nameof(start), $"elements {start}..{start + destination.Length} are outside tensor '{tensor.Name}' ({tensor.ElementCount} elements)");
        if (destination.IsEmpty) return;
        int size = ElementSize(tensor.DType);
        byte* p = Pointer(tensor, start * size);
        int n = destination.Length;
        switch (tensor.DType)
        {
            case SafetensorsDType.F32:
                new ReadOnlySpan<float>(p, n).CopyTo(destination);
                break;
            case SafetensorsDType.F16:
                Fp16Format.Dequantize(new ReadOnlySpan<byte>(p, n * 2), destination);
                break;
            case SafetensorsDType.BF16:
                Bf16Format.Dequantize(new ReadOnlySpan<byte>(p, n * 2), destination);
                break;
            case SafetensorsDType.F64:
                for (int i = 0; i < n; i++) destination[i] = (float)((double*)p)[i];
                break;
            default:
                throw new InvalidDataException($"tensor '{tensor.Name}' has dtype {tensor.DType}, which is not a floating-point type that can be converted");
        }
    }

    public void Dispose()
    {
        if (_view != null && _base != null)
        {
            _base = null;
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
        }
        _view?.Dispose();
        _map?.Dispose();
    }
}
