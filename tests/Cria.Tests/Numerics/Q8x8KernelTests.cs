using System.Runtime.Intrinsics.X86;
using Cria.Numerics;
using Cria.Numerics.Formats;
using Cria.Numerics.Kernels;
using Xunit;

namespace Cria.Tests.Numerics;

/// <summary>
/// Q8_0 repacked into eight-row groups (<see cref="Q8_0x8Format"/>) and its kernels (<see cref="Q8x8Dot"/>), on random
/// blocks whose weight codes cover the whole sbyte range (−128 included) and whose scales include subnormal halves:
/// <list type="number">
/// <item>repacking is lossless: every row unpacks to its original bytes and dequantizes to the same floats;</item>
/// <item>the scalar twin gives, for each of the eight rows, the bits of <see cref="Q8BatchDot.DotScalar"/> on the plain
/// row (the order Q8BatchKernelTests checks against an exact reference);</item>
/// <item>every vector path of the decode kernel and of the tiles gives the scalar twin's bits, the tiles for every
/// partial number of activation rows.</item>
/// </list>
/// Activation codes stay in −127..127, as Q8_0 quantization makes them (the |w| · (a with w's sign) products need it).
/// </summary>
public unsafe class Q8x8KernelTests
{
    private const int B = Q8_0Format.BlockBytes;

    public static TheoryData<int> BlockCounts => new() { 1, 2, 3, 7, 64, 176 };

    /// <summary>Random Q8_0 rows: codes over all of sbyte (some blocks all −128), a quarter of the scales subnormal.</summary>
    private static byte[] RandomWeights(Random rng, int rows, int blocks)
    {
        var w = new byte[rows * blocks * B];
        rng.NextBytes(w);
        for (int b = 0; b < rows * blocks; b++)
        {
            ushort d = rng.Next(4) == 0
                ? (ushort)(rng.Next(1, 0x400) | (rng.Next(2) << 15)) // exponent 0, fraction ≠ 0
                : Fp16Format.FromSingle((float)((rng.NextDouble() * 0.05 + 1e-3) * (rng.Next(2) * 2 - 1)));
            w[b * B] = (byte)d; w[b * B + 1] = (byte)(d >> 8);
            if (rng.Next(6) == 0) for (int j = 0; j < 32; j++) w[b * B + 2 + j] = 0x80;
        }
        return w;
    }

    /// <summary>Random Q8_0 activation rows as quantization makes them: codes in −127..127 (some blocks all ±127).</summary>
    private static byte[] RandomActivations(Random rng, int rows, int blocks)
    {
        var a = new byte[rows * blocks * B];
        for (int b = 0; b < rows * blocks; b++)
        {
            ushort d = Fp16Format.FromSingle((float)(rng.NextDouble() * 0.05 + 1e-3));
            a[b * B] = (byte)d; a[b * B + 1] = (byte)(d >> 8);
            int extreme = rng.Next(6);
            for (int j = 0; j < 32; j++) a[b * B + 2 + j] = (byte)(sbyte)(extreme == 0 ? 127 : extreme == 1 ? -127 : rng.Next(-127, 128));
        }
        return a;
    }

    private static byte[] Repacked(byte[] rows, int blocks)
    {
        var g = new byte[blocks * Q8_0x8Format.BlockBytes];
        fixed (byte* src = rows)
        fixed (byte* dst = g)
            Assert.True(Q8_0x8Format.Repack(src, blocks * B, dst, blocks), "finite scales must repack");
        return g;
    }

    [Theory]
    [MemberData(nameof(BlockCounts))]
    public void Repack_IsLossless(int blocks) =>
        RepackCheck.IsLossless(RandomWeights(new Random(8600 + blocks), 8, blocks), blocks, B, Q8_0x8Format.BlockBytes,
            Q8_0x8Format.Repack, Q8_0x8Format.UnpackRow);

    [Theory]
    [InlineData(0x7C00)] // +infinity
    [InlineData(0xFC00)] // −infinity
    [InlineData(0x7E00)] // NaN
    public void Repack_ReportsScalesTheKernelsCannotConvert(int scale) =>
        RepackCheck.RejectsScale(RandomWeights(new Random(8700), 8, 5), 5, B, Q8_0x8Format.BlockBytes,
            row: 6, block: 4, offset: 0, scale, Q8_0x8Format.Repack);

