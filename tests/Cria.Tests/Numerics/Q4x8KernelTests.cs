using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using Cria.Numerics;
using Cria.Numerics.Formats;
using Cria.Numerics.Kernels;
using Xunit;

namespace Cria.Tests.Numerics;

/// <summary>
/// Q4_0 repacked into eight-row groups (<see cref="Q4_0x8Format"/>) and its kernels (<see cref="Q4x8Dot"/>), on random
/// blocks whose scales include subnormal halves:
/// <list type="number">
/// <item>repacking is lossless: every row unpacks to its original bytes and dequantizes to the same floats;</item>
/// <item>the scalar twin of the group kernel gives, for each of the eight rows, the bits of <see cref="Q4BatchDot.DotScalar"/>
/// on the plain row (the same order of arithmetic, which Q4BatchKernelTests checks against an exact reference);</item>
/// <item>every vector path of the decode kernel and of the 8 × 8 tile gives the scalar twin's bits, the tile for
/// every partial number of activation rows.</item>
/// </list>
/// </summary>
public unsafe class Q4x8KernelTests
{
    public static TheoryData<int> BlockCounts => new() { 1, 2, 3, 7, 64, 176 };

    /// <summary>Eight random Q4_0 rows, a quarter of their scales replaced by subnormal halves.</summary>
    private static byte[] RandomRows(Random rng, int blocks)
    {
        byte[] w = Q4BatchKernelTests.RandomQ4Rows(rng, 8, blocks);
        for (int b = 0; b < 8 * blocks; b++)
            if (rng.Next(4) == 0)
            {
                ushort d = (ushort)(rng.Next(1, 0x400) | (rng.Next(2) << 15)); // exponent 0, fraction ≠ 0
                w[b * 18] = (byte)d; w[b * 18 + 1] = (byte)(d >> 8);
            }
        return w;
    }

    private static byte[] Repacked(byte[] rows, int blocks)
    {
        var g = new byte[blocks * Q4_0x8Format.BlockBytes];
        fixed (byte* src = rows)
        fixed (byte* dst = g)
            Assert.True(Q4_0x8Format.Repack(src, blocks * 18, dst, blocks), "finite scales must repack");
        return g;
    }

    [Theory]
    [MemberData(nameof(BlockCounts))]
    public void Repack_IsLossless(int blocks) =>
        RepackCheck.IsLossless(RandomRows(new Random(8100 + blocks), blocks), blocks, 18, Q4_0x8Format.BlockBytes,
            Q4_0x8Format.Repack, Q4_0x8Format.UnpackRow);

    [Theory]
    [InlineData(0x7C00)] // +infinity
    [InlineData(0xFC00)] // −infinity
    [InlineData(0x7E00)] // NaN
    public void Repack_ReportsScalesTheKernelsCannotConvert(int scale) =>
        RepackCheck.RejectsScale(Q4BatchKernelTests.RandomQ4Rows(new Random(8200), 8, 5), 5, 18, Q4_0x8Format.BlockBytes,
            row: 3, block: 2, offset: 0, scale, Q4_0x8Format.Repack);

