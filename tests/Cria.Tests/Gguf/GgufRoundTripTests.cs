using Cria.Gguf;
using Cria.Numerics;
using Xunit;

namespace Cria.Tests.Gguf;

public class GgufRoundTripTests
{
    private static byte[] WriteToBytes(GgufWriter w)
    {
        using var ms = new MemoryStream();
        w.WriteTo(ms);
        return ms.ToArray();
    }

    [Fact]
    public void EveryMetadataTypeSurvivesARoundTrip()
    {
        var w = new GgufWriter()
            .Set("u8", new GgufValue(GgufValueType.UInt8, (byte)200))
            .Set("i8", new GgufValue(GgufValueType.Int8, (sbyte)-100))
            .Set("u16", new GgufValue(GgufValueType.UInt16, (ushort)65000))
            .Set("i16", new GgufValue(GgufValueType.Int16, (short)-32000))
            .Set("u32", 4000000000u)
            .Set("i32", -2000000000)
            .Set("f32", 1.5f)
            .Set("bool", true)
            .Set("str", "héllo ▁ 🐱")
            .Set("u64", GgufValue.Of(ulong.MaxValue))
            .Set("i64", GgufValue.Of(long.MinValue))
            .Set("f64", GgufValue.Of(Math.PI))
            .Set("arr.str", GgufArray.Of(new[] { "a", "", "ü" }))
            .Set("arr.f32", GgufArray.Of(new[] { 1f, -2f }))
            .Set("arr.nested", GgufValue.Of(new GgufArray(GgufValueType.Array, new[]
            {
                GgufArray.Of(new[] { 1, 2, 3 }),
                new GgufArray(GgufValueType.Bool, new[] { true, false }),
            })));
        var data = new float[64];
        for (int i = 0; i < data.Length; i++) data[i] = i * 0.25f - 3;
        w.AddTensor("t.weight", data, new long[] { 16, 4 });
        w.AddTensor("h.weight", GgmlType.F16, new long[] { 8 }, new byte[16]);

        using var f = GgufFile.FromBytes(WriteToBytes(w));
        Assert.Equal(3u, f.Version);
        Assert.Equal((byte)200, f.Metadata["u8"].Value);
        Assert.Equal((sbyte)-100, f.Metadata["i8"].Value);
        Assert.Equal((ushort)65000, f.Metadata["u16"].Value);
        Assert.Equal((short)-32000, f.Metadata["i16"].Value);
        Assert.Equal(4000000000u, f.Metadata["u32"].Value);
        Assert.Equal(-2000000000, f.Metadata["i32"].Value);
        Assert.Equal(1.5f, f.Metadata["f32"].Value);
        Assert.Equal(true, f.Metadata["bool"].Value);
        Assert.Equal("héllo ▁ 🐱", f.GetString("str"));
        Assert.Equal(ulong.MaxValue, f.Metadata["u64"].Value);
        Assert.Equal(long.MinValue, f.Metadata["i64"].Value);
        Assert.Equal(Math.PI, f.Metadata["f64"].Value);
        Assert.Equal(new[] { "a", "", "ü" }, (string[])f.GetArray("arr.str")!.Items);
        Assert.Equal(new[] { 1f, -2f }, (float[])f.GetArray("arr.f32")!.Items);
        var nested = (GgufArray[])f.GetArray("arr.nested")!.Items;
        Assert.Equal(new[] { 1, 2, 3 }, (int[])nested[0].Items);
        Assert.Equal(new[] { true, false }, (bool[])nested[1].Items);
        Assert.Equal(new[] { "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "u64", "i64", "f64", "arr.str", "arr.f32", "arr.nested" },
            f.MetadataList.Select(kv => kv.Key));

        var t = f.GetTensor("t.weight");
        Assert.Equal(GgmlType.F32, t.Type);
        Assert.Equal(new long[] { 16, 4 }, t.Dimensions);
        Assert.Equal(0, (long)t.Offset % f.Alignment);
        Assert.Equal(0, f.DataOffset % f.Alignment);
        var back = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(f.GetTensorBytes(t)).ToArray();
        Assert.Equal(data, back);
        var h = f.GetTensor("h.weight");
        Assert.Equal(0, (long)h.Offset % f.Alignment);
        Assert.Equal(16, h.ByteSize);
    }

    [Fact]
    public void CustomAlignmentIsWrittenAndHonoured()
    {
        var w = new GgufWriter().Set("general.alignment", 64u);
        w.AddTensor("a", new float[3], new long[] { 3 });
        w.AddTensor("b", new float[5], new long[] { 5 });
        using var f = GgufFile.FromBytes(WriteToBytes(w));
        Assert.Equal(64u, f.Alignment);
        Assert.Equal(0, f.DataOffset % 64);
        Assert.Equal(64ul, f.GetTensor("b").Offset);
    }

    [SkippableFact]
    public void RewritingARealModelGivesIdenticalMetadataAndTensors()
    {
        string path = RefData.Require("stories260K/stories260K-q8_0.gguf");
        using var original = GgufFile.Open(path);
        var w = new GgufWriter().CopyMetadataFrom(original);
        foreach (var t in original.Tensors)
        {
            byte[] bytes = original.GetTensorBytes(t).ToArray();
            w.AddTensor(t.Name, t.Type, t.Dimensions, bytes);
        }
        string tmp = Path.Combine(Path.GetTempPath(), $"cria-rt-{Guid.NewGuid():N}.gguf");
        try
        {
            w.Write(tmp);
            using var copy = GgufFile.Open(tmp);
            Assert.Equal(original.MetadataList.Select(kv => kv.Key), copy.MetadataList.Select(kv => kv.Key));
            foreach (var kv in original.MetadataList)
                Assert.Equal(kv.Value.ToString(), copy.Metadata[kv.Key].ToString());
            Assert.Equal(original.Tensors.Count, copy.Tensors.Count);
            foreach (var t in original.Tensors)
            {
                var c = copy.GetTensor(t.Name);
                Assert.Equal(t.Type, c.Type);
                Assert.Equal(t.Dimensions, c.Dimensions);
                Assert.True(original.GetTensorBytes(t).SequenceEqual(copy.GetTensorBytes(c)), t.Name);
            }
            // llama.cpp's own file and Cria's rewrite have the same size: same layout rules.
            Assert.Equal(new FileInfo(path).Length, new FileInfo(tmp).Length);
        }
        finally
        {
            File.Delete(tmp);
        }
    }

    [Fact]
    public void WriteLeavesNoFileWhenATensorWriterFails()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"cria-w-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            string target = Path.Combine(dir, "out.gguf");
            File.WriteAllText(target, "precious");
            var w = new GgufWriter();
            w.AddTensor("x", GgmlType.F32, new long[] { 4 }, _ => throw new IOException("disk full"));
            Assert.Throws<IOException>(() => w.Write(target));
            Assert.Equal("precious", File.ReadAllText(target));
            Assert.Single(Directory.GetFiles(dir));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
