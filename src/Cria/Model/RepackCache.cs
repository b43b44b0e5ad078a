using System.IO.MemoryMappedFiles;
using System.Security.Cryptography;
using System.Text;
using Cria.Gguf;
using Cria.Numerics;
using Cria.Numerics.Kernels;
using Microsoft.Win32.SafeHandles;

namespace Cria.Model;

/// <summary>What became of the repack cache during one load.</summary>
public enum RepackCacheState
{
    /// <summary>No cache directory was given (or nothing was repacked, or the model is not a file).</summary>
    Off,
    /// <summary>The repacked matrices were mapped from the cache file: nothing was repacked.</summary>
    Loaded,
    /// <summary>The matrices were repacked in memory and the cache file was written for later loads.</summary>
    Written,
    /// <summary>The matrices were repacked in memory; the cache file could not be written (the load itself succeeded).</summary>
    Failed,
}

/// <summary>
/// A file holding a model's matrices in their repacked layouts, so that later loads map them instead of repacking
/// (which costs about half a second per GB, almost all of it the kernel zeroing the fresh pages of the copy). The
/// process then holds one copy as before: the cache's pages, mapped read-only, instead of anonymous memory.
/// <para>
/// Layout: a header (magic, <see cref="FormatVersion"/>, the model file's length, last write time and a SHA-256 of
/// its GGUF header, one entry per matrix: name, type, shape, layout, offset and length of its bytes), a SHA-256 of that
/// header, then each matrix's bytes at a page-aligned offset. A file is used only when every one of these checks holds
/// and its length is exactly what the entries need; otherwise it is ignored and written again. A cache is written under
/// a temporary name and renamed into place, so a reader never sees half a file. The matrices' bytes themselves are not
/// checksummed (that would read the whole file at every load).
/// </para>
/// </summary>
internal sealed unsafe class RepackCache : IDisposable
{
    /// <summary>Bump whenever a repacked layout (<c>Q4_0x8</c>, <c>Q8_0x8</c>, <c>Q4_Kx8</c>, <c>Q6_Kx8</c>) or this file's layout changes.</summary>
    public const int FormatVersion = 1;

    private const int Alignment = 4096;
    private static ReadOnlySpan<byte> Magic => "CRIA-RPK"u8;

    /// <summary>
    /// What identifies the model file a cache was made from: its length, last write time (UTC ticks) and a SHA-256 of
    /// its GGUF header (metadata and tensor table, everything before the tensor data).
    /// </summary>
    public sealed record ModelStamp(long Length, long Time, byte[] HeaderHash)
    {
        /// <summary>The stamp of <paramref name="model"/>, whose header is read through <paramref name="handle"/> (not the mapping).</summary>
        public static ModelStamp Of(GgufFile model, SafeFileHandle handle)
        {
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            byte[] buffer = new byte[1 << 20];
            for (long offset = 0; offset < model.DataOffset;)
            {
                int n = RandomAccess.Read(handle, buffer.AsSpan(0, (int)Math.Min(buffer.Length, model.DataOffset - offset)), offset);
                if (n <= 0) throw new IOException("the model file ended inside its header");
                hash.AppendData(buffer, 0, n);
                offset += n;
            }
            return new ModelStamp(RandomAccess.GetLength(handle), File.GetLastWriteTimeUtc(model.Path!).Ticks, hash.GetHashAndReset());
        }
    }

    /// <summary>One matrix in the cache: <see cref="WeightLayout.Rows"/> with no bytes for a matrix kept in the file's rows.</summary>
    public readonly record struct Entry(string Name, GgmlType Type, int Rows, int Cols, WeightLayout Layout, long Offset, long Length);

    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private readonly byte* _base;
    private readonly Dictionary<string, Entry> _entries;

    private RepackCache(MemoryMappedFile map, MemoryMappedViewAccessor view, byte* @base, Dictionary<string, Entry> entries)
    {
        _map = map;
        _view = view;
        _base = @base;
        _entries = entries;
    }

