using System.Buffers.Binary;
using System.Text;
using Cria.Gguf;
using Cria.Numerics;
using Xunit;

namespace Cria.Tests.Gguf;

/// <summary>
/// Malformed files must end in one GgufFormatException with a message, never another exception,
/// a crash, a hang or an allocation sized by garbage.
/// </summary>
public class GgufMalformedInputTests
{
    private static byte[] SmallModel()
    {
        var w = new GgufWriter()
            .Set("general.architecture", "llama")
            .Set("tokenizer.ggml.tokens", GgufArray.Of(new[] { "<unk>", "<s>", "</s>", "a" }))
            .Set("tokenizer.ggml.scores", GgufArray.Of(new[] { 0f, 0f, 0f, -1f }));
        w.AddTensor("a.weight", new float[32], new long[] { 32 });
        w.AddTensor("b.weight", GgmlType.F16, new long[] { 32, 2 }, new byte[128]);
        using var ms = new MemoryStream();
        w.WriteTo(ms);
        return ms.ToArray();
    }

    private static void AssertRejected(byte[] bytes, string? messagePart = null)
    {
        var e = Assert.Throws<GgufFormatException>(() => { using var f = GgufFile.FromBytes(bytes); });
        Assert.False(string.IsNullOrWhiteSpace(e.Message));
        if (messagePart != null) Assert.Contains(messagePart, e.Message);
    }

    [Fact]
    public void EveryTruncationIsRejected()
    {
        byte[] full = SmallModel();
        using (GgufFile.FromBytes(full)) { }
        for (int len = 0; len < full.Length; len++)
        {
            // Truncation inside trailing zero padding of the last tensor may still be complete.
            byte[] cut = full[..len];
            try
            {
                using var f = GgufFile.FromBytes(cut);
                long needed = f.DataOffset + f.Tensors.Max(t => (long)t.Offset + t.ByteSize);
                Assert.True(needed <= len, $"length {len} accepted but data needs {needed}");
            }
            catch (GgufFormatException) { }
        }
    }

    [SkippableFact]
    public void EveryTruncationOfARealModelIsRejected()
    {
        byte[] full = File.ReadAllBytes(RefData.Require("stories260K/stories260K-q4_0.gguf"));
        using var good = GgufFile.FromBytes(full);
        long needed = good.DataOffset + good.Tensors.Max(t => (long)t.Offset + t.ByteSize);
        var lengths = Enumerable.Range(0, (int)good.DataOffset + 64).Concat(new[] { (int)needed - 1, full.Length / 2 });
        foreach (int len in lengths)
        {
            if (len >= needed) continue;
            AssertRejected(full[..len]);
        }
    }

    [SkippableFact]
    public void CorruptingEveryHeaderByteNeverCrashes()
    {
        byte[] full = File.ReadAllBytes(RefData.Require("stories260K/stories260K-q8_0.gguf"));
        using var good = GgufFile.FromBytes(full);
        var rng = new Random(1234);
        // Every byte of the header, set to a few hostile values: either parses or throws GgufFormatException.
        int headerEnd = (int)good.DataOffset;
        byte[] hostile = { 0x00, 0xFF, 0x7F, 0x80 };
        for (int i = 0; i < headerEnd; i += (i < 4096 ? 1 : 7))
        {
            foreach (byte v in hostile.Append((byte)rng.Next(256)))
            {
                byte[] b = (byte[])full.Clone();
                b[i] = v;
                try { using var f = GgufFile.FromBytes(b); }
                catch (GgufFormatException) { }
                catch (ArgumentException e) { Assert.Fail($"byte {i} = {v}: {e.GetType().Name}: {e.Message}"); }
            }
        }
    }

