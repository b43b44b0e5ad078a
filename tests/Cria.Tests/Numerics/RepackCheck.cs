using Xunit;

namespace Cria.Tests.Numerics;

/// <summary>
/// The checks every eight-row group format shares: repacking loses nothing, and a scale the kernels cannot convert keeps the
/// rows from being repacked. (Reading a repacked row back as floats is <c>MatMul.GetRow</c>'s, tested with the matrices.)
/// </summary>
internal static unsafe class RepackCheck
{
    internal delegate bool Repack(byte* src, nint rowStride, byte* dst, int blocks);
    internal delegate void UnpackRow(byte* group, int lane, byte* dst, int blocks);

    /// <summary>
    /// Repacks eight plain rows of <paramref name="blocks"/> blocks (<paramref name="plain"/>, row after row), read at a
    /// stride wider than a row, and asserts that every row unpacks to its own bytes.
    /// </summary>
    public static void IsLossless(byte[] plain, int blocks, int blockBytes, int groupBlockBytes, Repack repack, UnpackRow unpackRow)
    {
        int rowBytes = blocks * blockBytes;
        nint stride = rowBytes + 7;
        byte[] strided = TileCheck.Strided(plain, 8, rowBytes, stride);
        var g = new byte[blocks * groupBlockBytes];
        var row = new byte[rowBytes];
        fixed (byte* src = strided)
        fixed (byte* pg = g)
        fixed (byte* pr = row)
        {
            Assert.True(repack(src, stride, pg, blocks), "finite scales must repack");
            for (int r = 0; r < 8; r++)
            {
                unpackRow(pg, r, pr, blocks);
                Assert.Equal(plain.AsSpan(r * rowBytes, rowBytes).ToArray(), row);
            }
        }
    }

    /// <summary>
    /// Writes the half <paramref name="half"/> (an infinity or a NaN) at byte <paramref name="offset"/> of block
    /// <paramref name="block"/> of row <paramref name="row"/> of eight plain rows and asserts that repacking refuses them.
    /// </summary>
    public static void RejectsScale(byte[] plain, int blocks, int blockBytes, int groupBlockBytes, int row, int block, int offset, int half, Repack repack)
    {
        int at = (row * blocks + block) * blockBytes + offset;
        plain[at] = (byte)half; plain[at + 1] = (byte)(half >> 8);
        var g = new byte[blocks * groupBlockBytes];
        fixed (byte* src = plain)
        fixed (byte* dst = g)
            Assert.False(repack(src, blocks * blockBytes, dst, blocks), $"a scale of 0x{half:X4} must keep the rows as they are");
    }
}