    /// <summary>The cache file for <paramref name="modelPath"/> in <paramref name="directory"/>: the model's file name and a hash of its full path.</summary>
    public static string PathFor(string directory, string modelPath)
    {
        string full = System.IO.Path.GetFullPath(modelPath);
        string hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(full)).AsSpan(0, 8));
        return System.IO.Path.Combine(directory, $"{System.IO.Path.GetFileName(full)}.{hash}.cria-repack");
    }

    /// <summary>
    /// The cache at <paramref name="cachePath"/> when it exists and was made from <paramref name="model"/> as it is now;
    /// null otherwise, with the reason in <paramref name="why"/> (null when there is no file).
    /// </summary>
    public static RepackCache? TryOpen(string cachePath, ModelStamp model, out string? why)
    {
        why = null;
        if (!File.Exists(cachePath)) return null;
        MemoryMappedFile? map = null;
        MemoryMappedViewAccessor? view = null;
        bool acquired = false;
        try
        {
            long length = new FileInfo(cachePath).Length;
            if (length < Magic.Length + 8) { why = "the cache file is too short"; return null; }
            map = MemoryMappedFile.CreateFromFile(cachePath, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
            view = map.CreateViewAccessor(0, length, MemoryMappedFileAccess.Read);
            byte* p = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            acquired = true;
            p += view.PointerOffset;
            var entries = ReadHeader(p, length, model, out why);
            if (entries is null) return null;
            var cache = new RepackCache(map, view, p, entries);
            map = null; view = null; acquired = false;
            return cache;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            why = $"the cache file cannot be read ({e.Message})";
            return null;
        }
        finally
        {
            if (acquired) view!.SafeMemoryMappedViewHandle.ReleasePointer();
            view?.Dispose();
            map?.Dispose();
        }
    }

    /// <summary>
    /// The cached form of tensor <paramref name="name"/> whose plain matrix is <paramref name="plain"/> (itself when the
    /// cache kept it in rows); false when the cache has no entry of that type and shape, or one this CPU cannot run.
    /// </summary>
    public bool TryGet(string name, in WeightMatrix plain, out WeightMatrix matrix)
    {
        matrix = plain;
        if (!_entries.TryGetValue(name, out var e) || e.Type != plain.Type || e.Rows != plain.Rows || e.Cols != plain.Cols) return false;
        if (e.Layout == WeightLayout.Rows) return true;
        if (!WeightRepacker.CanRepack(plain)) return false; // e.g. Q4_K groups written on a CPU with AVX2 and FMA, read on one without
        matrix = new WeightMatrix(plain.Type, _base + e.Offset, plain.Rows, plain.Cols, e.Layout);
        return true;
    }

    /// <summary>
    /// Writes a cache of <paramref name="matrices"/> (repacked, or in <see cref="WeightLayout.Rows"/> for a matrix kept in the file's rows) for
    /// <paramref name="model"/> to <paramref name="cachePath"/>, through a temporary file renamed into place.
    /// Returns the bytes written.
    /// </summary>
    public static long Write(string cachePath, ModelStamp model, IReadOnlyList<(string Name, WeightMatrix Matrix)> matrices)
    {
        // The header's fields have fixed widths, so its length does not depend on the offsets it records: lay the data out
        // after a first rendering, then render it again with the offsets.
        var entries = matrices.Select(x => new Entry(x.Name, x.Matrix.Type, x.Matrix.Rows, x.Matrix.Cols, x.Matrix.Layout, 0,
            x.Matrix.Layout == WeightLayout.Rows ? 0 : x.Matrix.RowBytes * x.Matrix.Rows)).ToList();
        long offset = Align(WriteHeader(model, entries, 0).Length + SHA256.HashSizeInBytes);
        for (int i = 0; i < entries.Count; i++)
            if (entries[i].Length > 0)
            {
                entries[i] = entries[i] with { Offset = offset };
                offset = Align(offset + entries[i].Length);
            }
        byte[] header = WriteHeader(model, entries, offset);

        string directory = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(cachePath))!;
        Directory.CreateDirectory(directory);
        string temp = System.IO.Path.Combine(directory, $".{System.IO.Path.GetFileName(cachePath)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var handle = File.OpenHandle(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, FileOptions.None, preallocationSize: offset))
            {
                RandomAccess.Write(handle, header, 0);
                RandomAccess.Write(handle, SHA256.HashData(header), header.Length);
                for (int i = 0; i < entries.Count; i++)
                    if (entries[i].Length > 0) WriteAll(handle, matrices[i].Matrix.Data, entries[i].Length, entries[i].Offset);
                RandomAccess.SetLength(handle, offset);
                FlushToDisk(handle);
            }
            File.Move(temp, cachePath, overwrite: true);
            return offset;
        }
        catch
        {
            try { File.Delete(temp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    private static void WriteAll(SafeFileHandle handle, byte* src, long length, long offset)
    {
        const int Chunk = 1 << 26;
        while (length > 0)
        {
            int n = (int)Math.Min(length, Chunk);
            RandomAccess.Write(handle, new ReadOnlySpan<byte>(src, n), offset);
            src += n; offset += n; length -= n;
        }
    }

    /// <summary>
    /// Makes the bytes durable before the rename publishes them: after a crash the name must not point at a file whose
    /// header is whole but whose matrices are not (the matrices carry no checksum).
    /// </summary>
    private static void FlushToDisk(SafeFileHandle handle)
    {
        using var stream = new FileStream(handle, FileAccess.Write, bufferSize: 0);
        stream.Flush(flushToDisk: true);
    }

    private static long Align(long n) => (n + Alignment - 1) / Alignment * Alignment;

    private static byte[] WriteHeader(ModelStamp model, List<Entry> entries, long fileLength)
    {
        using var ms = new MemoryStream();
        using (var w = new BinaryWriter(ms, Encoding.UTF8, leaveOpen: true))
        {
            w.Write(Magic);
            w.Write(FormatVersion);
            w.Write(model.Length);
            w.Write(model.Time);
            w.Write(model.HeaderHash);
            w.Write(fileLength);
            w.Write(entries.Count);
            foreach (var e in entries)
            {
                w.Write(e.Name);
                w.Write((int)e.Type);
                w.Write(e.Rows);
                w.Write(e.Cols);
                w.Write((int)e.Layout);
                w.Write(e.Offset);
                w.Write(e.Length);
            }
        }
        return ms.ToArray();
    }

    private static Dictionary<string, Entry>? ReadHeader(byte* p, long fileLength, ModelStamp model, out string? why)
    {
        why = "the cache file's header is damaged";
        var file = new ReadOnlySpan<byte>(p, (int)Math.Min(fileLength, int.MaxValue));
        if (!file.StartsWith(Magic)) { why = "not a Cria repack cache"; return null; }
        int version = BitConverter.ToInt32(file[Magic.Length..]);
        if (version != FormatVersion) { why = $"the cache was written in format {version}, this Cria reads {FormatVersion}"; return null; }
        var entries = new Dictionary<string, Entry>(StringComparer.Ordinal);
        int headerLength;
        using (var ms = new UnmanagedMemoryStream(p, file.Length))
        using (var r = new BinaryReader(ms, Encoding.UTF8))
        {
            try
            {
                r.ReadBytes(Magic.Length + 4);
                long modelLength = r.ReadInt64(), modelTime = r.ReadInt64();
                byte[] modelHash = r.ReadBytes(SHA256.HashSizeInBytes);
                long expectedLength = r.ReadInt64();
                int count = r.ReadInt32();
                if (count < 0 || count > 1 << 20) return null;
                var list = new List<Entry>(count);
                for (int i = 0; i < count; i++)
                    list.Add(new Entry(r.ReadString(), (GgmlType)r.ReadInt32(), r.ReadInt32(), r.ReadInt32(), (WeightLayout)r.ReadInt32(), r.ReadInt64(), r.ReadInt64()));
                headerLength = checked((int)ms.Position);
                if (headerLength + SHA256.HashSizeInBytes > file.Length) return null;
                if (!SHA256.HashData(file[..headerLength]).AsSpan().SequenceEqual(file.Slice(headerLength, SHA256.HashSizeInBytes))) return null;
                if (expectedLength != fileLength) { why = $"the cache file is {fileLength} bytes long, its header says {expectedLength} (truncated?)"; return null; }
                if (modelLength != model.Length || modelTime != model.Time || !modelHash.AsSpan().SequenceEqual(model.HeaderHash))
                {
                    why = "the model file changed since the cache was written";
                    return null;
                }
                foreach (var e in list)
                {
                    if (!Plausible(e, headerLength + SHA256.HashSizeInBytes, fileLength)) return null;
                    if (!entries.TryAdd(e.Name, e)) return null;
                }
            }
            catch (EndOfStreamException) { return null; }
            catch (FormatException) { return null; } // a string's length prefix or bytes are not valid
            catch (OverflowException) { return null; }
        }
        why = null;
        return entries;
    }

    /// <summary>An entry whose bytes lie inside the file after the header, aligned, and as long as its matrix in its layout.</summary>
    private static bool Plausible(in Entry e, long dataStart, long fileLength)
    {
        if (e.Rows <= 0 || e.Cols <= 0 || e.Rows % 8 != 0 || !GgmlTypeInfo.IsKnown(e.Type) || e.Cols % GgmlTypeInfo.BlockSize(e.Type) != 0) return false;
        if (e.Layout == WeightLayout.Rows) return e.Length == 0;
        if (e.Layout != WeightRepacker.GroupLayout(e.Type)) return false;
        long length = GgmlTypeInfo.RowBytes(e.Type, e.Cols) * e.Rows; // a group is as large as the rows it holds
        return e.Length == length && e.Offset >= dataStart && e.Offset % Alignment == 0 && e.Offset <= fileLength - length;
    }

    public void Dispose()
    {
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _map.Dispose();
    }
}
