using System.Runtime.Intrinsics.X86;
using Cria.Numerics.Formats;
using Cria.Numerics.Kernels;
using Xunit;

namespace Cria.Tests.Numerics;

/// <summary>
/// <see cref="Q4BatchDot"/>, the Q4_0 kernel for two or more activation rows, on random blocks:
/// <list type="number">
/// <item>every vector path (AVX2 with 16-bit sums, and AVX-VNNI where the CPU has it) returns the
/// bits of the scalar twin, for every partial tile (1–8 weight rows, 1–8 activation rows) and
/// strides wider than a row;</item>
/// <item>the scalar twin agrees with an exact reference. Each block term t = d_w·d_a·S (halves times
/// an int below 2¹⁵: at most 37 significant bits) is exact in double, so the reference is exact to
/// double rounding. The kernel rounds d_w·d_a once (relative error ≤ u = 2⁻²⁴) and each fused
/// multiply-add once (≤ u·|partial sum| ≤ u·Σ|t|), so |error| ≤ (blocks + 1)·u·Σ|t| to first order;
/// the test allows (blocks + 2)·2⁻²⁴·Σ|t|.</item>
/// </list>
/// Activation bytes cover the whole sbyte range (−128 included: the 16-bit sums of the AVX2 path
/// must not saturate), weight codes all 16 nibbles.
/// </summary>
public unsafe class Q4BatchKernelTests
{
    public static TheoryData<int> BlockCounts => new() { 1, 2, 3, 7, 64, 176 };

    internal static byte[] RandomQ4Rows(Random rng, int rows, int blocks)
    {
        var w = new byte[rows * blocks * 18];
        for (int b = 0; b < rows * blocks; b++)
        {
            ushort d = Fp16Format.FromSingle((float)(rng.NextDouble() * 0.2 - 0.1));
            w[b * 18] = (byte)d; w[b * 18 + 1] = (byte)(d >> 8);
            for (int j = 0; j < 16; j++) w[b * 18 + 2 + j] = (byte)rng.Next(256);
        }
        return w;
    }

    internal static byte[] RandomQ8Rows(Random rng, int rows, int blocks)
    {
        var a = new byte[rows * blocks * 34];
        for (int b = 0; b < rows * blocks; b++)
        {
            ushort d = Fp16Format.FromSingle((float)(rng.NextDouble() * 0.05 + 1e-3));
            a[b * 34] = (byte)d; a[b * 34 + 1] = (byte)(d >> 8);
            for (int j = 0; j < 32; j++) a[b * 34 + 2 + j] = (byte)rng.Next(256);
            if (rng.Next(4) == 0) for (int j = 0; j < 32; j++) a[b * 34 + 2 + j] = 0x80; // all −128
        }
        return a;
    }

    /// <summary>Fills the activations' biases and returns the scalar twin's outputs for 8 weight rows × <paramref name="cols"/> activation rows.</summary>
    private static float[,] BiasAndScalarTile(byte* w, nint wStride, byte* a, nint aStride, int* bias, int cols, int blocks)
    {
        for (int c = 0; c < cols; c++) Q4BatchDot.ActivationBias(a + c * aStride, blocks, bias + c * blocks);
        var expected = new float[cols, 8];
        for (int c = 0; c < cols; c++)
            for (int r = 0; r < 8; r++)
                expected[c, r] = Q4BatchDot.DotScalar(w + r * wStride, a + c * aStride, blocks);
        return expected;
    }

    private delegate void TileFn(byte* w, nint wStride, int nRows, byte* a, nint aStride, int* bias, int nCols, int blocks, float* y, nint yStride);

    [SkippableTheory]
    [MemberData(nameof(BlockCounts))]
    public void VectorTilesEqualScalarTwin_ForEveryPartialTile(int blocks)
    {
        Skip.IfNot(Avx2.IsSupported && Fma.IsSupported, "the vector tiles need AVX2 and FMA, which this CPU lacks (the scalar twin is tested on its own)");
        var rng = new Random(7000 + blocks);
        const int C = Q4BatchDot.TileColumns;
        nint wStride = blocks * 18 + 5, aStride = blocks * 34 + 3; // strides wider than a row
        var w = TileCheck.Strided(RandomQ4Rows(rng, 8, blocks), 8, blocks * 18, wStride);
        var a = TileCheck.Strided(RandomQ8Rows(rng, C, blocks), C, blocks * 34, aStride);
        var bias = new int[C * blocks];

        var paths = new List<(string name, TileFn fn)> { ("AVX2", Q4BatchDot.Tile<Q4BatchDot.NoVnni>), ("dispatch", Q4BatchDot.TileAvx2) };
        if (AvxVnni.IsSupported) paths.Add(("AVX-VNNI", Q4BatchDot.Tile<Q4BatchDot.Vnni>));

        fixed (byte* pw = w)
        fixed (byte* pa = a)
        fixed (int* pb = bias)
        {
            var expected = BiasAndScalarTile(pw, wStride, pa, aStride, pb, C, blocks);
            nint wp = (nint)pw, ap = (nint)pa, bp = (nint)pb;
            foreach (var (name, fn) in paths)
                TileCheck.EveryPartialTileEquals(expected,
                    (nRows, nCols, py, ys) => fn((byte*)wp, wStride, nRows, (byte*)ap, aStride, (int*)bp, nCols, blocks, py, ys), $"{name} blocks {blocks}");
        }
    }

