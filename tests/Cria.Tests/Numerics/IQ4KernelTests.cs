using Cria.Numerics;
using Cria.Numerics.Formats;
using Cria.Numerics.Kernels;
using Cria.Numerics.Threading;
using Xunit;

namespace Cria.Tests.Numerics;

/// <summary>
/// IQ4_NL / IQ4_XS kernels beyond the reference vectors: vector paths equal their scalar twins
/// (including an odd IQ4_NL block count, which takes ggml's scalar tail), both are close to a
/// float64 dot of the decoded values, and MatMul uses ggml's order by batch size — vec_dot (two
/// accumulators) for one activation row, tinyBLAS (one accumulator) for several.
/// </summary>
public unsafe class IQ4KernelTests
{
    private static float[] RandomFloats(Random rng, int n, double scale)
    {
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)((rng.NextDouble() * 2 - 1) * scale * (rng.Next(16) == 0 ? 8 : 1));
        return x;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(5)]
    [InlineData(16)]
    public void IQ4_NL_VectorEqualsScalar_AndMatchesFloat64(int blocks)
    {
        var rng = new Random(1000 + blocks);
        int n = blocks * 32;
        for (int trial = 0; trial < 8; trial++)
        {
            var w = new byte[blocks * IQ4_NLFormat.BlockBytes];
            IQ4_NLFormat.Quantize(RandomFloats(rng, n, 0.05), w);
            var a = new byte[blocks * Q8_0Format.BlockBytes];
            Q8_0Format.QuantizeActivations(RandomFloats(rng, n, 1), a);
            var wd = new float[n];
            var ad = new float[n];
            IQ4_NLFormat.Dequantize(w, wd);
            Q8_0Format.Dequantize(a, ad);
            double exact = 0, mag = 0;
            for (int i = 0; i < n; i++) { exact += (double)wd[i] * ad[i]; mag += Math.Abs((double)wd[i] * ad[i]); }
            fixed (byte* pw = w)
            fixed (byte* pa = a)
            {
                float vec = IQ4Dot.IQ4_NLQ8_0(pw, pa, blocks);
                float vecScalar = IQ4Dot.NlVecDotScalar(pw, pa, blocks);
                float tiny = IQ4Dot.IQ4_NLQ8_0Tiny(pw, pa, blocks);
                float tinyScalar = IQ4Dot.IQ4_NLQ8_0TinyScalar(pw, pa, blocks);
                Assert.Equal(BitConverter.SingleToInt32Bits(vecScalar), BitConverter.SingleToInt32Bits(vec));
                Assert.Equal(BitConverter.SingleToInt32Bits(tinyScalar), BitConverter.SingleToInt32Bits(tiny));
                Assert.True(Math.Abs(vec - exact) <= 1e-5 * mag + 1e-30, $"vec_dot {vec} vs {exact}");
                Assert.True(Math.Abs(tiny - exact) <= 1e-5 * mag + 1e-30, $"tinyBLAS {tiny} vs {exact}");
            }
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void IQ4_XS_VectorEqualsScalar_AndMatchesFloat64(int blocks)
    {
        var rng = new Random(2000 + blocks);
        int n = blocks * 256;
        for (int trial = 0; trial < 8; trial++)
        {
            var w = new byte[blocks * IQ4_XSFormat.BlockBytes];
            IQ4_XSFormat.Quantize(RandomFloats(rng, n, 0.05), w);
            var a = new byte[blocks * Q8_KFormat.BlockBytes];
            Q8_KFormat.Quantize(RandomFloats(rng, n, 1), a);
            var wd = new float[n];
            var ad = new float[n];
            IQ4_XSFormat.Dequantize(w, wd);
            Q8_KFormat.Dequantize(a, ad);
            double exact = 0, mag = 0;
            for (int i = 0; i < n; i++) { exact += (double)wd[i] * ad[i]; mag += Math.Abs((double)wd[i] * ad[i]); }
            fixed (byte* pw = w)
            fixed (byte* pa = a)
            {
                float vec = IQ4Dot.IQ4_XSQ8_K(pw, pa, blocks);
                float scalar = IQ4Dot.IQ4_XSQ8_KScalar(pw, pa, blocks);
                Assert.Equal(BitConverter.SingleToInt32Bits(scalar), BitConverter.SingleToInt32Bits(vec));
                Assert.True(Math.Abs(vec - exact) <= 1e-5 * mag + 1e-30, $"{vec} vs {exact}");
            }
        }
    }

    [Theory]
    [InlineData(GgmlType.IQ4_NL, 6, 64, 1)]
    [InlineData(GgmlType.IQ4_NL, 37, 160, 1)]
    [InlineData(GgmlType.IQ4_NL, 37, 160, 3)]
    [InlineData(GgmlType.IQ4_NL, 64, 64, 8)]
    [InlineData(GgmlType.IQ4_XS, 9, 256, 1)]
    [InlineData(GgmlType.IQ4_XS, 9, 512, 4)]
    public void MatMul_UsesGgmlsOrderForTheBatchSize(GgmlType type, int rows, int cols, int batch)
    {
        var rng = new Random(rows * 131 + cols * 7 + batch);
        int bs = GgmlTypeInfo.BlockSize(type);
        long rowBytes = GgmlTypeInfo.RowBytes(type, cols);
        var w = new byte[rows * rowBytes];
        for (int r = 0; r < rows; r++)
        {
            var span = w.AsSpan((int)(r * rowBytes), (int)rowBytes);
            if (type == GgmlType.IQ4_NL) IQ4_NLFormat.Quantize(RandomFloats(rng, cols, 0.05), span);
            else IQ4_XSFormat.Quantize(RandomFloats(rng, cols, 0.05), span);
        }
        var x = RandomFloats(rng, batch * cols, 1);
        var y = new float[batch * rows];
        foreach (int threads in new[] { 1, 2 })
        {
            using var pool = new WorkerPool(threads);
            using var mm = new MatMul(pool);
            fixed (byte* pw = w)
            fixed (float* px = x)
            fixed (float* py = y)
            {
                var m = new WeightMatrix(type, pw, rows, cols);
                mm.Multiply(m, px, batch, py);
                int actBlock = type == GgmlType.IQ4_NL ? 32 : 256;
                int actBytes = type == GgmlType.IQ4_NL ? Q8_0Format.BlockBytes : Q8_KFormat.BlockBytes;
                var act = new byte[cols / actBlock * actBytes];
                for (int b = 0; b < batch; b++)
                {
                    if (type == GgmlType.IQ4_NL) Q8_0Format.QuantizeActivations(x.AsSpan(b * cols, cols), act);
                    else Q8_KFormat.Quantize(x.AsSpan(b * cols, cols), act);
                    fixed (byte* pa = act)
                    {
                        for (int r = 0; r < rows; r++)
                        {
                            byte* wr = pw + r * rowBytes;
                            float expected = type == GgmlType.IQ4_XS ? IQ4Dot.IQ4_XSQ8_K(wr, pa, cols / bs)
                                : batch == 1 ? IQ4Dot.IQ4_NLQ8_0(wr, pa, cols / bs)
                                : IQ4Dot.IQ4_NLQ8_0Tiny(wr, pa, cols / bs);
                            Assert.Equal(BitConverter.SingleToInt32Bits(expected), BitConverter.SingleToInt32Bits(y[b * rows + r]));
                        }
                    }
                }
            }
        }
        // GetRow decodes exactly like Dequantize.
        var row = new float[cols];
        var expectedRow = new float[cols];
        fixed (byte* pw = w)
        {
            var m = new WeightMatrix(type, pw, rows, cols);
            MatMul.GetRow(m, rows - 1, row);
        }
        var last = w.AsSpan((int)((rows - 1) * rowBytes), (int)rowBytes);
        if (type == GgmlType.IQ4_NL) IQ4_NLFormat.Dequantize(last, expectedRow);
        else IQ4_XSFormat.Dequantize(last, expectedRow);
        Assert.Equal(expectedRow, row);
    }

    [Fact]
    public void VecDotAndTinyBlas_CanDiffer_SoTheOrderMatters()
    {
        // Not a requirement of ggml, but a check that the two orders are really distinct paths:
        // over many random rows at least one pair of results differs in the last bit.
        var rng = new Random(7);
        int blocks = 8, n = 256, differ = 0;
        for (int trial = 0; trial < 200 && differ == 0; trial++)
        {
            var w = new byte[blocks * IQ4_NLFormat.BlockBytes];
            IQ4_NLFormat.Quantize(RandomFloats(rng, n, 0.05), w);
            var a = new byte[blocks * Q8_0Format.BlockBytes];
            Q8_0Format.QuantizeActivations(RandomFloats(rng, n, 1), a);
            fixed (byte* pw = w)
            fixed (byte* pa = a)
                if (IQ4Dot.IQ4_NLQ8_0(pw, pa, blocks) != IQ4Dot.IQ4_NLQ8_0Tiny(pw, pa, blocks)) differ++;
        }
        Assert.True(differ > 0);
    }
}

/// <summary>The vectorised level search equals ggml's binary search everywhere that matters.</summary>
public class IQ4BestIndexTests
{
    [Fact]
    public void BestIndex_EqualsBinarySearch()
    {
        var rng = new Random(3);
        var values = new List<float> { float.NaN, float.PositiveInfinity, float.NegativeInfinity, 0f, -0f, 1e-30f, -1e-30f };
        ReadOnlySpan<sbyte> v = Cria.Numerics.Formats.IQ4_NLFormat.Values;
        for (int i = 0; i < 16; i++)
        {
            values.Add(v[i]);
            values.Add(MathF.BitIncrement(v[i]));
            values.Add(MathF.BitDecrement(v[i]));
            if (i < 15)
            {
                float mid = (v[i] + v[i + 1]) / 2f;
                values.Add(mid); values.Add(MathF.BitIncrement(mid)); values.Add(MathF.BitDecrement(mid));
            }
        }
        for (int i = 0; i < 100_000; i++) values.Add((float)((rng.NextDouble() * 2 - 1) * 160));
        foreach (float x in values)
            Assert.True(Cria.Numerics.Formats.IQ4Encoder.BestIndexSearch(x) == Cria.Numerics.Formats.IQ4Encoder.BestIndex(x), $"x = {x:R}");
    }
}
