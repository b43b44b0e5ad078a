using Cria.Numerics.Formats;
using Cria.Numerics.Kernels;
using Xunit;

namespace Cria.Tests.Numerics;

/// <summary>
/// <see cref="Q8BatchDot"/>, the Q8_0 kernel for two or more activation rows, on random blocks with
/// codes over the whole sbyte range (−128 included on both sides: the offset form maps it to 0):
/// <list type="number">
/// <item>the AVX-VNNI tile, on activations in offset form, returns the bits of the scalar twin on the
/// same activations in normal form, for every partial tile and strides wider than a row;</item>
/// <item>the offset form is its own inverse;</item>
/// <item>the scalar twin agrees with an exact reference: each block term d_w·d_a·S is exact in
/// double; the kernel rounds d_w·d_a once and each fused multiply-add once, so the test allows
/// (blocks + 2)·2⁻²⁴·Σ|t| (|S| ≤ 32·128² is exact in a float).</item>
/// </list>
/// </summary>
public unsafe class Q8BatchKernelTests
{
    private const int B = Q8_0Format.BlockBytes;

    public static TheoryData<int> BlockCounts => new() { 1, 2, 3, 7, 64 };

    private static byte[] RandomQ8Rows(Random rng, int rows, int blocks)
    {
        var a = new byte[rows * blocks * B];
        rng.NextBytes(a);
        for (int b = 0; b < rows * blocks; b++)
        {
            ushort d = Fp16Format.FromSingle((float)(rng.NextDouble() * 0.05 + 1e-3));
            a[b * B] = (byte)d; a[b * B + 1] = (byte)(d >> 8);
            if (rng.Next(5) == 0) for (int j = 0; j < 32; j++) a[b * B + 2 + j] = 0x80; // all −128
        }
        return a;
    }

    [SkippableTheory]
    [MemberData(nameof(BlockCounts))]
    public void TileOnOffsetFormEqualsScalarTwin_ForEveryPartialTile(int blocks)
    {
        Skip.IfNot(CpuFeatures.VnniTiles, "the tile needs AVX-VNNI, which this CPU lacks (its scalar twin is tested on its own)");
        var rng = new Random(7300 + blocks);
        const int R = Q8BatchDot.TileRows, C = Q8BatchDot.TileColumns;
        nint wStride = blocks * B + 5, aStride = blocks * B + 3;
        var w = TileCheck.Strided(RandomQ8Rows(rng, R, blocks), R, blocks * B, wStride);
        var a = TileCheck.Strided(RandomQ8Rows(rng, C, blocks), C, blocks * B, aStride);

        fixed (byte* pw = w)
        fixed (byte* pa = a)
        {
            var expected = new float[C, R];
            for (int c = 0; c < C; c++)
                for (int r = 0; r < R; r++)
                    expected[c, r] = Q8BatchDot.DotScalar(pw + r * wStride, pa + c * aStride, blocks);
            for (int c = 0; c < C; c++) Q8BatchDot.ToOffsetForm(pa + c * aStride, blocks);
            nint wp = (nint)pw, ap = (nint)pa;
            TileCheck.EveryPartialTileEquals(expected, (nRows, nCols, py, ys) => Q8BatchDot.Tile((byte*)wp, wStride, nRows, (byte*)ap, aStride, nCols, blocks, py, ys), $"blocks {blocks}");
        }
    }

    [Fact]
    public void OffsetFormFlipsEachCodeByOneTwentyEight_AndIsItsOwnInverse()
    {
        var rng = new Random(7301);
        var a = RandomQ8Rows(rng, 1, 5);
        var copy = (byte[])a.Clone();
        fixed (byte* pa = a)
        {
            Q8BatchDot.ToOffsetForm(pa, 5);
            for (int b = 0; b < 5; b++)
            {
                Assert.Equal(copy[b * B], a[b * B]);         // the scale is untouched
                Assert.Equal(copy[b * B + 1], a[b * B + 1]);
                for (int j = 0; j < 32; j++) Assert.Equal((sbyte)copy[b * B + 2 + j] + 128, a[b * B + 2 + j]);
            }
            Q8BatchDot.ToOffsetForm(pa, 5);
        }
        Assert.Equal(copy, a);
    }

    [Theory]
    [MemberData(nameof(BlockCounts))]
    public void ScalarTwinMatchesExactReference(int blocks)
    {
        var rng = new Random(8300 + blocks);
        for (int trial = 0; trial < 20; trial++)
        {
            var w = RandomQ8Rows(rng, 1, blocks);
            var a = RandomQ8Rows(rng, 1, blocks);
            double exact = 0, abs = 0;
            for (int i = 0; i < blocks; i++)
            {
                double dw = Fp16Format.ToSingle(BitConverter.ToUInt16(w, i * B)), da = Fp16Format.ToSingle(BitConverter.ToUInt16(a, i * B));
                long s = 0;
                for (int j = 0; j < 32; j++) s += (sbyte)w[i * B + 2 + j] * (sbyte)a[i * B + 2 + j];
                double t = dw * da * s;
                exact += t;
                abs += Math.Abs(t);
            }
            float got;
            fixed (byte* pw = w)
            fixed (byte* pa = a)
                got = Q8BatchDot.DotScalar(pw, pa, blocks);
            double tol = (blocks + 2) * Math.Pow(2, -24) * abs + 1e-30;
            Assert.True(Math.Abs(got - exact) <= tol, $"blocks {blocks}: {got:R} vs {exact:R} (tolerance {tol})");
        }
    }
}
