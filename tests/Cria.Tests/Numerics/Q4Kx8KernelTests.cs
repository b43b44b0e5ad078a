using System.Runtime.Intrinsics.X86;
using Cria.Numerics.Formats;
using Cria.Numerics.Kernels;
using Xunit;

namespace Cria.Tests.Numerics;

/// <summary>
/// Q4_K repacked into eight-row groups (<see cref="Q4_Kx8Format"/>) and its tile (<see cref="Q4Kx8Dot"/>), on random
/// super-blocks whose d and dmin include subnormal halves: repacking is lossless; the tile gives, for every number
/// of activation rows (1..16), the bits of <see cref="Q4KBatchDot.DotScalar"/> on the plain rows (the order
/// Q4KBatchKernelTests checks against an exact reference).
/// </summary>
public unsafe class Q4Kx8KernelTests
{
    private const int WB = Q4_KFormat.BlockBytes;

    public static TheoryData<int> BlockCounts => new() { 1, 2, 3, 8, 22 };

    /// <summary>Eight random Q4_K rows, a quarter of their d and dmin replaced by subnormal halves.</summary>
    private static byte[] RandomRows(Random rng, int blocks)
    {
        byte[] w = Q4KBatchKernelTests.RandomQ4KRows(rng, 8, blocks);
        for (int b = 0; b < 8 * blocks; b++)
            for (int h = 0; h < 2; h++)
                if (rng.Next(4) == 0)
                {
                    ushort d = (ushort)rng.Next(1, 0x400);
                    w[b * WB + 2 * h] = (byte)d; w[b * WB + 2 * h + 1] = (byte)(d >> 8);
                }
        return w;
    }

    [Theory]
    [MemberData(nameof(BlockCounts))]
    public void Repack_IsLossless(int blocks)
    {
        var rng = new Random(8600 + blocks);
        nint stride = blocks * WB + 9;
        byte[] plain = RandomRows(rng, blocks);
        byte[] strided = TileCheck.Strided(plain, 8, blocks * WB, stride);
        var g = new byte[blocks * Q4_Kx8Format.BlockBytes];
        var row = new byte[blocks * WB];
        var expected = new float[blocks * 256];
        var got = new float[blocks * 256];
        fixed (byte* src = strided)
        fixed (byte* pg = g)
        fixed (byte* pr = row)
        fixed (float* pgot = got)
        {
            Assert.True(Q4_Kx8Format.Repack(src, stride, pg, blocks));
            for (int r = 0; r < 8; r++)
            {
                Q4_Kx8Format.UnpackRow(pg, r, pr, blocks);
                Assert.Equal(plain.AsSpan(r * blocks * WB, blocks * WB).ToArray(), row);
                Q4_KFormat.Dequantize(plain.AsSpan(r * blocks * WB, blocks * WB), expected);
                Q4_Kx8Format.DequantizeRow(pg, r, pgot, blocks);
                Assert.Equal(expected, got);
            }
        }
    }

    [Theory]
    [InlineData(0, 0x7C00)] // d = +infinity
    [InlineData(2, 0x7E00)] // dmin = NaN
    public void Repack_ReportsScalesTheKernelCannotConvert(int at, int half)
    {
        var rng = new Random(8700);
        byte[] plain = Q4KBatchKernelTests.RandomQ4KRows(rng, 8, 3);
        int o = (5 * 3 + 1) * WB + at; // row 5, super-block 1
        plain[o] = (byte)half; plain[o + 1] = (byte)(half >> 8);
        var g = new byte[3 * Q4_Kx8Format.BlockBytes];
        fixed (byte* src = plain)
        fixed (byte* dst = g)
            Assert.False(Q4_Kx8Format.Repack(src, 3 * WB, dst, 3));
    }

