using System.Runtime.Intrinsics.X86;
using Cria.Numerics.Kernels;

namespace Cria.Numerics.Formats;

/// <summary>
/// Q8_0 weights repacked at load into groups of eight rows: what <c>Kernels.Q8BatchDot</c> builds in registers
/// by transposing eight plain rows, stored ready, so that decode streams one run of memory and every 32-byte
/// load serves eight outputs. For block column i, <see cref="BlockBytes"/> bytes at i·272 —
/// <list type="bullet">
/// <item>bytes 0..15: the eight rows' half-precision scales, row r at 2r;</item>
/// <item>bytes 16 + 32m .. 16 + 32m + 31 (m = 0..7): dword r is row r's codes 4m..4m+3 (signed bytes).</item>
/// </list>
/// A group is as large as the rows it holds; <see cref="Repack"/> and <see cref="UnpackRow"/> are exact inverses.
/// </summary>
public static unsafe class Q8_0x8Format
{
    /// <summary>Rows per group.</summary>
    public const int GroupRows = 8;

    /// <summary>Bytes of one block column of a group (eight Q8_0 blocks).</summary>
    public const int BlockBytes = GroupRows * Q8_0Format.BlockBytes;

    /// <summary>Offset of the code vectors within a block column.</summary>
    internal const int CodeOffset = 2 * GroupRows;

    /// <summary>
    /// Repacks eight Q8_0 rows of <paramref name="blocks"/> blocks (row r at <paramref name="src"/> + r·<paramref name="rowStride"/>)
    /// into one group at <paramref name="dst"/> (blocks · <see cref="BlockBytes"/> bytes). Returns false when a
    /// scale is infinite or NaN (the kernels convert scales in registers, exactly for finite halves only: such a
    /// matrix must stay in the rows layout).
    /// </summary>
    public static bool Repack(byte* src, nint rowStride, byte* dst, int blocks)
    {
        bool finite = true;
        for (int i = 0; i < blocks; i++, dst += BlockBytes)
        {
            byte* column = src + (nint)i * Q8_0Format.BlockBytes;
            for (int r = 0; r < GroupRows; r++)
            {
                ushort d = *(ushort*)(column + r * rowStride);
                finite &= (d & 0x7C00) != 0x7C00;
                ((ushort*)dst)[r] = d;
            }
            if (Avx2.IsSupported)
            {
                for (int half = 0; half < 2; half++)
                {
                    RowTranspose.Eight(column, column + rowStride, column + 2 * rowStride, column + 3 * rowStride, column + 4 * rowStride,
                        column + 5 * rowStride, column + 6 * rowStride, column + 7 * rowStride, 2 + 16 * half, out var d0, out var d1, out var d2, out var d3);
                    byte* v = dst + CodeOffset + 128 * half;
                    Avx.Store((int*)v, d0);
                    Avx.Store((int*)(v + 32), d1);
                    Avx.Store((int*)(v + 64), d2);
                    Avx.Store((int*)(v + 96), d3);
                }
                continue;
            }
            for (int r = 0; r < GroupRows; r++)
                for (int m = 0; m < 8; m++)
                    ((uint*)(dst + CodeOffset + 32 * m))[r] = *(uint*)(column + r * rowStride + 2 + 4 * m);
        }
        return finite;
    }

    /// <summary>Rebuilds row <paramref name="lane"/> (0..7) of a group as plain Q8_0 blocks at <paramref name="dst"/> (the inverse of <see cref="Repack"/>).</summary>
    public static void UnpackRow(byte* group, int lane, byte* dst, int blocks)
    {
        if ((uint)lane >= GroupRows) throw new ArgumentOutOfRangeException(nameof(lane));
        for (int i = 0; i < blocks; i++, group += BlockBytes, dst += Q8_0Format.BlockBytes)
        {
            *(ushort*)dst = ((ushort*)group)[lane];
            for (int m = 0; m < 8; m++)
                *(uint*)(dst + 2 + 4 * m) = ((uint*)(group + CodeOffset + 32 * m))[lane];
        }
    }
}
