namespace Cria.Numerics.Formats;

/// <summary>
/// Q6_K weights repacked at load into groups of eight rows: what <c>Kernels.Q6KBatchDot</c> builds in registers by
/// transposing eight plain rows, stored ready. Each 32-byte vector holds one dword of each of the eight rows, row r
/// in dword r. For super-block column i, <see cref="BlockBytes"/> bytes at i·1680 —
/// <list type="bullet">
/// <item>bytes 0 + 32m .. +31 (m = 0..3): dword m of the rows' sixteen 8-bit scales (scales 4m..4m+3);</item>
/// <item>bytes 128 + 256h + 32j .. +31 (h = 0..1, j = 0..7): dword j of the rows' high-bit bytes of half h
/// (block bytes 128 + 32h + 4j .. +3);</item>
/// <item>bytes 640 + 512h + 256p + 32j .. +31 (p = 0..1, j = 0..7): dword j of the rows' low-nibble bytes
/// 64h + 32p .. +31 (block bytes 64h + 32p + 4j .. +3);</item>
/// <item>bytes 1664..1679: the eight rows' d (half), row r at 1664 + 2r.</item>
/// </list>
/// A group is as large as the rows it holds; <see cref="Repack"/> and <see cref="UnpackRow"/> are exact inverses.
/// </summary>
public static unsafe class Q6_Kx8Format
{
    /// <summary>Rows per group.</summary>
    public const int GroupRows = 8;

    /// <summary>Bytes of one super-block column of a group (eight Q6_K super-blocks).</summary>
    public const int BlockBytes = GroupRows * Q6_KFormat.BlockBytes;

    /// <summary>Offsets within a super-block column: the scale vectors, the high-bit vectors, the low-nibble vectors, the d halves.</summary>
    internal const int ScaleOffset = 0, HighOffset = 128, LowOffset = 640, DOffset = 1664;

    // Where the parts lie in a plain Q6_K block (Q6_KFormat): low nibbles, high bits, scales, d.
    private const int BlockLow = 0, BlockHigh = 128, BlockScales = 192, BlockD = 208;

    /// <summary>
    /// Repacks eight Q6_K rows of <paramref name="blocks"/> super-blocks (row r at <paramref name="src"/> + r·<paramref name="rowStride"/>)
    /// into one group at <paramref name="dst"/>. Returns false when a d is infinite or NaN (the kernels convert d in
    /// registers, exactly for finite halves only: such a matrix must stay in the rows layout).
    /// </summary>
    public static bool Repack(byte* src, nint rowStride, byte* dst, int blocks)
    {
        bool finite = true;
        for (int i = 0; i < blocks; i++, dst += BlockBytes)
        {
            byte* column = src + (nint)i * Q6_KFormat.BlockBytes;
            for (int r = 0; r < GroupRows; r++)
            {
                byte* block = column + r * rowStride;
                ushort d = *(ushort*)(block + BlockD);
                finite &= (d & 0x7C00) != 0x7C00;
                ((ushort*)(dst + DOffset))[r] = d;
                for (int m = 0; m < 4; m++)
                    ((uint*)(dst + ScaleOffset + 32 * m))[r] = *(uint*)(block + BlockScales + 4 * m);
                for (int h = 0; h < 2; h++)
                    for (int j = 0; j < 8; j++)
                    {
                        ((uint*)(dst + HighOffset + 256 * h + 32 * j))[r] = *(uint*)(block + BlockHigh + 32 * h + 4 * j);
                        for (int p = 0; p < 2; p++)
                            ((uint*)(dst + LowOffset + 512 * h + 256 * p + 32 * j))[r] = *(uint*)(block + BlockLow + 64 * h + 32 * p + 4 * j);
                    }
            }
        }
        return finite;
    }

    /// <summary>Rebuilds row <paramref name="lane"/> (0..7) of a group as plain Q6_K super-blocks at <paramref name="dst"/> (the inverse of <see cref="Repack"/>).</summary>
    public static void UnpackRow(byte* group, int lane, byte* dst, int blocks)
    {
        if ((uint)lane >= GroupRows) throw new ArgumentOutOfRangeException(nameof(lane));
        for (int i = 0; i < blocks; i++, group += BlockBytes, dst += Q6_KFormat.BlockBytes)
        {
            *(ushort*)(dst + BlockD) = ((ushort*)(group + DOffset))[lane];
            for (int m = 0; m < 4; m++)
                *(uint*)(dst + BlockScales + 4 * m) = ((uint*)(group + ScaleOffset + 32 * m))[lane];
            for (int h = 0; h < 2; h++)
                for (int j = 0; j < 8; j++)
                {
                    *(uint*)(dst + BlockHigh + 32 * h + 4 * j) = ((uint*)(group + HighOffset + 256 * h + 32 * j))[lane];
                    for (int p = 0; p < 2; p++)
                        *(uint*)(dst + BlockLow + 64 * h + 32 * p + 4 * j) = ((uint*)(group + LowOffset + 512 * h + 256 * p + 32 * j))[lane];
                }
        }
    }
}
