using Cria.Numerics;
using Xunit;

namespace Cria.Tests.Numerics;

public class GgmlTypeTests
{
    [Theory]
    [InlineData(GgmlType.F32, 0, "f32", 1, 4)]
    [InlineData(GgmlType.F16, 1, "f16", 1, 2)]
    [InlineData(GgmlType.Q4_0, 2, "q4_0", 32, 18)]
    [InlineData(GgmlType.Q4_1, 3, "q4_1", 32, 20)]
    [InlineData(GgmlType.Q5_0, 6, "q5_0", 32, 22)]
    [InlineData(GgmlType.Q5_1, 7, "q5_1", 32, 24)]
    [InlineData(GgmlType.Q8_0, 8, "q8_0", 32, 34)]
    [InlineData(GgmlType.Q8_1, 9, "q8_1", 32, 36)]
    [InlineData(GgmlType.Q2_K, 10, "q2_K", 256, 84)]
    [InlineData(GgmlType.Q3_K, 11, "q3_K", 256, 110)]
    [InlineData(GgmlType.Q4_K, 12, "q4_K", 256, 144)]
    [InlineData(GgmlType.Q5_K, 13, "q5_K", 256, 176)]
    [InlineData(GgmlType.Q6_K, 14, "q6_K", 256, 210)]
    [InlineData(GgmlType.Q8_K, 15, "q8_K", 256, 292)]
    [InlineData(GgmlType.IQ2_XXS, 16, "iq2_xxs", 256, 66)]
    [InlineData(GgmlType.IQ2_XS, 17, "iq2_xs", 256, 74)]
    [InlineData(GgmlType.IQ3_XXS, 18, "iq3_xxs", 256, 98)]
    [InlineData(GgmlType.IQ1_S, 19, "iq1_s", 256, 50)]
    [InlineData(GgmlType.IQ4_NL, 20, "iq4_nl", 32, 18)]
    [InlineData(GgmlType.IQ3_S, 21, "iq3_s", 256, 110)]
    [InlineData(GgmlType.IQ2_S, 22, "iq2_s", 256, 82)]
    [InlineData(GgmlType.IQ4_XS, 23, "iq4_xs", 256, 136)]
    [InlineData(GgmlType.I8, 24, "i8", 1, 1)]
    [InlineData(GgmlType.I16, 25, "i16", 1, 2)]
    [InlineData(GgmlType.I32, 26, "i32", 1, 4)]
    [InlineData(GgmlType.I64, 27, "i64", 1, 8)]
    [InlineData(GgmlType.F64, 28, "f64", 1, 8)]
    [InlineData(GgmlType.IQ1_M, 29, "iq1_m", 256, 56)]
    [InlineData(GgmlType.BF16, 30, "bf16", 1, 2)]
    [InlineData(GgmlType.TQ1_0, 34, "tq1_0", 256, 54)]
    [InlineData(GgmlType.TQ2_0, 35, "tq2_0", 256, 66)]
    public void Table_MatchesGgml(GgmlType type, int id, string name, int blockSize, int blockBytes)
    {
        Assert.Equal(id, (int)type);
        Assert.True(GgmlTypeInfo.IsKnown(type));
        Assert.Equal(name, GgmlTypeInfo.Name(type));
        Assert.Equal(blockSize, GgmlTypeInfo.BlockSize(type));
        Assert.Equal(blockBytes, GgmlTypeInfo.BlockBytes(type));
        Assert.True(GgmlTypeInfo.TryParse(name, out var parsed));
        Assert.Equal(type, parsed);
        Assert.True(GgmlTypeInfo.TryParse(name.ToUpperInvariant(), out parsed));
        Assert.Equal(type, parsed);
        Assert.Equal(3L * blockBytes, GgmlTypeInfo.RowBytes(type, 3L * blockSize));
    }

    [Theory]
    [InlineData(4u)]
    [InlineData(5u)]
    [InlineData(31u)]
    [InlineData(32u)]
    [InlineData(33u)]
    [InlineData(36u)]
    [InlineData(39u)]
    [InlineData(1000u)]
    public void RetiredOrUnknownIds_AreNotKnown(uint id)
    {
        var t = (GgmlType)id;
        Assert.False(GgmlTypeInfo.IsKnown(t));
        Assert.Throws<ArgumentException>(() => GgmlTypeInfo.BlockSize(t));
        Assert.Throws<ArgumentException>(() => GgmlTypeInfo.BlockBytes(t));
        Assert.Throws<ArgumentException>(() => GgmlTypeInfo.RowBytes(t, 32));
        Assert.Equal($"unknown({id})", GgmlTypeInfo.Name(t));
        Assert.False(GgmlTypeInfo.CanCompute(t));
    }

    [Fact]
    public void RowBytes_RejectsPartialBlocksAndNegativeCounts()
    {
        Assert.Throws<ArgumentException>(() => GgmlTypeInfo.RowBytes(GgmlType.Q8_0, 33));
        Assert.Throws<ArgumentException>(() => GgmlTypeInfo.RowBytes(GgmlType.Q4_K, 128));
        Assert.ThrowsAny<ArgumentException>(() => GgmlTypeInfo.RowBytes(GgmlType.F32, -1));
        Assert.Equal(0, GgmlTypeInfo.RowBytes(GgmlType.Q8_0, 0));
        Assert.Equal(172L * 2, GgmlTypeInfo.RowBytes(GgmlType.F16, 172));
    }

    [Fact]
    public void TryParse_RejectsUnknownNames()
    {
        Assert.False(GgmlTypeInfo.TryParse("q4_2", out _));
        Assert.False(GgmlTypeInfo.TryParse("", out _));
        Assert.False(GgmlTypeInfo.TryParse("float", out _));
    }

    [Fact]
    public void CanCompute_IsTheSupportedTypes()
    {
        var computable = Enum.GetValues<GgmlType>().Where(GgmlTypeInfo.CanCompute).ToHashSet();
        Assert.Equal(new HashSet<GgmlType>
        {
            GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0, GgmlType.Q4_0,
            GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K,
            GgmlType.IQ4_NL, GgmlType.IQ4_XS,
        }, computable);
    }
}
