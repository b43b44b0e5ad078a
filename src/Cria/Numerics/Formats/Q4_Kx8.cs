namespace Cria.Numerics.Formats;

/// <summary>
/// Q4_K weights repacked at load into groups of eight rows (the idea of llama.cpp's <c>block_q4_Kx8</c>; the
/// bytes here are Cria's own layout): what <c>Kernels.Q4KBatchDot</c> builds in registers by transposing eight
/// plain rows, stored ready. For super-block column i, <see cref="BlockBytes"/> bytes at i·1152 —
/// <list type="bullet">
/// <item>bytes 0..15: the eight rows' d (half), row r at 2r; bytes 16..31: their dmin;</item>
/// <item>bytes 32 + 32(k−1) .. +31 (k = 1..3): dword r is row r's header dword k (bytes 4k..4k+3: the twelve bytes
/// of packed 6-bit scales and mins);</item>
/// <item>bytes 128 + 256g + 32m .. +31 (g = 0..3, m = 0..7): dword r is row r's quant dword m of group g
/// (bytes 16 + 32g + 4m .. +3 of the block: low nibbles are elements 64g + 4m.., high nibbles 64g + 32 + 4m..).</item>
/// </list>
/// A group is as large as the rows it holds; <see cref="Repack"/> and <see cref="UnpackRow"/> are exact inverses.
/// </summary>
public static unsafe class Q4_Kx8Format
{
    /// <summary>Rows per group.</summary>
    public const int GroupRows = 8;

    /// <summary>Bytes of one super-block column of a group (eight Q4_K super-blocks).</summary>
    public const int BlockBytes = GroupRows * Q4_KFormat.BlockBytes;

    /// <summary>Offsets within a super-block column: the dmin halves, the header vectors, the quant vectors.</summary>
    internal const int MinOffset = 16, HeaderOffset = 32, QuantOffset = 128;

    /// <summary>
    /// Repacks eight Q4_K rows of <paramref name="blocks"/> super-blocks (row r at <paramref name="src"/> + r·<paramref name="rowStride"/>)
    /// into one group at <paramref name="dst"/>. Returns false when a d or dmin is infinite or NaN (the kernels
    /// convert them in registers, exactly for finite halves only: such a matrix must stay in the rows layout).
    /// </summary>
    public static bool Repack(byte* src, nint rowStride, byte* dst, int blocks)
    {
        bool finite = true;
        for (int i = 0; i < blocks; i++, dst += BlockBytes)
        {
            byte* column = src + (nint)i * Q4_KFormat.BlockBytes;
            for (int r = 0; r < GroupRows; r++)
            {
                byte* block = column + r * rowStride;
                ushort d = ((ushort*)block)[0], dmin = ((ushort*)block)[1];
                finite &= (d & 0x7C00) != 0x7C00 && (dmin & 0x7C00) != 0x7C00;
                ((ushort*)dst)[r] = d;
                ((ushort*)(dst + MinOffset))[r] = dmin;
                for (int k = 1; k < 4; k++)
                    ((uint*)(dst + HeaderOffset + 32 * (k - 1)))[r] = ((uint*)block)[k];
                for (int g = 0; g < 4; g++)
                    for (int m = 0; m < 8; m++)
                        ((uint*)(dst + QuantOffset + 256 * g + 32 * m))[r] = *(uint*)(block + 16 + 32 * g + 4 * m);
            }
        }
        return finite;
    }

    /// <summary>Rebuilds row <paramref name="lane"/> (0..7) of a group as plain Q4_K super-blocks at <paramref name="dst"/> (the inverse of <see cref="Repack"/>).</summary>
    public static void UnpackRow(byte* group, int lane, byte* dst, int blocks)
    {
        if ((uint)lane >= GroupRows) throw new ArgumentOutOfRangeException(nameof(lane));
        for (int i = 0; i < blocks; i++, group += BlockBytes, dst += Q4_KFormat.BlockBytes)
        {
            ((ushort*)dst)[0] = ((ushort*)group)[lane];
            ((ushort*)dst)[1] = ((ushort*)(group + MinOffset))[lane];
            for (int k = 1; k < 4; k++)
                ((uint*)dst)[k] = ((uint*)(group + HeaderOffset + 32 * (k - 1)))[lane];
            for (int g = 0; g < 4; g++)
                for (int m = 0; m < 8; m++)
                    *(uint*)(dst + 16 + 32 * g + 4 * m) = ((uint*)(group + QuantOffset + 256 * g + 32 * m))[lane];
        }
    }
}