    [Theory]
    [MemberData(nameof(BlockCounts))]
    public void GroupScalar_EqualsBatchOrderOnEachPlainRow(int blocks)
    {
        var rng = new Random(8300 + blocks);
        byte[] plain = RandomRows(rng, blocks);
        byte[] g = Repacked(plain, blocks);
        byte[] a = Q4BatchKernelTests.RandomQ8Rows(rng, 1, blocks);
        var y = new float[8];
        fixed (byte* pp = plain)
        fixed (byte* pg = g)
        fixed (byte* pa = a)
        fixed (float* py = y)
        {
            Q4x8Dot.GroupScalar(pg, pa, blocks, py);
            for (int r = 0; r < 8; r++)
            {
                float expected = Q4BatchDot.DotScalar(pp + r * blocks * 18, pa, blocks);
                Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(y[r]), $"row {r}: {y[r]:R}, expected {expected:R}");
            }
        }
    }

    private delegate void GroupFn(byte* g, byte* a, int* bias, int blocks, float* y);

    [SkippableTheory]
    [MemberData(nameof(BlockCounts))]
    public void VectorGroupKernels_EqualScalarTwin(int blocks)
    {
        Skip.IfNot(Avx2.IsSupported && Fma.IsSupported, "the vector kernels need AVX2 and FMA, which this CPU lacks (the scalar twin is tested on its own)");
        var rng = new Random(8400 + blocks);
        byte[] g = Repacked(RandomRows(rng, blocks), blocks);
        byte[] a = Q4BatchKernelTests.RandomQ8Rows(rng, 1, blocks);
        var paths = new List<(string, GroupFn)> { ("AVX2", Q4x8Dot.Group<Q4BatchDot.NoVnni>), ("dispatch", Q4x8Dot.GroupAvx2) };
        if (AvxVnni.IsSupported) paths.Add(("AVX-VNNI", Q4x8Dot.Group<Q4BatchDot.Vnni>));
        var expected = new float[8];
        var bias = new int[blocks];
        fixed (byte* pg = g)
        fixed (byte* pa = a)
        fixed (int* pb = bias)
        fixed (float* pe = expected)
        {
            Q4BatchDot.ActivationBias(pa, blocks, pb);
            Q4x8Dot.GroupScalar(pg, pa, blocks, pe);
            foreach (var (name, fn) in paths)
            {
                var y = new float[8];
                fixed (float* py = y) fn(pg, pa, pb, blocks, py);
                for (int r = 0; r < 8; r++)
                    Assert.True(BitConverter.SingleToInt32Bits(expected[r]) == BitConverter.SingleToInt32Bits(y[r]), $"{name}, row {r}: {y[r]:R}, expected {expected[r]:R}");
            }
        }
    }

    private delegate void TileFn(byte* g, byte* a, nint aStride, int* bias, int nCols, int blocks, float* y, nint yStride);

    [SkippableTheory]
    [MemberData(nameof(BlockCounts))]
    public void VectorTiles_EqualScalarTwin_ForEveryPartialTile(int blocks)
    {
        Skip.IfNot(Avx2.IsSupported && Fma.IsSupported, "the vector tiles need AVX2 and FMA, which this CPU lacks (the scalar twin is tested on its own)");
        var rng = new Random(8500 + blocks);
        const int C = Q4BatchDot.TileColumns;
        nint aStride = blocks * 34 + 3;
        byte[] g = Repacked(RandomRows(rng, blocks), blocks);
        byte[] a = TileCheck.Strided(Q4BatchKernelTests.RandomQ8Rows(rng, C, blocks), C, blocks * 34, aStride);
        var bias = new int[C * blocks];
        var paths = new List<(string, TileFn)> { ("AVX2", Q4x8Dot.Tile<Q4BatchDot.NoVnni>), ("dispatch", Q4x8Dot.TileAvx2) };
        if (AvxVnni.IsSupported) paths.Add(("AVX-VNNI", Q4x8Dot.Tile<Q4BatchDot.Vnni>));
        fixed (byte* pg = g)
        fixed (byte* pa = a)
        fixed (int* pb = bias)
        {
            var expected = new float[C, 8];
            var one = new float[8];
            for (int c = 0; c < C; c++)
            {
                Q4BatchDot.ActivationBias(pa + c * aStride, blocks, pb + c * blocks);
                fixed (float* po = one) Q4x8Dot.GroupScalar(pg, pa + c * aStride, blocks, po);
                for (int r = 0; r < 8; r++) expected[c, r] = one[r];
            }
            byte* gp = pg, ap = pa;
            int* bp = pb;
            foreach (var (name, fn) in paths) // whole groups only: partial tiles have fewer activation rows
                TileCheck.EveryPartialTileEquals(expected, (nRows, nCols, y, yStride) => fn(gp, ap, aStride, bp, nCols, blocks, y, yStride),
                    name, fewestRows: 8);
        }
    }
}
