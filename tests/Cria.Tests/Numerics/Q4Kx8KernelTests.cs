using System.Runtime.Intrinsics.X86;
using Cria.Numerics.Formats;
using Cria.Numerics.Kernels;
using Xunit;

namespace Cria.Tests.Numerics;

/// <summary>
/// Q4_K repacked into eight-row groups (<see cref="Q4_Kx8Format"/>) and its tile (<see cref="Q4Kx8Dot"/>), on random
/// super-blocks whose d and dmin include subnormal halves: repacking is lossless; the tile (for every number of activation
/// rows, 1..16) and decode's one-column kernel give the bits of <see cref="Q4KBatchDot.DotScalar"/> on the plain rows (the
/// order Q4KBatchKernelTests checks against an exact reference).
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
    public void Repack_IsLossless(int blocks) =>
        RepackCheck.IsLossless(RandomRows(new Random(8600 + blocks), blocks), blocks, WB, Q4_Kx8Format.BlockBytes,
            Q4_Kx8Format.Repack, Q4_Kx8Format.UnpackRow);

    [Theory]
    [InlineData(0, 0x7C00)] // d = +infinity
    [InlineData(2, 0x7E00)] // dmin = NaN
    public void Repack_ReportsScalesTheKernelCannotConvert(int at, int half) =>
        RepackCheck.RejectsScale(Q4KBatchKernelTests.RandomQ4KRows(new Random(8700), 8, 3), 3, WB, Q4_Kx8Format.BlockBytes,
            row: 5, block: 1, offset: at, half, Q4_Kx8Format.Repack);

    [SkippableTheory]
    [MemberData(nameof(BlockCounts))]
    public void TileAndGroup_EqualBatchOrderOnThePlainRows_ForEveryColumnCount(int blocks)
    {
        Skip.IfNot(CpuFeatures.Avx2Fma, "the Q4_K tiles need AVX2 and FMA, which this CPU lacks");
        var rng = new Random(8800 + blocks);
        const int C = Q4KBatchDot.TileColumns;
        nint aStride = blocks * Q8_KFormat.BlockBytes + 5;
        byte[] a = TileCheck.Strided(Q4KBatchKernelTests.RandomQ8KRows(rng, C, blocks), C, blocks * Q8_KFormat.BlockBytes, aStride);
        GroupKernelCheck.EqualBatchOrder(Kernels, RandomRows(rng, blocks), a, aStride, blocks, C);
    }

    /// <summary>
    /// The largest integer sums the kernels hold in shorts: every code 15 against activations all −128 or all 127 (a
    /// sub-block's partial sums then reach −30720 / 30480 of the short range), with random scales; the tile and the
    /// one-column kernel still give the scalar order's bits.
    /// </summary>
    [SkippableTheory]
    [InlineData(-128)]
    [InlineData(127)]
    public void LargestShortSums_StayExact(int activation)
    {
        Skip.IfNot(CpuFeatures.Avx2Fma, "the Q4_K tiles need AVX2 and FMA, which this CPU lacks");
        const int blocks = 2, C = Q4KBatchDot.TileColumns;
        var rng = new Random(8900 - activation);
        byte[] w = RandomRows(rng, blocks);
        for (int b = 0; b < 8 * blocks; b++) w.AsSpan(b * WB + 16, 128).Fill(0xFF); // every 4-bit code 15
        nint aStride = blocks * Q8_KFormat.BlockBytes;
        byte[] a = Q4KBatchKernelTests.RandomQ8KRows(rng, C, blocks);
        for (int r = 0; r < C * blocks; r++)
        {
            int o = r * Q8_KFormat.BlockBytes;
            a.AsSpan(o + 4, 256).Fill((byte)(sbyte)activation);
            for (int k = 0; k < 16; k++) BitConverter.TryWriteBytes(a.AsSpan(o + 260 + 2 * k, 2), (short)(16 * activation));
        }
        GroupKernelCheck.EqualBatchOrder(Kernels, w, a, aStride, blocks, C);
    }

    private static GroupKernelCheck.Kernels Kernels => new()
    {
        Name = "Q4_Kx8", BlockBytes = WB, GroupBlockBytes = Q4_Kx8Format.BlockBytes,
        Repack = &Q4_Kx8Format.Repack, DotScalar = &Q4KBatchDot.DotScalar,
        Tile = &Q4Kx8Dot.Kernel.Tile, TileAvx2 = &Q4Kx8Dot.Tile<IntegerDots.NoVnni>, TileVnni = &Q4Kx8Dot.Tile<IntegerDots.Vnni>,
        Group = &Q4Kx8Dot.Kernel.Group, GroupAvx2 = &Q4Kx8Dot.Group<IntegerDots.NoVnni>, GroupVnni = &Q4Kx8Dot.Group<IntegerDots.Vnni>,
    };
}
