using System.Runtime.Intrinsics.X86;
using Cria.Numerics.Kernels;

namespace Cria.Numerics.Formats;

/// <summary>
/// Q4_0 weights repacked at load into groups of eight rows, so that one 32-byte load serves eight
/// outputs (the idea of llama.cpp's <c>block_q4_0x8</c>; the bytes here are Cria's own layout).
/// A group holds the eight rows' blocks column by column: for block column i, <see cref="BlockBytes"/>
/// bytes at i·144 —
/// <list type="bullet">
/// <item>bytes 0..15: the eight rows' half-precision scales, row r at 2r;</item>
/// <item>bytes 16 + 32m .. 16 + 32m + 31 (m = 0..3): dword r is row r's packed bytes 4m..4m+3, whose
/// low nibbles are elements 4m..4m+3 and high nibbles elements 16+4m..16+4m+3.</item>
/// </list>
/// The codes are kept unsigned (q + 8), unchanged. The bytes are exactly those of the eight Q4_0
/// rows, reordered: a group is as large as the rows it holds, and <see cref="Repack"/> and
/// <see cref="UnpackRow"/> are exact inverses. The four nibble vectors are what
/// <c>Kernels.Q4BatchDot</c> builds in registers by transposing eight plain rows.
/// </summary>
public static unsafe class Q4_0x8Format
{
    /// <summary>Rows per group.</summary>
    public const int GroupRows = 8;

    /// <summary>Bytes of one block column of a group (eight Q4_0 blocks).</summary>
    public const int BlockBytes = GroupRows * Q4_0Format.BlockBytes;

    /// <summary>Offset of the nibble vectors within a block column.</summary>
    internal const int NibbleOffset = 2 * GroupRows;

    /// <summary>
    /// Repacks eight Q4_0 rows of <paramref name="blocks"/> blocks (row r at <paramref name="src"/> + r·<paramref name="rowStride"/>)
    /// into one group at <paramref name="dst"/> (blocks · <see cref="BlockBytes"/> bytes). Returns false when a
    /// scale is infinite or NaN (the kernels convert scales in registers, exactly for finite halves only:
    /// such a matrix must stay in the rows layout).
    /// </summary>
    public static bool Repack(byte* src, nint rowStride, byte* dst, int blocks)
    {
        bool finite = true;
        for (int i = 0; i < blocks; i++, dst += BlockBytes)
        {
            byte* column = src + (nint)i * Q4_0Format.BlockBytes;
            for (int r = 0; r < GroupRows; r++)
            {
                ushort d = *(ushort*)(column + r * rowStride);
                finite &= (d & 0x7C00) != 0x7C00;
                ((ushort*)dst)[r] = d;
            }
            if (Avx2.IsSupported)
            {
                RowTranspose.Eight(column, column + rowStride, column + 2 * rowStride, column + 3 * rowStride, column + 4 * rowStride,
                    column + 5 * rowStride, column + 6 * rowStride, column + 7 * rowStride, 2, out var d0, out var d1, out var d2, out var d3);
                Avx.Store((int*)(dst + NibbleOffset), d0);
                Avx.Store((int*)(dst + NibbleOffset + 32), d1);
                Avx.Store((int*)(dst + NibbleOffset + 64), d2);
                Avx.Store((int*)(dst + NibbleOffset + 96), d3);
                continue;
            }
            for (int r = 0; r < GroupRows; r++)
                for (int m = 0; m < 4; m++)
                    ((uint*)(dst + NibbleOffset + 32 * m))[r] = *(uint*)(column + r * rowStride + 2 + 4 * m);
        }
        return finite;
    }

    /// <summary>Rebuilds row <paramref name="lane"/> (0..7) of a group as plain Q4_0 blocks at <paramref name="dst"/> (the inverse of <see cref="Repack"/>).</summary>
    public static void UnpackRow(byte* group, int lane, byte* dst, int blocks)
    {
        if ((uint)lane >= GroupRows) throw new ArgumentOutOfRangeException(nameof(lane));
        for (int i = 0; i < blocks; i++, group += BlockBytes, dst += Q4_0Format.BlockBytes)
        {
            *(ushort*)dst = ((ushort*)group)[lane];
            for (int m = 0; m < 4; m++)
                *(uint*)(dst + 2 + 4 * m) = ((uint*)(group + NibbleOffset + 32 * m))[lane];
        }
    }
}
