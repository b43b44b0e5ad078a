using Xunit;

namespace Cria.Tests.Numerics;

/// <summary>The partial-tile check shared by the 8 × 8 batched-kernel tests, and its one-column twin for the decode group kernels.</summary>
internal static unsafe class TileCheck
{
    /// <summary>
    /// <paramref name="count"/> rows of <paramref name="rowBytes"/> bytes (packed in <paramref name="rows"/>) copied
    /// <paramref name="stride"/> bytes apart, a stride wider than a row, so a kernel that ignored it would fail.
    /// </summary>
    public static byte[] Strided(byte[] rows, int count, int rowBytes, nint stride)
    {
        var strided = new byte[count * stride];
        for (int r = 0; r < count; r++) Array.Copy(rows, r * rowBytes, strided, r * stride, rowBytes);
        return strided;
    }

    /// <summary>A decode kernel call over one group: activation row <c>c</c> against eight weight rows, results to y[0..7].</summary>
    public delegate void Group(int c, float* y);

    /// <summary>
    /// Runs <paramref name="group"/> for every activation row into a NaN-filled output and asserts each output has the
    /// bits of <paramref name="expected"/>[c, r].
    /// </summary>
    public static void EveryColumnEquals(float[,] expected, Group group, string what)
    {
        var y = new float[8];
        for (int c = 0; c < expected.GetLength(0); c++)
        {
            Array.Fill(y, float.NaN);
            fixed (float* py = y) group(c, py);
            for (int r = 0; r < 8; r++)
                Assert.True(BitConverter.SingleToInt32Bits(expected[c, r]) == BitConverter.SingleToInt32Bits(y[r]),
                    $"{what}: row {r}, activation row {c}: {y[r]:R} instead of {expected[c, r]:R}");
        }
    }

    /// <summary>A tile call: nRows weight rows × nCols activation rows, results to y[c·yStride + r].</summary>
    public delegate void Tile(int nRows, int nCols, float* y, nint yStride);

    /// <summary>
    /// Runs <paramref name="tile"/> for every partial size (1..rows × 1..cols) into a NaN-filled output with
    /// a stride wider than a tile, and asserts each output has the bits of <paramref name="expected"/>[c, r]
    /// and nothing outside the tile was written. Kernels that only take whole row groups start at
    /// <paramref name="fewestRows"/> = all rows.
    /// </summary>
    public static void EveryPartialTileEquals(float[,] expected, Tile tile, string what, int fewestRows = 1)
    {
        int cols = expected.GetLength(0), rows = expected.GetLength(1);
        const int yStride = 11;
        for (int nRows = fewestRows; nRows <= rows; nRows++)
            for (int nCols = 1; nCols <= cols; nCols++)
            {
                var y = new float[cols * yStride];
                Array.Fill(y, float.NaN);
                fixed (float* py = y) tile(nRows, nCols, py, yStride);
                for (int c = 0; c < cols; c++)
                    for (int i = 0; i < yStride; i++)
                    {
                        float got = y[c * yStride + i];
                        if (c < nCols && i < nRows)
                            Assert.True(BitConverter.SingleToInt32Bits(expected[c, i]) == BitConverter.SingleToInt32Bits(got),
                                $"{what} {nRows}x{nCols} [c{c}, r{i}]: scalar {expected[c, i]:R}, tile {got:R}");
                        else
                            Assert.True(float.IsNaN(got), $"{what} {nRows}x{nCols}: wrote outside the tile at [c{c}, {i}]");
                    }
            }
    }
}
