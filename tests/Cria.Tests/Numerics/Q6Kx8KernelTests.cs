using System.Runtime.Intrinsics.X86;
using Cria.Numerics;
using Cria.Numerics.Formats;
using Cria.Numerics.Kernels;
using Xunit;

namespace Cria.Tests.Numerics;

/// <summary>
/// Q6_K repacked into eight-row groups (<see cref="Q6_Kx8Format"/>) and its kernels (<see cref="Q6Kx8Dot"/>), on random
/// super-blocks whose d include subnormal halves: repacking is lossless; the tile (every number of activation rows, 1..16)
/// and decode's one-column kernel give the bits of <see cref="Q6KBatchDot.DotScalar"/> on the plain rows (the order
/// Q6KBatchKernelTests checks against the plain rows' tile).
/// </summary>
public unsafe class Q6Kx8KernelTests
{
    private const int WB = Q6_KFormat.BlockBytes;

    public static TheoryData<int> BlockCounts => new() { 1, 2, 3, 8, 22 };

    /// <summary>Eight random Q6_K rows, a quarter of their d replaced by subnormal halves.</summary>
    private static byte[] RandomRows(Random rng, int blocks)
    {
        byte[] w = Q6KBatchKernelTests.RandomQ6KRows(rng, 8, blocks);
        for (int b = 0; b < 8 * blocks; b++)
            if (rng.Next(4) == 0)
            {
                ushort d = (ushort)(rng.Next(1, 0x400) | (rng.Next(2) << 15));
                w[b * WB + 208] = (byte)d; w[b * WB + 209] = (byte)(d >> 8);
            }
        return w;
    }

    [Theory]
    [MemberData(nameof(BlockCounts))]
    public void Repack_IsLossless(int blocks) =>
        RepackCheck.IsLossless(RandomRows(new Random(9600 + blocks), blocks), blocks, WB, Q6_Kx8Format.BlockBytes,
            Q6_Kx8Format.Repack, Q6_Kx8Format.UnpackRow);

    [Theory]
    [InlineData(0x7C00)] // +infinity
    [InlineData(0xFE00)] // NaN
    public void Repack_ReportsScalesTheKernelCannotConvert(int half) =>
        RepackCheck.RejectsScale(Q6KBatchKernelTests.RandomQ6KRows(new Random(9700), 8, 3), 3, WB, Q6_Kx8Format.BlockBytes,
            row: 6, block: 2, offset: 208, half, Q6_Kx8Format.Repack);

    [SkippableTheory]
    [MemberData(nameof(BlockCounts))]
    public void TileAndGroup_EqualBatchOrderOnThePlainRows(int blocks)
    {
        Skip.IfNot(CpuFeatures.Avx2Fma, "the Q6_K group kernels need AVX2 and FMA, which this CPU lacks");
        var rng = new Random(9800 + blocks);
        Check(RandomRows(rng, blocks), TileCheck.Strided(Q4KBatchKernelTests.RandomQ8KRows(rng, Q6KBatchDot.TileColumns, blocks),
            Q6KBatchDot.TileColumns, blocks * Q8_KFormat.BlockBytes, blocks * Q8_KFormat.BlockBytes + 5), blocks * Q8_KFormat.BlockBytes + 5, blocks);
    }

    /// <summary>Every code 63 against activations of −128 and +127 and the largest scales: the extremes of the short sums must not saturate.</summary>
    [SkippableFact]
    public void TileAndGroup_HoldTheLargestSums()
    {
        Skip.IfNot(CpuFeatures.Avx2Fma, "the Q6_K group kernels need AVX2 and FMA, which this CPU lacks");
        const int blocks = 2;
        var rng = new Random(9900);
        byte[] w = Q6KBatchKernelTests.RandomQ6KRows(rng, 8, blocks);
        for (int b = 0; b < 8 * blocks; b++)
        {
            w.AsSpan(b * WB, 192).Fill(0xFF); // code 63 everywhere
            for (int k = 0; k < 16; k++) w[b * WB + 192 + k] = (byte)(b % 2 == 0 ? 127 : 0x80); // scale +127 or −128
        }
        int aBytes = blocks * Q8_KFormat.BlockBytes;
        byte[] a = Q4KBatchKernelTests.RandomQ8KRows(rng, Q6KBatchDot.TileColumns, blocks);
        for (int c = 0; c < Q6KBatchDot.TileColumns; c++)
            for (int i = 0; i < blocks; i++)
            {
                int o = c * aBytes + i * Q8_KFormat.BlockBytes;
                sbyte v = c % 2 == 0 ? (sbyte)-128 : (sbyte)127;
                for (int j = 0; j < 256; j++) a[o + 4 + j] = (byte)v;
                for (int k = 0; k < 16; k++) BitConverter.TryWriteBytes(a.AsSpan(o + 260 + 2 * k, 2), (short)(16 * v));
            }
        Check(w, a, aBytes, blocks);
    }

    private static void Check(byte[] plain, byte[] a, nint aStride, int blocks) =>
        GroupKernelCheck.EqualBatchOrder(new GroupKernelCheck.Kernels
        {
            Name = "Q6_Kx8", BlockBytes = WB, GroupBlockBytes = Q6_Kx8Format.BlockBytes,
            Repack = &Q6_Kx8Format.Repack, DotScalar = &Q6KBatchDot.DotScalar,
            Tile = &Q6Kx8Dot.Kernel.Tile, TileAvx2 = &Q6Kx8Dot.Tile<IntegerDots.NoVnni>, TileVnni = &Q6Kx8Dot.Tile<IntegerDots.Vnni>,
            Group = &Q6Kx8Dot.Kernel.Group, GroupAvx2 = &Q6Kx8Dot.Group<IntegerDots.NoVnni>, GroupVnni = &Q6Kx8Dot.Group<IntegerDots.Vnni>,
        }, plain, a, aStride, blocks, Q6KBatchDot.TileColumns);
}
