using Cria.Numerics.Formats;
using Cria.Numerics.Kernels;
using Xunit;

namespace Cria.Tests.Numerics;

/// <summary>
/// <see cref="Q4KBatchDot"/>, the Q4_K kernel for two or more activation rows, on random super-blocks:
/// <list type="number">
/// <item>the AVX-VNNI tile returns the bits of the scalar twin for every partial tile (1–8 weight
/// rows, 1–8 activation rows) and strides wider than a row;</item>
/// <item>the scalar twin agrees with an exact reference. Per super-block the terms are
/// t = d_w·d_a·S and t' = dmin_w·d_a·M with exact integers S, M, exact in double. The kernel rounds
/// S and M to float (≤ u·|t| each, u = 2⁻²⁴), the products of the scales once, every fused
/// multiply-add once (≤ u·Σ|t| each) and the final difference once, so the test allows
/// (blocks + 5)·u·Σ(|t| + |t'|).</item>
/// </list>
/// Scales, mins and codes are random bytes (every 6-bit scale and 4-bit code occurs); activation
/// bytes cover the whole sbyte range, −128 included, with consistent block sums.
/// </summary>
public unsafe class Q4KBatchKernelTests
{
    private const int WB = Q4_KFormat.BlockBytes, AB = Q8_KFormat.BlockBytes;

    public static TheoryData<int> BlockCounts => new() { 1, 2, 3, 8, 22 };

    internal static byte[] RandomQ4KRows(Random rng, int rows, int blocks)
    {
        var w = new byte[rows * blocks * WB];
        rng.NextBytes(w);
        for (int b = 0; b < rows * blocks; b++)
        {
            ushort d = Fp16Format.FromSingle((float)(rng.NextDouble() * 0.02));
            ushort dmin = Fp16Format.FromSingle((float)(rng.NextDouble() * 0.02));
            w[b * WB] = (byte)d; w[b * WB + 1] = (byte)(d >> 8);
            w[b * WB + 2] = (byte)dmin; w[b * WB + 3] = (byte)(dmin >> 8);
        }
        return w;
    }

    internal static byte[] RandomQ8KRows(Random rng, int rows, int blocks)
    {
        var a = new byte[rows * blocks * AB];
        for (int b = 0; b < rows * blocks; b++)
        {
            int o = b * AB;
            BitConverter.TryWriteBytes(a.AsSpan(o, 4), (float)(rng.NextDouble() * 0.05 + 1e-3));
            bool extreme = rng.Next(4) == 0;
            for (int j = 0; j < 256; j++) a[o + 4 + j] = extreme ? (byte)0x80 : (byte)rng.Next(256);
            for (int k = 0; k < 16; k++)
            {
                int s = 0;
                for (int j = 0; j < 16; j++) s += (sbyte)a[o + 4 + 16 * k + j];
                BitConverter.TryWriteBytes(a.AsSpan(o + 260 + 2 * k, 2), (short)s);
            }
        }
        return a;
    }

    [SkippableTheory]
    [MemberData(nameof(BlockCounts))]
    public void TileEqualsScalarTwin_ForEveryPartialTile(int blocks)
    {
        Skip.IfNot(CpuFeatures.Avx2Fma, "the tile needs AVX2 and FMA, which this CPU lacks (its scalar twin is tested on its own)");
        var rng = new Random(7100 + blocks);
        const int rowPad = 5, colPad = 3;
        const int R = Q4KBatchDot.TileRows, C = Q4KBatchDot.TileColumns;
        nint wStride = blocks * WB + rowPad, aStride = blocks * AB + colPad;
        var w = TileCheck.Strided(RandomQ4KRows(rng, R, blocks), R, blocks * WB, wStride);
        var a = TileCheck.Strided(RandomQ8KRows(rng, C, blocks), C, blocks * AB, aStride);

        fixed (byte* pw = w)
        fixed (byte* pa = a)
        {
            var expected = new float[C, R];
            for (int c = 0; c < C; c++)
                for (int r = 0; r < R; r++)
                    expected[c, r] = Q4KBatchDot.DotScalar(pw + r * wStride, pa + c * aStride, blocks);
            nint wp = (nint)pw, ap = (nint)pa;
            // The AVX2 integer steps everywhere; the AVX-VNNI ones where the CPU has them.
            TileCheck.EveryPartialTileEquals(expected, (nRows, nCols, py, ys) => Q4KBatchDot.Tile<IntegerDots.NoVnni>((byte*)wp, wStride, nRows, (byte*)ap, aStride, nCols, blocks, py, ys), $"AVX2, blocks {blocks}");
            if (CpuFeatures.VnniTiles)
                TileCheck.EveryPartialTileEquals(expected, (nRows, nCols, py, ys) => Q4KBatchDot.Tile((byte*)wp, wStride, nRows, (byte*)ap, aStride, nCols, blocks, py, ys), $"AVX-VNNI, blocks {blocks}");
        }
    }

    [Theory]
    [MemberData(nameof(BlockCounts))]
    public void ScalarTwinMatchesExactReference(int blocks)
    {
        var rng = new Random(8100 + blocks);
        var codes = new byte[256];
        for (int trial = 0; trial < 20; trial++)
        {
            var w = RandomQ4KRows(rng, 1, blocks);
            var a = RandomQ8KRows(rng, 1, blocks);
            double exact = 0, abs = 0;
            fixed (byte* pw = w)
            fixed (byte* pc = codes)
            {
                for (int i = 0; i < blocks; i++)
                {
                    byte* wb = pw + i * WB;
                    double dw = Fp16Format.ToSingle(*(ushort*)wb), dmin = Fp16Format.ToSingle(*(ushort*)(wb + 2));
                    double da = BitConverter.ToSingle(a, i * AB);
                    long s = 0, m = 0;
                    for (int j = 0; j < 8; j++)
                    {
                        KQuantMath.ScaleMinK4(j, wb + 4, out int sc, out int mn);
                        for (int e = 0; e < 32; e++)
                        {
                            int q = wb[16 + 32 * (j / 2) + e];
                            int code = j % 2 == 0 ? q & 15 : q >> 4;
                            int x = (sbyte)a[i * AB + 4 + 32 * j + e];
                            s += (long)sc * code * x;
                            m += (long)mn * x;
                        }
                    }
                    double t = dw * da * s, t2 = dmin * da * m;
                    exact += t - t2;
                    abs += Math.Abs(t) + Math.Abs(t2);
                }
            }
            float got;
            fixed (byte* pw = w)
            fixed (byte* pa = a)
                got = Q4KBatchDot.DotScalar(pw, pa, blocks);
            double tol = (blocks + 5) * Math.Pow(2, -24) * abs + 1e-30;
            Assert.True(Math.Abs(got - exact) <= tol, $"blocks {blocks}: {got:R} vs {exact:R} (tolerance {tol})");
        }
    }
}
