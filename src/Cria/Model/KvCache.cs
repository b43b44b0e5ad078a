namespace Cria.Model;

/// <summary>Element type of the key/value cache.</summary>
public enum KvCacheType
{
    F32,
    F16,
}

/// <summary>
/// Keys and values of every layer for every position processed so far. One pinned buffer per
/// layer and per K/V. Keys are position-major (position p starts at p * KvDimension); values are
/// transposed (dimension j starts at j * ContextSize), as llama.cpp lays them out.
/// In F16 mode entries are stored as IEEE half (as llama.cpp's default cache), which rounds them.
/// </summary>
public sealed unsafe class KvCache
{
    private readonly float[][]? _k32, _v32;
    private readonly Half[][]? _k16, _v16;

    public KvCache(int layers, int contextSize, int kvDimension, KvCacheType type)
    {
        if (contextSize <= 0) throw new ArgumentOutOfRangeException(nameof(contextSize), "context size must be positive");
        Type = type;
        Layers = layers;
        ContextSize = contextSize;
        KvDimension = kvDimension;
        long perLayer = (long)contextSize * kvDimension;
        if (perLayer > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(contextSize), $"a context of {contextSize} tokens is too large for one layer's cache");
        if (type == KvCacheType.F32)
        {
            _k32 = new float[layers][];
            _v32 = new float[layers][];
            for (int l = 0; l < layers; l++)
            {
                _k32[l] = GC.AllocateArray<float>((int)perLayer, pinned: true);
                _v32[l] = GC.AllocateArray<float>((int)perLayer, pinned: true);
            }
        }
        else
        {
            _k16 = new Half[layers][];
            _v16 = new Half[layers][];
            for (int l = 0; l < layers; l++)
            {
                _k16[l] = GC.AllocateArray<Half>((int)perLayer, pinned: true);
                _v16[l] = GC.AllocateArray<Half>((int)perLayer, pinned: true);
            }
        }
    }

    public KvCacheType Type { get; }
    public int Layers { get; }
    public int ContextSize { get; }
    public int KvDimension { get; }
    /// <summary>Number of positions holding valid entries (the next position to write).</summary>
    public int Length { get; internal set; }

    public long ByteSize => 2L * Layers * ContextSize * KvDimension * (Type == KvCacheType.F32 ? 4 : 2);

    /// <summary>Forgets every position from <paramref name="length"/> on (keeps a shared prefix).</summary>
    public void Truncate(int length)
    {
        if (length < 0 || length > Length) throw new ArgumentOutOfRangeException(nameof(length));
        Length = length;
    }

    public void Clear() => Length = 0;

    internal float* Keys32(int layer) => (float*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref _k32![layer][0]);
    internal float* Values32(int layer) => (float*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref _v32![layer][0]);
    internal Half* Keys16(int layer) => (Half*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref _k16![layer][0]);
    internal Half* Values16(int layer) => (Half*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref _v16![layer][0]);
}