    /// <summary>
    /// Weight scales at the ends of the half range (subnormal, ±65504) must give the scalar twin's bits
    /// in every partial tile, and an infinity or NaN scale the same infinities and NaNs.
    /// </summary>
    [SkippableTheory]
    [InlineData(false)]
    [InlineData(true)]
    public void VectorTilesEqualScalarTwin_WithExtremeWeightScales(bool withInfinityAndNaN)
    {
        Skip.IfNot(Avx2.IsSupported && Fma.IsSupported, "the vector tiles need AVX2 and FMA, which this CPU lacks");
        var rng = new Random(7300);
        const int C = Q4BatchDot.TileColumns, blocks = 9;
        var w = RandomQ4Rows(rng, 8, blocks);
        ushort[] extremes = { 0x0001, 0x03FF, 0x8001, 0x7BFF, 0xFBFF, 0x0400, 0x3C00 };
        for (int b = 0; b < 8 * blocks; b++)
        {
            ushort d = extremes[rng.Next(extremes.Length)];
            w[b * 18] = (byte)d; w[b * 18 + 1] = (byte)(d >> 8);
        }
        if (withInfinityAndNaN)
        {
            w[(2 * blocks + 3) * 18 + 1] = 0x7C; w[(2 * blocks + 3) * 18] = 0x00; // +inf in row 2
            w[(6 * blocks + 5) * 18 + 1] = 0x7E; w[(6 * blocks + 5) * 18] = 0x01; // NaN in row 6
        }
        var a = RandomQ8Rows(rng, C, blocks);
        var bias = new int[C * blocks];
        nint wStride = blocks * 18, aStride = blocks * 34;
        fixed (byte* pw = w)
        fixed (byte* pa = a)
        fixed (int* pb = bias)
        {
            var expected = BiasAndScalarTile(pw, wStride, pa, aStride, pb, C, blocks);
            if (withInfinityAndNaN) Assert.True(float.IsNaN(expected[0, 6]) && !float.IsFinite(expected[0, 2]));
            nint wp = (nint)pw, ap = (nint)pa, bp = (nint)pb;
            TileCheck.EveryPartialTileEquals(expected,
                (nRows, nCols, py, ys) => Q4BatchDot.TileAvx2((byte*)wp, wStride, nRows, (byte*)ap, aStride, (int*)bp, nCols, blocks, py, ys), "extreme scales");
        }
    }

    [Theory]
    [MemberData(nameof(BlockCounts))]
    public void ScalarTwinMatchesExactReference(int blocks)
    {
        var rng = new Random(8000 + blocks);
        for (int trial = 0; trial < 20; trial++)
        {
            var w = RandomQ4Rows(rng, 1, blocks);
            var a = RandomQ8Rows(rng, 1, blocks);
            double exact = 0, abs = 0;
            for (int i = 0; i < blocks; i++)
            {
                double dw = Fp16Format.ToSingle(BitConverter.ToUInt16(w, i * 18));
                double da = Fp16Format.ToSingle(BitConverter.ToUInt16(a, i * 34));
                long s = 0;
                for (int j = 0; j < 16; j++)
                {
                    int q = w[i * 18 + 2 + j];
                    s += ((q & 0x0F) - 8) * (sbyte)a[i * 34 + 2 + j] + ((q >> 4) - 8) * (sbyte)a[i * 34 + 2 + j + 16];
                }
                double t = dw * da * s;
                exact += t; abs += Math.Abs(t);
            }
            float got;
            fixed (byte* pw = w)
            fixed (byte* pa = a)
                got = Q4BatchDot.DotScalar(pw, pa, blocks);
            double tol = (blocks + 2) * Math.Pow(2, -24) * abs + 1e-30;
            Assert.True(Math.Abs(got - exact) <= tol, $"blocks {blocks}: {got:R} vs {exact:R} (tolerance {tol})");
        }
    }

    [Fact]
    public void ActivationBiasIsMinusEightTimesBlockSum()
    {
        var rng = new Random(9000);
        var a = RandomQ8Rows(rng, 1, 5);
        var bias = new int[5];
        fixed (byte* pa = a)
        fixed (int* pb = bias)
            Q4BatchDot.ActivationBias(pa, 5, pb);
        for (int i = 0; i < 5; i++)
        {
            int s = 0;
            for (int j = 0; j < 32; j++) s += (sbyte)a[i * 34 + 2 + j];
            Assert.Equal(-8 * s, bias[i]);
        }
    }
}