    /// <summary>
    /// A rejected image's pinning handle is freed exactly once. Freed twice, the handle table hands its slot out twice,
    /// so a later owner's handle can be freed under it: its array is then neither pinned nor rooted, and whatever still
    /// reads it through a pointer reads memory the collector has given to something else (a test parsing a converted
    /// tokenizer saw its bytes change under it, once in dozens of suite runs).
    /// </summary>
    [Fact]
    public void RejectedImage_FreesItsPinningHandleOnce()
    {
        byte[] bad = SmallModel()[..40]; // truncated inside the metadata
        for (int round = 0; round < 200; round++)
        {
            Assert.Throws<GgufFormatException>(() => GgufFile.FromBytes(bad));
            object first = new byte[16], second = new byte[16];
            var h1 = System.Runtime.InteropServices.GCHandle.Alloc(first, System.Runtime.InteropServices.GCHandleType.Pinned);
            var h2 = System.Runtime.InteropServices.GCHandle.Alloc(second, System.Runtime.InteropServices.GCHandleType.Pinned);
            bool shared = System.Runtime.InteropServices.GCHandle.ToIntPtr(h1) == System.Runtime.InteropServices.GCHandle.ToIntPtr(h2);
            try
            {
                Assert.False(shared, $"round {round}: two live handles share one slot (a handle was freed twice)");
                Assert.Same(first, h1.Target);
                Assert.Same(second, h2.Target);
            }
            finally
            {
                h2.Free();
                if (!shared) h1.Free();
            }
        }
    }

    [Fact]
    public void BadMagicIsRejected()
    {
        byte[] b = SmallModel();
        b[0] = (byte)'X';
        AssertRejected(b, "not a GGUF file");
    }

