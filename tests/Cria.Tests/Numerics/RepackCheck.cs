using Xunit;

namespace Cria.Tests.Numerics;

/// <summary>The check every eight-row group format shares: repacking loses nothing.</summary>
internal static unsafe class RepackCheck
{
    internal delegate bool Repack(byte* src, nint rowStride, byte* dst, int blocks);
    internal delegate void UnpackRow(byte* group, int lane, byte* dst, int blocks);
    internal delegate void DequantizeRow(byte* group, int lane, float* dst, int blocks);
    internal delegate void Dequantize(ReadOnlySpan<byte> src, Span<float> dst);

    /// <summary>
    /// Repacks eight plain rows of <paramref name="blocks"/> blocks (<paramref name="plain"/>, row after row), read at a
    /// stride wider than a row, and asserts that every row unpacks to its own bytes and dequantizes to the plain row's floats.
    /// </summary>
    public static void IsLossless(byte[] plain, int blocks, int blockBytes, int blockSize, int groupBlockBytes,
        Repack repack, UnpackRow unpackRow, Dequantize dequantize, DequantizeRow dequantizeRow)
    {
        int rowBytes = blocks * blockBytes;
        nint stride = rowBytes + 7;
        byte[] strided = TileCheck.Strided(plain, 8, rowBytes, stride);
        var g = new byte[blocks * groupBlockBytes];
        var row = new byte[rowBytes];
        var expected = new float[blocks * blockSize];
        var got = new float[blocks * blockSize];
        fixed (byte* src = strided)
        fixed (byte* pg = g)
        fixed (byte* pr = row)
        fixed (float* pgot = got)
        {
            Assert.True(repack(src, stride, pg, blocks), "finite scales must repack");
            for (int r = 0; r < 8; r++)
            {
                unpackRow(pg, r, pr, blocks);
                Assert.Equal(plain.AsSpan(r * rowBytes, rowBytes).ToArray(), row);
                dequantize(plain.AsSpan(r * rowBytes, rowBytes), expected);
                dequantizeRow(pg, r, pgot, blocks);
                Assert.Equal(expected, got);
            }
        }
    }
}
