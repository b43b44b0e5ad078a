using System.Runtime.InteropServices;
using Cria.Gguf;
using Cria.Numerics;
using Cria.Numerics.Formats;
using Cria.Numerics.Kernels;
using Microsoft.Win32.SafeHandles;

namespace Cria.Model;

/// <summary>
/// Copies Q4_0, Q4_K, Q6_K and Q8_0 matrices out of a model file into eight-row groups (<see cref="Q4_0x8Format"/>,
/// <see cref="Q4_Kx8Format"/>, <see cref="Q6_Kx8Format"/>, <see cref="Q8_0x8Format"/>) at
/// load, and owns the copies. The file's bytes are read with positional reads, not through the
/// mapping, so the mapped pages of a repacked tensor are never touched: the process holds one copy
/// of those weights (the repacked one), and the page cache, not the process, holds the file.
/// Matrices are repacked on <c>threads</c> threads, a run of groups per task.
/// <para>
/// With a cache directory, the repacked matrices are mapped from a <see cref="RepackCache"/> file when one made from
/// this model file exists there, and otherwise repacked in memory and written to one at <see cref="Finish"/>.
/// </para>
/// </summary>
internal sealed unsafe class WeightRepacker : IDisposable
{
    /// <summary>
    /// Bytes read per task (whole groups): a buffer that stays in L2 (256 KiB loaded 5–10 % faster than 1 MiB and about as
    /// fast as 128 KiB, docs/BENCHMARKS.md) while it is repacked, and reads still large.
    /// </summary>
    internal const int ChunkBytes = 1 << 18;

    private readonly GgufFile _file;
    private readonly SafeFileHandle? _handle; // null for a file image held in memory
    private readonly int _threads;
    private readonly List<nint> _copies = [];
    private readonly string? _cachePath;
    private readonly RepackCache.ModelStamp? _stamp;
    private RepackCache? _cache;
    private readonly string? _cacheRejection; // why an existing cache file was not used
    private readonly string? _cacheError; // why no cache could be used at all
    private readonly List<(string Name, WeightMatrix Matrix)> _matrices = [];
    private bool _repackedInMemory;