    [Theory]
    [InlineData(1u, "version 1")]
    [InlineData(4u, "unsupported GGUF version 4")]
    [InlineData(0xFFFFFFFFu, "unsupported GGUF version")]
    public void UnknownVersionsAreRejected(uint version, string message)
    {
        byte[] b = SmallModel();
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4), version);
        AssertRejected(b, message);
    }

    [Fact]
    public void Version2IsRead()
    {
        byte[] b = SmallModel();
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4), 2);
        using var f = GgufFile.FromBytes(b);
        Assert.Equal(2u, f.Version);
        Assert.Equal(2, f.Tensors.Count);
    }

    [Fact]
    public void AbsurdCountsAreRejectedWithoutAllocating()
    {
        byte[] b = SmallModel();
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(8), ulong.MaxValue);
        AssertRejected(b, "tensor count");
        b = SmallModel();
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(16), 1UL << 40);
        AssertRejected(b, "metadata count");
    }

    /// <summary>Builds a header by hand so single fields can be made hostile.</summary>
    private sealed class Raw
    {
        private readonly MemoryStream _ms = new();
        private readonly BinaryWriter _w;
        public Raw(ulong tensors, ulong kvs) { _w = new BinaryWriter(_ms); _w.Write(GgufFile.Magic); _w.Write(3u); _w.Write(tensors); _w.Write(kvs); }
        public Raw Str(string s) { var b = Encoding.UTF8.GetBytes(s); _w.Write((ulong)b.Length); _w.Write(b); return this; }
        public Raw U32(uint v) { _w.Write(v); return this; }
        public Raw U64(ulong v) { _w.Write(v); return this; }
        public Raw Bytes(int n) { _w.Write(new byte[n]); return this; }
        public byte[] ToArray() { _w.Flush(); return _ms.ToArray(); }
    }

    [Fact]
    public void StringLengthPastTheEndIsRejected()
    {
        var b = new Raw(0, 1).U64(1UL << 50).Bytes(32).ToArray();
        AssertRejected(b, "claims");
        b = new Raw(0, 1).Str("k").U32((uint)GgufValueType.String).U64(ulong.MaxValue).Bytes(8).ToArray();
        AssertRejected(b);
    }

    [Fact]
    public void ArrayCountPastTheEndIsRejected()
    {
        var b = new Raw(0, 1).Str("k").U32((uint)GgufValueType.Array).U32((uint)GgufValueType.UInt64).U64(1UL << 60).Bytes(16).ToArray();
        AssertRejected(b, "elements");
        b = new Raw(0, 1).Str("k").U32((uint)GgufValueType.Array).U32((uint)GgufValueType.String).U64(int.MaxValue).Bytes(64).ToArray();
        AssertRejected(b);
    }

    [Fact]
    public void DeeplyNestedArraysAreRejected()
    {
        var r = new Raw(0, 1).Str("k").U32((uint)GgufValueType.Array);
        for (int i = 0; i < 100; i++) r.U32((uint)GgufValueType.Array).U64(1);
        r.U32((uint)GgufValueType.UInt8).U64(0);
        AssertRejected(r.ToArray(), "deep");
    }

    [Fact]
    public void UnknownValueTypeIsRejected()
    {
        AssertRejected(new Raw(0, 1).Str("k").U32(99).Bytes(8).ToArray(), "unknown value type");
    }

    [Fact]
    public void BadBoolIsRejected()
    {
        AssertRejected(new Raw(0, 1).Str("k").U32((uint)GgufValueType.Bool).Bytes(1).ToArray().Select((x, i) => i == 36 ? (byte)2 : x).ToArray());
    }

    [Fact]
    public void DuplicateKeysAreRejected()
    {
        var b = new Raw(0, 2).Str("k").U32((uint)GgufValueType.UInt32).U32(1).Str("k").U32((uint)GgufValueType.UInt32).U32(2).ToArray();
        AssertRejected(b, "duplicate metadata key");
    }

    private static Raw Tensor(Raw r, string name, uint type, ulong offset, params ulong[] dims)
    {
        r.Str(name).U32((uint)dims.Length);
        foreach (var d in dims) r.U64(d);
        return r.U32(type).U64(offset);
    }

    private static byte[] WithData(Raw r, int dataBytes)
    {
        var head = r.ToArray();
        int start = (head.Length + 31) / 32 * 32;
        var b = new byte[start + dataBytes];
        head.CopyTo(b, 0);
        return b;
    }

    [Fact]
    public void UnknownTensorTypeIsRejected()
    {
        AssertRejected(WithData(Tensor(new Raw(1, 0), "t", 77, 0, 32), 256), "unknown ggml type 77");
    }

    [Fact]
    public void TensorOffsetPastTheEndIsRejected()
    {
        AssertRejected(WithData(Tensor(new Raw(1, 0), "t", 0, 1UL << 62, 32), 256), "past the end");
        AssertRejected(WithData(Tensor(new Raw(1, 0), "t", 0, 0, 64), 128), "past the end");
    }

    [Fact]
    public void MisalignedTensorOffsetIsRejected()
    {
        AssertRejected(WithData(Tensor(new Raw(1, 0), "t", 0, 4, 8), 256), "not aligned");
    }

    [Fact]
    public void DuplicateTensorNamesAreRejected()
    {
        var r = Tensor(Tensor(new Raw(2, 0), "t", 0, 0, 8), "t", 0, 32, 8);
        AssertRejected(WithData(r, 256), "duplicate tensor name");
    }

    [Fact]
    public void BadDimensionsAreRejected()
    {
        AssertRejected(WithData(Tensor(new Raw(1, 0), "t", 0, 0, 0), 256), "dimension");
        AssertRejected(WithData(Tensor(new Raw(1, 0), "t", 0, 0, 1, 1, 1, 1, 1), 256), "dimensions");
        AssertRejected(WithData(Tensor(new Raw(1, 0), "t", 0, 0, 1UL << 40, 1UL << 40), 256));
        // Q4_0 rows must be whole 32-element blocks.
        AssertRejected(WithData(Tensor(new Raw(1, 0), "t", (uint)GgmlType.Q4_0, 0, 33), 256), "block size");
    }

    [Fact]
    public void BadAlignmentIsRejected()
    {
        var b = new Raw(0, 1).Str("general.alignment").U32((uint)GgufValueType.UInt32).U32(24).ToArray();
        AssertRejected(b, "power of two");
    }

    [Fact]
    public void MissingFileGivesFileNotFound()
    {
        Assert.Throws<FileNotFoundException>(() => GgufFile.Open("/nonexistent/model.gguf"));
    }

    [Fact]
    public void TinyFileIsRejected()
    {
        string tmp = Path.GetTempFileName();
        try
        {
            File.WriteAllText(tmp, "hello");
            Assert.Throws<GgufFormatException>(() => GgufFile.Open(tmp));
        }
        finally { File.Delete(tmp); }
    }
}
