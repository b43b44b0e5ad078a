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
/// </summary>
internal sealed unsafe class WeightRepacker : IDisposable
{
    /// <summary>Bytes read per task (whole groups): large reads, small per-thread buffers.</summary>
    private const int ChunkBytes = 1 << 20;

    private readonly GgufFile _file;
    private readonly SafeFileHandle? _handle; // null for a file image held in memory
    private readonly int _threads;
    private readonly List<nint> _copies = [];

    public WeightRepacker(GgufFile file, int threads)
    {
        _file = file;
        _threads = Math.Max(1, threads);
        if (file.Path is not null) _handle = File.OpenHandle(file.Path, FileMode.Open, FileAccess.Read, FileShare.Read);
    }

    /// <summary>Bytes of weights repacked so far.</summary>
    public long RepackedBytes { get; private set; }

    /// <summary>
    /// True when <paramref name="m"/> can be repacked: Q4_0, Q8_0, or Q4_K and Q6_K on CPUs with AVX2 and FMA (their kernels
    /// have no portable path), with a row count that is a multiple of 8.
    /// </summary>
    public static bool CanRepack(in WeightMatrix m) =>
        (m.Type is GgmlType.Q4_0 or GgmlType.Q8_0 || m.Type is GgmlType.Q4_K or GgmlType.Q6_K && CpuFeatures.Avx2Fma)
        && m.Layout == WeightLayout.Rows && m.Rows > 0 && m.Rows % 8 == 0 && m.Cols > 0;

    /// <summary>The repacked copy of tensor <paramref name="tensor"/> (whose plain matrix is <paramref name="m"/>), or <paramref name="m"/> itself when it cannot be repacked.</summary>
    public WeightMatrix Repack(GgufTensorInfo tensor, in WeightMatrix m)
    {
        if (!CanRepack(m)) return m;
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
        var layout = type switch
        {
            GgmlType.Q4_0 => WeightLayout.Q4_0x8, GgmlType.Q4_K => WeightLayout.Q4_Kx8, GgmlType.Q6_K => WeightLayout.Q6_Kx8, _ => WeightLayout.Q8_0x8,
        };
        return new WeightMatrix(type, dst, m.Rows, m.Cols, layout);
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

    /// <summary>Closes the file handle used for reading (loading is over); the copies stay until <see cref="Dispose"/>.</summary>
    public void CloseFile() => _handle?.Dispose();

    /// <summary>Frees every repacked copy (the matrices pointing at them must no longer be used) and closes the file handle.</summary>
    public void Dispose()
    {
        _handle?.Dispose();
        foreach (nint p in _copies) NativeMemory.AlignedFree((void*)p);
        _copies.Clear();
    }
}