    /// <param name="file">the model</param>
    /// <param name="threads">threads to repack on</param>
    /// <param name="cacheDirectory">where to look for and write the repack cache; null for none</param>
    public WeightRepacker(GgufFile file, int threads, string? cacheDirectory = null)
    {
        _file = file;
        _threads = Math.Max(1, threads);
        if (file.Path is null) return;
        _handle = File.OpenHandle(file.Path, FileMode.Open, FileAccess.Read, FileShare.Read);
        if (cacheDirectory is null) return;
        try
        {
            _cachePath = RepackCache.PathFor(cacheDirectory, file.Path);
            _stamp = RepackCache.ModelStamp.Of(file, _handle);
            _cache = RepackCache.TryOpen(_cachePath, _stamp, out string? why);
            _cacheRejection = why;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
        {
            // A directory name the system rejects, or the model's header unreadable: no cache, but the load goes on.
            _cacheError = $"cannot use the repack cache directory {cacheDirectory}: {e.Message}";
            _cachePath = null;
        }
    }

    /// <summary>Bytes of weights in repacked layouts so far (repacked in memory or mapped from the cache).</summary>
    public long RepackedBytes { get; private set; }

    /// <summary>What became of the repack cache (<see cref="RepackCacheState.Off"/> until <see cref="Finish"/>).</summary>
    public RepackCacheState CacheState { get; private set; }

    /// <summary>The cache file's path and what happened to it, for the user; null when no cache directory was given.</summary>
    public string? CacheMessage { get; private set; }

    /// <summary>
    /// True when <paramref name="m"/> can be repacked: Q4_0, Q8_0, or Q4_K and Q6_K on CPUs with AVX2 and FMA (their kernels
    /// have no portable path), with a row count that is a multiple of 8.
    /// </summary>
    public static bool CanRepack(in WeightMatrix m) =>
        (m.Type is GgmlType.Q4_0 or GgmlType.Q8_0 || m.Type is GgmlType.Q4_K or GgmlType.Q6_K && CpuFeatures.Avx2Fma)
        && m.Layout == WeightLayout.Rows && m.Rows > 0 && m.Rows % 8 == 0 && m.Cols > 0;

    /// <summary>The eight-row group layout of <paramref name="type"/>, or <see cref="WeightLayout.Rows"/> for a type that has none.</summary>
    public static WeightLayout GroupLayout(GgmlType type) => type switch
    {
        GgmlType.Q4_0 => WeightLayout.Q4_0x8,
        GgmlType.Q8_0 => WeightLayout.Q8_0x8,
        GgmlType.Q4_K => WeightLayout.Q4_Kx8,
        GgmlType.Q6_K => WeightLayout.Q6_Kx8,
        _ => WeightLayout.Rows,
    };

    /// <summary>The repacked copy of tensor <paramref name="tensor"/> (whose plain matrix is <paramref name="m"/>), or <paramref name="m"/> itself when it cannot be repacked.</summary>
    public WeightMatrix Repack(GgufTensorInfo tensor, in WeightMatrix m)
    {
        if (!CanRepack(m)) return m;
        if (_cache is not null && _cache.TryGet(tensor.Name, m, out var cached))
        {
            if (cached.Layout != WeightLayout.Rows) RepackedBytes += cached.RowBytes * cached.Rows;
            _matrices.Add((tensor.Name, cached));
            return cached;
        }
        var repacked = RepackInMemory(tensor, m);
        _repackedInMemory = true;
        _matrices.Add((tensor.Name, repacked));
        return repacked;
    }

    private WeightMatrix RepackInMemory(GgufTensorInfo tensor, in WeightMatrix m)
    {
        long groupBytes = m.RowBytes * 8;
        int groups = m.Rows / 8;
        long total = groupBytes * groups;
        byte* dst = (byte*)NativeMemory.AlignedAlloc((nuint)total, 64);
        _copies.Add((nint)dst);
        GgmlType type = m.Type;
        int blocks = m.Cols / GgmlTypeInfo.BlockSize(m.Type);
        int groupsPerChunk = (int)Math.Max(1, ChunkBytes / groupBytes);
        int chunks = (groups + groupsPerChunk - 1) / groupsPerChunk;
        long fileOffset = _file.DataOffset + (long)tensor.Offset;
        byte* mapped = m.Data;
        nint rowBytes = (nint)m.RowBytes;
        var options = new ParallelOptions { MaxDegreeOfParallelism = _threads };
        int special = 0;
        Parallel.For(0, chunks, options,
            () => _handle is null ? 0 : (nint)NativeMemory.Alloc((nuint)(groupsPerChunk * groupBytes)),
            (chunk, _, buffer) =>
            {
                int g0 = chunk * groupsPerChunk, n = Math.Min(groupsPerChunk, groups - g0);
                long offset = g0 * groupBytes, length = n * groupBytes;
                byte* src = mapped + offset;
                if (_handle is not null)
                {
                    src = (byte*)buffer;
                    ReadExactly(_handle, src, length, fileOffset + offset);
                }
                for (int g = 0; g < n; g++)
                    if (!RepackGroup(type, src + g * groupBytes, rowBytes, dst + offset + g * groupBytes, blocks))
                        Volatile.Write(ref special, 1);
                return buffer;
            },
            buffer => { if (buffer != 0) NativeMemory.Free((void*)buffer); });
        if (special != 0) // an infinite or NaN scale: keep the file's rows (the kernels' scale conversion is exact for finite halves)
        {
            _copies.Remove((nint)dst);
            NativeMemory.AlignedFree(dst);
            return m;
        }
        RepackedBytes += total;
        return new WeightMatrix(type, dst, m.Rows, m.Cols, GroupLayout(type));
    }

    private static bool RepackGroup(GgmlType type, byte* src, nint rowBytes, byte* dst, int blocks) => type switch
    {
        GgmlType.Q4_0 => Q4_0x8Format.Repack(src, rowBytes, dst, blocks),
        GgmlType.Q4_K => Q4_Kx8Format.Repack(src, rowBytes, dst, blocks),
        GgmlType.Q6_K => Q6_Kx8Format.Repack(src, rowBytes, dst, blocks),
        _ => Q8_0x8Format.Repack(src, rowBytes, dst, blocks),
    };

    /// <summary>A small tensor's bytes, read past the mapping (from the mapping for a file image held in memory).</summary>
    public byte[] ReadTensor(GgufTensorInfo tensor)
    {
        var bytes = new byte[checked((int)tensor.ByteSize)];
        fixed (byte* b = bytes)
        {
            if (_handle is null) Buffer.MemoryCopy(_file.GetTensorData(tensor), b, bytes.Length, bytes.Length);
            else ReadExactly(_handle, b, bytes.Length, _file.DataOffset + (long)tensor.Offset);
        }
        return bytes;
    }

    private static void ReadExactly(SafeFileHandle handle, byte* dst, long length, long offset)
    {
        while (length > 0)
        {
            int n = RandomAccess.Read(handle, new Span<byte>(dst, (int)Math.Min(length, int.MaxValue)), offset);
            if (n <= 0) throw new ModelLoadException("the model file ended before a tensor's data did (was it truncated while loading?)");
            dst += n; length -= n; offset += n;
        }
    }

    /// <summary>
    /// Loading is over: writes the repack cache when a cache directory was given and some matrix had to be repacked in
    /// memory (a failure to write is reported in <see cref="CacheMessage"/>, not thrown: the model is loaded), and closes
    /// the file handle used for reading. The copies stay until <see cref="Dispose"/>.
    /// </summary>
    public void Finish()
    {
        _handle?.Dispose();
        (CacheState, CacheMessage) = CacheOutcome();
    }

    /// <summary>What became of the cache: written when some matrix had to be repacked in memory, with a message for the user.</summary>
    private (RepackCacheState, string?) CacheOutcome()
    {
        if (_matrices.Count == 0) return (RepackCacheState.Off, null);
        if (_cacheError is not null) return (RepackCacheState.Failed, _cacheError);
        if (_cachePath is null) return (RepackCacheState.Off, null);
        if (!_repackedInMemory) return (RepackCacheState.Loaded, $"repacked weights mapped from the cache {_cachePath}");
        string reason = _cacheRejection is null ? "" : $" (the old one was not used: {_cacheRejection})";
        try
        {
            long bytes = RepackCache.Write(_cachePath, _stamp!, _matrices);
            return (RepackCacheState.Written, $"repack cache written to {_cachePath} ({bytes / 1048576.0:F1} MiB){reason}; later loads map it");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
        {
            return (RepackCacheState.Failed, $"could not write the repack cache {_cachePath}: {e.Message}");
        }
    }

    /// <summary>Frees every repacked copy (the matrices pointing at them must no longer be used) and closes the file handle.</summary>
    public void Dispose()
    {
        _handle?.Dispose();
        _cache?.Dispose();
        _cache = null;
        foreach (nint p in _copies) NativeMemory.AlignedFree((void*)p);
        _copies.Clear();
    }
}