    [SkippableTheory]
    [MemberData(nameof(BlockCounts))]
    public void Tile_EqualsBatchOrderOnThePlainRows_ForEveryColumnCount(int blocks)
    {
        Skip.IfNot(CpuFeatures.Avx2Fma, "the Q4_K tiles need AVX2 and FMA, which this CPU lacks");
        var rng = new Random(8800 + blocks);
        const int C = Q4KBatchDot.TileColumns;
        nint aStride = blocks * Q8_KFormat.BlockBytes + 5;
        byte[] plain = RandomRows(rng, blocks);
        byte[] a = TileCheck.Strided(Q4KBatchKernelTests.RandomQ8KRows(rng, C, blocks), C, blocks * Q8_KFormat.BlockBytes, aStride);
        var g = new byte[blocks * Q4_Kx8Format.BlockBytes];
        var expected = new float[C, 8];
        var twin = new float[8];
        fixed (byte* pp = plain)
        fixed (byte* pg = g)
        fixed (byte* pa = a)
        fixed (float* pt = twin)
        {
            Assert.True(Q4_Kx8Format.Repack(pp, blocks * WB, pg, blocks));
            for (int c = 0; c < C; c++)
            {
                Q4Kx8Dot.GroupScalar(pg, pa + c * aStride, blocks, pt);
                for (int r = 0; r < 8; r++)
                {
                    expected[c, r] = Q4KBatchDot.DotScalar(pp + r * blocks * WB, pa + c * aStride, blocks);
                    Assert.Equal(BitConverter.SingleToInt32Bits(expected[c, r]), BitConverter.SingleToInt32Bits(twin[r]));
                }
            }
            byte* gp = pg, ap = pa;
            TileCheck.EveryPartialTileEquals(expected, (nRows, nCols, y, yStride) => Q4Kx8Dot.Tile(gp, ap, aStride, nCols, blocks, y, yStride),
                "Q4_Kx8 tile (dispatch)", fewestRows: 8);
            TileCheck.EveryPartialTileEquals(expected, (nRows, nCols, y, yStride) => Q4Kx8Dot.Tile<IntegerDots.NoVnni>(gp, ap, aStride, nCols, blocks, y, yStride),
                "Q4_Kx8 tile (AVX2)", fewestRows: 8);
            if (AvxVnni.IsSupported)
                TileCheck.EveryPartialTileEquals(expected, (nRows, nCols, y, yStride) => Q4Kx8Dot.Tile<IntegerDots.Vnni>(gp, ap, aStride, nCols, blocks, y, yStride),
                    "Q4_Kx8 tile (AVX-VNNI)", fewestRows: 8);
        }
    }
    /// <summary>
    /// Decode's one-column kernel gives, for each activation row on its own, the bits of <see cref="Q4KBatchDot.DotScalar"/> on the
    /// plain rows — the same as the tile, so a prompt and a decode step agree.
    /// </summary>
    [SkippableTheory]
    [MemberData(nameof(BlockCounts))]
    public void Group_EqualsBatchOrderOnThePlainRows(int blocks)
    {
        Skip.IfNot(CpuFeatures.Avx2Fma, "the Q4_K group kernel needs AVX2 and FMA, which this CPU lacks");
        var rng = new Random(8900 + blocks);
        const int C = 6;
        int aBytes = blocks * Q8_KFormat.BlockBytes;
        byte[] plain = RandomRows(rng, blocks);
        byte[] a = Q4KBatchKernelTests.RandomQ8KRows(rng, C, blocks);
        var g = new byte[blocks * Q4_Kx8Format.BlockBytes];
        var y = new float[8];
        fixed (byte* pp = plain)
        fixed (byte* pg = g)
        fixed (byte* pa = a)
        fixed (float* py = y)
        {
            Assert.True(Q4_Kx8Format.Repack(pp, blocks * WB, pg, blocks));
            byte* gp = pg;
            float* yp = py;
            for (int c = 0; c < C; c++)
            {
                byte* x = pa + c * aBytes;
                var kernels = new List<(string Name, Action Run)>
                {
                    ("dispatch", () => Q4Kx8Dot.Group(gp, x, blocks, yp)),
                    ("AVX2", () => Q4Kx8Dot.Group<IntegerDots.NoVnni>(gp, x, blocks, yp)),
                };
                if (AvxVnni.IsSupported) kernels.Add(("AVX-VNNI", () => Q4Kx8Dot.Group<IntegerDots.Vnni>(gp, x, blocks, yp)));
                foreach (var (name, run) in kernels)
                {
                    Array.Fill(y, float.NaN);
                    run();
                    for (int r = 0; r < 8; r++)
                    {
                        float expected = Q4KBatchDot.DotScalar(pp + r * blocks * WB, x, blocks);
                        Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(y[r]),
                            $"{name}: row {r}, activation row {c}: {y[r]:R} instead of {expected:R}");
                    }
                }
            }
        }
    }
}
