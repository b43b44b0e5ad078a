using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Cria.Numerics.Formats;
using Cria.Numerics.Kernels;
using Xunit;

namespace Cria.Tests.Numerics;

/// <summary>
/// Dot-product kernels: the vector paths against their scalar twins on random data, and both
/// against a double-precision reference.
/// <para>Vector vs scalar is compared <b>exactly</b>: the twins emulate the lanes, the reduction
/// order and the fused multiply-adds, so any difference is a bug.</para>
/// <para>Against float64 the tolerance is 1e-5 · Σ|wᵢ·aᵢ| (plus 1e-30 for all-zero rows): the
/// integer part of the quantized dots is exact, and the float accumulation of n terms has a
/// worst-case relative error of about n·2⁻²⁴ ≈ 6e-8·n of Σ|terms| — below 1e-5 for the lengths
/// used here (≤ 4101 elements / 128 blocks), while any real bug (a lost block, a wrong scale)
/// is far larger.</para>
/// </summary>
public unsafe class KernelTests
{
    public static TheoryData<int> Lengths => new() { 0, 1, 7, 31, 32, 33, 255, 4096 + 5 };
    public static TheoryData<int> BlockCounts => new() { 1, 2, 3, 7, 33, 128 };

    private static float[] RandomFloats(Random rng, int n, float scale = 1f)
    {
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)((rng.NextDouble() * 2 - 1) * scale * (rng.Next(8) == 0 ? 10 : 1));
        return a;
    }

    private static bool Same(float a, float b) =>
        BitConverter.SingleToInt32Bits(a) == BitConverter.SingleToInt32Bits(b) || (float.IsNaN(a) && float.IsNaN(b));

    // ------------------------------------------------------------ quantized dots

    private static byte[] RandomQ8Row(Random rng, int blocks)
    {
        var row = new byte[blocks * 34];
        for (int b = 0; b < blocks; b++)
        {
            ushort d = Fp16Format.FromSingle((float)(rng.NextDouble() * 0.02 + 1e-4));
            row[b * 34] = (byte)d; row[b * 34 + 1] = (byte)(d >> 8);
            for (int j = 0; j < 32; j++) row[b * 34 + 2 + j] = (byte)rng.Next(256); // includes -128
        }
        return row;
    }

    private static byte[] RandomQ4Row(Random rng, int blocks)
    {
        var row = new byte[blocks * 18];
        for (int b = 0; b < blocks; b++)
        {
            ushort d = Fp16Format.FromSingle((float)(rng.NextDouble() * 0.2 - 0.1));
            row[b * 18] = (byte)d; row[b * 18 + 1] = (byte)(d >> 8);
            for (int j = 0; j < 16; j++) row[b * 18 + 2 + j] = (byte)rng.Next(256);
        }
        return row;
    }

    private static byte[] QuantizedActivations(Random rng, int blocks)
    {
        var x = RandomFloats(rng, blocks * 32, 3f);
        var a = new byte[blocks * 34];
        Q8_0Format.QuantizeActivations(x, a);
        return a;
    }

    private static (double dot, double abs) Reference(byte[] w, bool q4, byte[] a, int blocks)
    {
        var wf = new float[blocks * 32];
        var af = new float[blocks * 32];
        if (q4) Q4_0Format.Dequantize(w, wf); else Q8_0Format.Dequantize(w, wf);
        Q8_0Format.Dequantize(a, af);
        double dot = 0, abs = 0;
        for (int i = 0; i < wf.Length; i++) { dot += (double)wf[i] * af[i]; abs += Math.Abs((double)wf[i] * af[i]); }
        return (dot, abs);
    }

    [Theory]
    [MemberData(nameof(BlockCounts))]
    public void QuantDots_VectorEqualsScalar_AndMatchesFloat64(int blocks)
    {
        var rng = new Random(1000 + blocks);
        for (int trial = 0; trial < 20; trial++)
        {
            var a = QuantizedActivations(rng, blocks);
            var w8 = RandomQ8Row(rng, blocks);
            var w4 = RandomQ4Row(rng, blocks);
            fixed (byte* pa = a)
            fixed (byte* p8 = w8)
            fixed (byte* p4 = w4)
            {
                float s8 = QuantDot.Q8_0Q8_0Scalar(p8, pa, blocks), s4 = QuantDot.Q4_0Q8_0Scalar(p4, pa, blocks);
                Assert.True(Same(s8, QuantDot.Q8_0Q8_0(p8, pa, blocks)));
                Assert.True(Same(s4, QuantDot.Q4_0Q8_0(p4, pa, blocks)));
                Assert.True(Same(s8, QuantDot.Q8_0Q8_0(w8, a, blocks * 32)));
                Assert.True(Same(s4, QuantDot.Q4_0Q8_0(w4, a, blocks * 32)));
                var (r8, abs8) = Reference(w8, false, a, blocks);
                var (r4, abs4) = Reference(w4, true, a, blocks);
                Assert.True(Math.Abs(s8 - r8) <= 1e-5 * abs8 + 1e-30, $"q8: {s8} vs {r8}");
                Assert.True(Math.Abs(s4 - r4) <= 1e-5 * abs4 + 1e-30, $"q4: {s4} vs {r4}");
            }
        }
    }

    [SkippableTheory]
    [MemberData(nameof(BlockCounts))]
    public void QuantTiles_EqualSingleDots(int blocks)
    {
        Skip.IfNot(CpuFeatures.Avx2Fma, "AVX2+FMA not available");
        var rng = new Random(2000 + blocks);
        var a = new byte[2][];
        for (int c = 0; c < 2; c++) a[c] = QuantizedActivations(rng, blocks);
        var act = a[0].Concat(a[1]).ToArray();
        var w8 = Enumerable.Range(0, 4).SelectMany(_ => RandomQ8Row(rng, blocks)).ToArray();
        var w4 = Enumerable.Range(0, 4).SelectMany(_ => RandomQ4Row(rng, blocks)).ToArray();
        fixed (byte* pa = act)
        fixed (byte* p8 = w8)
        fixed (byte* p4 = w4)
        {
            Check<Q8Weights>(p8, blocks * 34, pa);
            Check<Q4Weights>(p4, blocks * 18, pa);
        }

        void Check<TW>(byte* w, int wStride, byte* pa0) where TW : struct, IQ8Weights
        {
            int aStride = blocks * 34;
            var expected = new float[2, 4];
            for (int c = 0; c < 2; c++)
                for (int r = 0; r < 4; r++)
                    expected[c, r] = QuantDot.Dot1<TW>(w + r * wStride, pa0 + c * aStride, blocks);

            float* y = stackalloc float[8];
            QuantDot.Rows4Avx2<TW>(w, wStride, pa0, blocks, y);
            for (int r = 0; r < 4; r++) Assert.True(Same(expected[0, r], y[r]), $"rows4 r{r}");

            QuantDot.Tile2x2Avx2<TW>(w + wStride, wStride, pa0, aStride, blocks, y, 4);
            Assert.True(Same(expected[0, 1], y[0]) && Same(expected[0, 2], y[1]) && Same(expected[1, 1], y[4]) && Same(expected[1, 2], y[5]), "tile2x2");

            QuantDot.Tile1x2Avx2<TW>(w + 3 * wStride, pa0, aStride, blocks, y, 4);
            Assert.True(Same(expected[0, 3], y[0]) && Same(expected[1, 3], y[4]), "tile1x2");
        }
    }

    // ------------------------------------------------------------ float dots

    private static double Float64Dot(float[] x, float[] y, out double abs)
    {
        double d = 0; abs = 0;
        for (int i = 0; i < x.Length; i++) { d += (double)x[i] * y[i]; abs += Math.Abs((double)x[i] * y[i]); }
        return d;
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void F32Dot_AllPathsEqual_AndMatchFloat64(int n)
    {
        var rng = new Random(3000 + n);
        var x = RandomFloats(rng, n);
        var y = RandomFloats(rng, n);
        fixed (float* px = x)
        fixed (float* py = y)
        {
            float scalar = FloatDot.F32Scalar(px, py, n);
            Assert.True(Same(scalar, FloatDot.F32(px, py, n)));
            Assert.True(Same(scalar, FloatDot.F32Vector256(px, py, n)));
            Assert.True(Same(scalar, VectorOps.Dot(x, y)));
            double r = Float64Dot(x, y, out double abs);
            Assert.True(Math.Abs(scalar - r) <= 1e-5 * abs + 1e-30);
            if (n % 8 == 0)
            {
                float blocked = FloatDot.F32BlockedScalar(px, py, n);
                Assert.True(Same(blocked, FloatDot.F32Blocked(px, py, n)));
                Assert.True(Math.Abs(blocked - r) <= 1e-5 * abs + 1e-30);
            }
        }
    }

    [Theory]
    [InlineData(1, 8)]
    [InlineData(7, 64)]
    [InlineData(8, 512)]
    [InlineData(21, 40)]
    public void F32BlockedMany_EqualsOneDotAtATime(int count, int n)
    {
        var rng = new Random(count * 100 + n);
        const int pad = 3;
        var x = RandomFloats(rng, count * (n + pad));
        var y = RandomFloats(rng, n);
        var got = new float[count + 1];
        got[count] = float.NaN;
        fixed (float* px = x)
        fixed (float* py = y)
        fixed (float* pg = got)
        {
            FloatDot.F32BlockedMany(px, n + pad, count, py, n, pg);
            for (int k = 0; k < count; k++)
                Assert.True(Same(FloatDot.F32BlockedScalar(px + k * (n + pad), py, n), got[k]), $"row {k} of {count}, n {n}");
        }
        Assert.True(float.IsNaN(got[count]), "wrote past the outputs");
    }

    /// <summary>
    /// The register tile over several y rows (attention's query heads sharing a KV head): every
    /// output the scalar twin's bits, for row and column counts that leave partial tiles on both
    /// sides, strided inputs and outputs, and nothing written outside the outputs.
    /// </summary>
    [Theory]
    [InlineData(1, 1, 8)]
    [InlineData(4, 4, 64)]
    [InlineData(9, 8, 64)]
    [InlineData(13, 5, 72)]
    [InlineData(3, 4, 16)]
    public void F32BlockedTile_EqualsOneDotAtATime(int count, int m, int n)
    {
        var rng = new Random(count * 1000 + m * 10 + n);
        const int pad = 5, outStride = 17;
        int xStride = n + pad, yStride = n + 3;
        var x = RandomFloats(rng, count * xStride);
        var y = RandomFloats(rng, m * yStride);
        var got = new float[m * outStride + count];
        Array.Fill(got, float.NaN);
        fixed (float* px = x)
        fixed (float* py = y)
        fixed (float* pg = got)
        {
            FloatDot.F32BlockedTile(px, xStride, count, py, yStride, m, n, pg, outStride);
            for (int j = 0; j < m; j++)
                for (int k = 0; k < outStride; k++)
                {
                    if (k < count)
                        Assert.True(Same(FloatDot.F32BlockedScalar(px + k * xStride, py + j * yStride, n), pg[j * outStride + k]), $"x row {k}, y row {j}");
                    else
                        Assert.True(float.IsNaN(pg[j * outStride + k]), $"wrote past the outputs of y row {j}");
                }
        }
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void F16AndBF16Dots_VectorEqualsScalar(int n)
    {
        var rng = new Random(4000 + n);
        var wf = RandomFloats(rng, n);
        var h = wf.Select(Fp16Format.FromSingle).ToArray();
        var b = wf.Select(Bf16Format.FromSingle).ToArray();
        // Activations both as ggml prepares them (rounded to the weight format) and as raw floats.
        foreach (var y in new[] { RandomFloats(rng, n).Select(Fp16Format.Round).ToArray(), RandomFloats(rng, n) })
        {
            fixed (ushort* ph = h)
            fixed (ushort* pb = b)
            fixed (float* py = y)
            {
                float f16 = FloatDot.F16Scalar(ph, py, n);
                Assert.True(Same(f16, FloatDot.F16(ph, py, n)));
                float bf16 = FloatDot.BF16Scalar(pb, py, n);
                Assert.True(Same(bf16, FloatDot.BF16(pb, py, n)));
                if (n % 8 == 0)
                {
                    // blocked order: same as the F32 blocked dot of the widened weights
                    var hw = h.Select(Fp16Format.ToSingle).ToArray();
                    var bw = b.Select(Bf16Format.ToSingle).ToArray();
                    fixed (float* phw = hw)
                    fixed (float* pbw = bw)
                    {
                        Assert.True(Same(FloatDot.F32BlockedScalar(phw, py, n), FloatDot.F16Blocked(ph, py, n)));
                        Assert.True(Same(FloatDot.F32BlockedScalar(phw, py, n), FloatDot.F16BlockedScalar(ph, py, n)));
                        Assert.True(Same(FloatDot.F32BlockedScalar(pbw, py, n), FloatDot.BF16Blocked(pb, py, n)));
                    }
                }
                double r16 = Float64Dot(h.Select(Fp16Format.ToSingle).ToArray(), y, out double abs16);
                double rb = Float64Dot(b.Select(Bf16Format.ToSingle).ToArray(), y, out double absb);
                Assert.True(Math.Abs(f16 - r16) <= 1e-5 * abs16 + 1e-30);
                Assert.True(Math.Abs(bf16 - rb) <= 1e-5 * absb + 1e-30);
            }
        }
    }

    [Fact]
    public void F16Dot_InfinityAndNaNWeights_TakeTheExactPath()
    {
        var y = Enumerable.Repeat(1f, 64).ToArray();
        var h = new ushort[64];
        for (int i = 0; i < 64; i++) h[i] = Fp16Format.FromSingle(0.5f);
        fixed (ushort* ph = h)
        fixed (float* py = y)
        {
            h[5] = 0x7C00; // +inf
            Assert.Equal(float.PositiveInfinity, FloatDot.F16(ph, py, 64));
            h[5] = 0x7E01; // NaN
            Assert.True(float.IsNaN(FloatDot.F16(ph, py, 64)));
            h[5] = 0xFC00; // -inf: the check looks at the magnitude, whatever the sign
            Assert.Equal(float.NegativeInfinity, FloatDot.F16(ph, py, 64));
            h[5] = 0x7BFF; // 65504, largest finite
            Assert.Equal(FloatDot.F16Scalar(ph, py, 64), FloatDot.F16(ph, py, 64));
            h[5] = 0xFBFF; // -65504: finite, stays on the vector path with the same result
            Assert.Equal(FloatDot.F16Scalar(ph, py, 64), FloatDot.F16(ph, py, 64));
            // the blocked (tinyBLAS-order) dot checks the same way
            foreach (ushort special in new ushort[] { 0x7C00, 0xFC00, 0x7E01, 0x7BFF, 0xFBFF })
            {
                h[61] = special;
                float blocked = FloatDot.F16Blocked(ph, py, 64), reference = FloatDot.F16BlockedScalar(ph, py, 64);
                Assert.True(BitConverter.SingleToInt32Bits(reference) == BitConverter.SingleToInt32Bits(blocked) || float.IsNaN(reference) && float.IsNaN(blocked),
                    $"half 0x{special:X4}: {blocked:R} vs {reference:R}");
            }
        }
    }

    [SkippableFact]
    public void BlockedTiles_EqualBlockedDots()
    {
        Skip.IfNot(Fma.IsSupported, "FMA not available");
        var rng = new Random(5000);
        float* y = stackalloc float[12];
        foreach (int n in new[] { 8, 64, 200, 4096 })
        {
            var w = RandomFloats(rng, 4 * n);
            var a = RandomFloats(rng, 2 * n);
            fixed (float* pw = w)
            fixed (float* pa = a)
            {
                FloatDot.BlockedTile4x2(pw, n, pa, n, n, y, 6);
                for (int c = 0; c < 2; c++)
                    for (int r = 0; r < 4; r++)
                        Assert.True(Same(FloatDot.F32BlockedScalar(pw + r * n, pa + c * n, n), y[c * 6 + r]));
                FloatDot.BlockedTile4x1(pw, n, pa + n, n, y);
                for (int r = 0; r < 4; r++) Assert.True(Same(FloatDot.F32BlockedScalar(pw + r * n, pa + n, n), y[r]));
            }
        }
    }

    [SkippableFact]
    public void NibbleUnpack_GfniEqualsShiftAndMask_ForEveryByte()
    {
        Skip.IfNot(Avx2.IsSupported && Gfni.V256.IsSupported, "AVX2 or GFNI not available");
        // Every byte value in every one of the 16 positions, plus random blocks: each of the 32 outputs
        // must be the expected nibble, and both unpackers must agree byte for byte.
        byte* block = stackalloc byte[16];
        byte* got = stackalloc byte[32];
        var rng = new Random(6100);
        for (int round = 0; round < 256 + 200; round++)
        {
            for (int j = 0; j < 16; j++) block[j] = round < 256 ? (byte)(round + 37 * j) : (byte)rng.Next(256);
            Vector256<byte> gfni = LegacyDot.NibblesGfni(block), shift = LegacyDot.NibblesShift(block);
            Assert.Equal(shift, gfni);
            gfni.Store(got);
            for (int j = 0; j < 16; j++)
            {
                Assert.Equal(block[j] & 0x0F, got[j]);
                Assert.Equal(block[j] >> 4, got[16 + j]);
            }
        }
    }

    [Fact]
    public void CpuFeatures_DescribesAPath()
    {
        Assert.Contains(CpuFeatures.Describe(), new[] { "AVX2+FMA", "AVX2+FMA+VNNI", "Vector256", "scalar" });
        Assert.Equal(CpuFeatures.Describe(), CpuFeatures.KernelPath);
        Assert.Equal(Avx2.IsSupported && Fma.IsSupported, CpuFeatures.Avx2Fma);
        _ = Vector256.IsHardwareAccelerated;
    }
}
