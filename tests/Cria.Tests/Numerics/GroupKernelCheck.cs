using System.Runtime.Intrinsics.X86;
using Cria.Numerics.Kernels;
using Xunit;

namespace Cria.Tests.Numerics;

/// <summary>
/// The check shared by the K-quant group kernels (<see cref="Q4Kx8Dot"/>, <see cref="Q6Kx8Dot"/>): eight plain rows repacked
/// into a group; the tile for every partial size and decode's one-column kernel, each with the dispatching, AVX2 and (where
/// the CPU has it) AVX-VNNI integer steps, all give the bits of the batched order's scalar dot on the plain rows.
/// </summary>
internal static unsafe class GroupKernelCheck
{
    /// <summary>A format's functions: repacking, the plain rows' scalar dot, and its kernels per integer-step variant.</summary>
    internal struct Kernels
    {
        public string Name;
        public int BlockBytes, GroupBlockBytes;
        public delegate*<byte*, nint, byte*, int, bool> Repack;
        public delegate*<byte*, byte*, int, float> DotScalar;
        public delegate*<byte*, byte*, nint, int, int, float*, nint, void> Tile, TileAvx2, TileVnni;
        public delegate*<byte*, byte*, int, float*, void> Group, GroupAvx2, GroupVnni;
    }

    /// <summary>Runs every kernel of <paramref name="k"/> on <paramref name="plain"/> (eight rows) against 16 activation rows <paramref name="aStride"/> apart.</summary>
    public static void EqualBatchOrder(in Kernels k, byte[] plain, byte[] a, nint aStride, int blocks, int columns)
    {
        var g = new byte[blocks * k.GroupBlockBytes];
        var expected = new float[columns, 8];
        fixed (byte* pp = plain)
        fixed (byte* pg = g)
        fixed (byte* pa = a)
        {
            Assert.True(k.Repack(pp, blocks * k.BlockBytes, pg, blocks));
            for (int c = 0; c < columns; c++)
                for (int r = 0; r < 8; r++)
                    expected[c, r] = k.DotScalar(pp + r * blocks * k.BlockBytes, pa + c * aStride, blocks);
            byte* gp = pg, ap = pa;
            var variants = new List<(string Name, nint Tile, nint Group)> { ("dispatch", (nint)k.Tile, (nint)k.Group), ("AVX2", (nint)k.TileAvx2, (nint)k.GroupAvx2) };
            if (AvxVnni.IsSupported) variants.Add(("AVX-VNNI", (nint)k.TileVnni, (nint)k.GroupVnni));
            foreach (var (variant, tileAddress, groupAddress) in variants)
            {
                var tile = (delegate*<byte*, byte*, nint, int, int, float*, nint, void>)tileAddress;
                var group = (delegate*<byte*, byte*, int, float*, void>)groupAddress;
                TileCheck.EveryPartialTileEquals(expected, (nRows, nCols, y, yStride) => tile(gp, ap, aStride, nCols, blocks, y, yStride),
                    $"{k.Name} tile ({variant})", fewestRows: 8);
                // Decode's one-column kernel: the tile's bits, so a prompt and a decode step agree.
                TileCheck.EveryColumnEquals(expected, (c, y) => group(gp, ap + c * aStride, blocks, y), $"{k.Name} group ({variant})");
            }
        }
    }
}
