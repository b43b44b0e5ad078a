using Cria.Numerics.Formats;
using Cria.Numerics.Kernels;
using Xunit;

namespace Cria.Tests.Numerics;

/// <summary>
/// <see cref="Q6KBatchDot"/>, the Q6_K kernel for two or more activation rows, on random super-blocks
/// (random low and high code bits, every signed 8-bit scale, −128 included):
/// <list type="number">
/// <item>the tile, with its AVX2 integer steps and (where the CPU has them) its AVX-VNNI ones, returns the
/// bits of the scalar twin for every partial tile and strides wider than a row, the largest codes and
/// activations included;</item>
/// <item>the scalar twin agrees with an exact reference: per super-block t = d_w·d_a·S with S exact;
/// the kernel rounds S to float, d_w·d_a once and each fused multiply-add once, so the test allows
/// (blocks + 3)·2⁻²⁴·Σ|t|.</item>
/// </list>
/// </summary>
public unsafe class Q6KBatchKernelTests
{
    private const int WB = Q6_KFormat.BlockBytes, AB = Q8_KFormat.BlockBytes;

    public static TheoryData<int> BlockCounts => new() { 1, 2, 3, 8, 22 };

    internal static byte[] RandomQ6KRows(Random rng, int rows, int blocks)
    {
        var w = new byte[rows * blocks * WB];
        rng.NextBytes(w);
        for (int b = 0; b < rows * blocks; b++)
        {
            ushort d = Fp16Format.FromSingle((float)(rng.NextDouble() * 0.002));
            w[b * WB + 208] = (byte)d; w[b * WB + 209] = (byte)(d >> 8);
        }
        return w;
    }

    [SkippableTheory]
    [MemberData(nameof(BlockCounts))]
    public void TileEqualsScalarTwin_ForEveryPartialTile(int blocks)
    {
        Skip.IfNot(CpuFeatures.Avx2Fma, "the tile needs AVX2 and FMA, which this CPU lacks (its scalar twin is tested on its own)");
        var rng = new Random(7200 + blocks);
        const int R = Q6KBatchDot.TileRows, C = Q6KBatchDot.TileColumns;
        TileEqualsScalarTwin(RandomQ6KRows(rng, R, blocks), Q4KBatchKernelTests.RandomQ8KRows(rng, C, blocks), blocks);
    }

    /// <summary>
    /// Every code 63 against every activation −128: the largest sums the AVX2 steps form as shorts (two vpmaddubsw
    /// pairs, 2 · 2 · 63 · 128 = 32256), which must not saturate.
    /// </summary>
    [SkippableFact]
    public void TileSumsTheLargestCodesAndActivationsExactly()
    {
        Skip.IfNot(CpuFeatures.Avx2Fma, "the tile needs AVX2 and FMA, which this CPU lacks");
        const int blocks = 3, R = Q6KBatchDot.TileRows, C = Q6KBatchDot.TileColumns;
        var rng = new Random(7300);
        var w = RandomQ6KRows(rng, R, blocks);
        for (int b = 0; b < R * blocks; b++) w.AsSpan(b * WB, 192).Fill(0xFF); // low and high code bits all set: code 63
        var a = Q4KBatchKernelTests.RandomQ8KRows(rng, C, blocks);
        for (int b = 0; b < C * blocks; b++)
        {
            a.AsSpan(b * AB + 4, 256).Fill(0x80);
            for (int k = 0; k < 16; k++) BitConverter.TryWriteBytes(a.AsSpan(b * AB + 260 + 2 * k, 2), (short)(16 * -128));
        }
        TileEqualsScalarTwin(w, a, blocks);
    }

    private static void TileEqualsScalarTwin(byte[] rows, byte[] activations, int blocks)
    {
        const int R = Q6KBatchDot.TileRows, C = Q6KBatchDot.TileColumns;
        nint wStride = blocks * WB + 7, aStride = blocks * AB + 3;
        var w = TileCheck.Strided(rows, R, blocks * WB, wStride);
        var a = TileCheck.Strided(activations, C, blocks * AB, aStride);
        fixed (byte* pw = w)
        fixed (byte* pa = a)
        {
            var expected = new float[C, R];
            for (int c = 0; c < C; c++)
                for (int r = 0; r < R; r++)
                    expected[c, r] = Q6KBatchDot.DotScalar(pw + r * wStride, pa + c * aStride, blocks);
            nint wp = (nint)pw, ap = (nint)pa;
            // The AVX2 integer steps everywhere; the AVX-VNNI ones where the CPU has them.
            TileCheck.EveryPartialTileEquals(expected, (nRows, nCols, py, ys) => Q6KBatchDot.Tile<IntegerDots.NoVnni>((byte*)wp, wStride, nRows, (byte*)ap, aStride, nCols, blocks, py, ys), $"AVX2, blocks {blocks}");
            if (CpuFeatures.VnniTiles)
                TileCheck.EveryPartialTileEquals(expected, (nRows, nCols, py, ys) => Q6KBatchDot.Tile((byte*)wp, wStride, nRows, (byte*)ap, aStride, nCols, blocks, py, ys), $"AVX-VNNI, blocks {blocks}");
        }
    }

    [Theory]
    [MemberData(nameof(BlockCounts))]
    public void ScalarTwinMatchesExactReference(int blocks)
    {
        var rng = new Random(8200 + blocks);
        for (int trial = 0; trial < 20; trial++)
        {
            var w = RandomQ6KRows(rng, 1, blocks);
            var a = Q4KBatchKernelTests.RandomQ8KRows(rng, 1, blocks);
            double exact = 0, abs = 0;
            for (int i = 0; i < blocks; i++)
            {
                int o = i * WB;
                long s = 0;
                for (int e = 0; e < 256; e++)
                {
                    // Element e: half h, position l in the half; code = 4 low bits | 2 high bits << 4, minus 32.
                    int h = e / 128, l = e % 128, t = l / 32, j = l % 32;
                    int lowByte = w[o + 64 * h + j + (t % 2 == 1 ? 32 : 0)];
                    int low = t < 2 ? lowByte & 15 : lowByte >> 4;
                    int hb = (w[o + 128 + 32 * h + j] >> (2 * t)) & 3;
                    int code = (low | (hb << 4)) - 32;
                    s += (long)(sbyte)w[o + 192 + e / 16] * code * (sbyte)a[i * AB + 4 + e];
                }
                double t2 = Fp16Format.ToSingle(BitConverter.ToUInt16(w, o + 208)) * (double)BitConverter.ToSingle(a, i * AB) * s;
                exact += t2;
                abs += Math.Abs(t2);
            }
            float got;
            fixed (byte* pw = w)
            fixed (byte* pa = a)
                got = Q6KBatchDot.DotScalar(pw, pa, blocks);
            double tol = (blocks + 3) * Math.Pow(2, -24) * abs + 1e-30;
            Assert.True(Math.Abs(got - exact) <= tol, $"blocks {blocks}: {got:R} vs {exact:R} (tolerance {tol})");
        }
    }
}