    [Theory]
    [MemberData(nameof(BlockCounts))]
    public void GroupScalar_EqualsBatchOrderOnEachPlainRow(int blocks)
    {
        var rng = new Random(8800 + blocks);
        byte[] plain = RandomWeights(rng, 8, blocks);
        byte[] g = Repacked(plain, blocks);
        byte[] a = RandomActivations(rng, 1, blocks);
        var y = new float[8];
        fixed (byte* pp = plain)
        fixed (byte* pg = g)
        fixed (byte* pa = a)
        fixed (float* py = y)
        {
            Q8x8Dot.GroupScalar(pg, pa, blocks, py);
            for (int r = 0; r < 8; r++)
            {
                float expected = Q8BatchDot.DotScalar(pp + r * blocks * B, pa, blocks);
                Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(y[r]), $"row {r}: {y[r]:R}, expected {expected:R}");
            }
        }
    }

    private delegate void GroupFn(byte* g, byte* a, int blocks, float* y);

    [SkippableTheory]
    [MemberData(nameof(BlockCounts))]
    public void VectorGroupKernels_EqualScalarTwin(int blocks)
    {
        Skip.IfNot(Avx2.IsSupported && Fma.IsSupported, "the vector kernels need AVX2 and FMA, which this CPU lacks (the scalar twin is tested on its own)");
        var rng = new Random(8900 + blocks);
        byte[] g = Repacked(RandomWeights(rng, 8, blocks), blocks);
        byte[] a = RandomActivations(rng, 1, blocks);
        var paths = new List<(string, GroupFn)> { ("AVX2", Q8x8Dot.Group<Q8x8Dot.NoVnni>), ("dispatch", Q8x8Dot.GroupAvx2) };
        if (AvxVnni.IsSupported) paths.Add(("AVX-VNNI", Q8x8Dot.Group<Q8x8Dot.Vnni>));
        var expected = new float[8];
        fixed (byte* pg = g)
        fixed (byte* pa = a)
        fixed (float* pe = expected)
        {
            Q8x8Dot.GroupScalar(pg, pa, blocks, pe);
            foreach (var (name, fn) in paths)
            {
                var y = new float[8];
                fixed (float* py = y) fn(pg, pa, blocks, py);
                for (int r = 0; r < 8; r++)
                    Assert.True(BitConverter.SingleToInt32Bits(expected[r]) == BitConverter.SingleToInt32Bits(y[r]), $"{name}, row {r}: {y[r]:R}, expected {expected[r]:R}");
            }
        }
    }

    private delegate void TileFn(byte* g, byte* a, nint aStride, int nCols, int blocks, float* y, nint yStride);

    [SkippableTheory]
    [MemberData(nameof(BlockCounts))]
    public void VectorTiles_EqualScalarTwin_ForEveryPartialTile(int blocks)
    {
        Skip.IfNot(Avx2.IsSupported && Fma.IsSupported, "the vector tiles need AVX2 and FMA, which this CPU lacks (the scalar twin is tested on its own)");
        var rng = new Random(9000 + blocks);
        int C = Math.Max(Q8x8Dot.TileColumns, Q8BatchDot.TileColumns);
        nint aStride = blocks * B + 3;
        byte[] g = Repacked(RandomWeights(rng, 8, blocks), blocks);
        byte[] a = TileCheck.Strided(RandomActivations(rng, C, blocks), C, blocks * B, aStride);
        fixed (byte* pg = g)
        fixed (byte* pa = a)
        {
            var expected = new float[C, 8];
            var one = new float[8];
            for (int c = 0; c < C; c++)
            {
                fixed (float* po = one) Q8x8Dot.GroupScalar(pg, pa + c * aStride, blocks, po);
                for (int r = 0; r < 8; r++) expected[c, r] = one[r];
            }
            byte* gp = pg, ap = pa;
            var paths = new List<(string, TileFn)> { ("AVX2", Q8x8Dot.TileNormal<Q8x8Dot.NoVnni>) };
            if (AvxVnni.IsSupported) paths.Add(("AVX-VNNI", Q8x8Dot.TileNormal<Q8x8Dot.Vnni>));
            var normal = Columns(expected, Q8x8Dot.TileColumns);
            foreach (var (name, fn) in paths) // whole groups only: partial tiles have fewer activation rows
                TileCheck.EveryPartialTileEquals(normal, (nRows, nCols, y, yStride) => fn(gp, ap, aStride, nCols, blocks, y, yStride), name, fewestRows: 8);
            if (CpuFeatures.VnniTiles)
            {
                for (int c = 0; c < C; c++) Q8BatchDot.ToOffsetForm(pa + c * aStride, blocks);
                TileCheck.EveryPartialTileEquals(Columns(expected, Q8BatchDot.TileColumns),
                    (nRows, nCols, y, yStride) => Q8x8Dot.Tile(gp, ap, aStride, nCols, blocks, y, yStride), "AVX-VNNI, offset form", fewestRows: 8);
            }
        }
    }

    /// <summary>The first <paramref name="cols"/> activation rows of <paramref name="expected"/>.</summary>
    private static float[,] Columns(float[,] expected, int cols)
    {
        var e = new float[cols, expected.GetLength(1)];
        for (int c = 0; c < cols; c++)
            for (int r = 0; r < e.GetLength(1); r++) e[c, r] = expected[c, r];
        return e;
    }
}
