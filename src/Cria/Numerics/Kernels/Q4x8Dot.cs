using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Cria.Numerics.Formats;

namespace Cria.Numerics.Kernels;

/// <summary>
/// Q4_0 weights repacked into eight-row groups (<see cref="Q4_0x8Format"/>) · Q8_0 activations.
/// The arithmetic is <see cref="Q4BatchDot"/>'s, bit for bit: per block the whole integer dot
/// S = Σ c·a − 8·Σa (the bias from <see cref="Q4BatchDot.ActivationBias"/>), then
/// acc = fma(d_w·d_a, (float)S, acc), one float accumulator per output. What changes is the reading:
/// the eight rows' nibbles come as four ready vectors (no transpose) and their scales as one
/// sixteen-byte run, so a block column of eight rows costs four loads, eight mask/shift operations,
/// eight integer multiply-adds and one conversion of eight half scales — about a third of the instructions the
/// ggml-order kernel (<see cref="QuantDot"/>) spends on the same 144 bytes. Decode (one activation
/// row) uses <see cref="Group{TD}"/>, batches the 8 × 8 <see cref="Tile{TD}"/>; the scalar twin
/// <see cref="GroupScalar"/> gives the same bits (and is the portable path).
/// </summary>
public static unsafe class Q4x8Dot
{
    /// <summary>
    /// Bytes ahead of the block being read that decode prefetches, every line of it, into L1 (and
    /// <see cref="L2PrefetchDistance"/> ahead into L2). Measured in-process on TinyLlama-shaped Q4_0 (decode t/s,
    /// repacked / rows layout, L1 prefetch only): no prefetch 0.70, one line per block 2 KiB ahead 0.90, every
    /// line 1 KiB 0.96, 2 KiB 1.06, 4 KiB 1.19, 8 KiB 1.17. Adding the L2 prefetch (medians of 16 alternations,
    /// t/s): L1 at 4 KiB alone 32.22 (TinyLlama) / 28.94 (Llama-3.2-1B); plus L2 at 16 KiB 33.00 / 29.34;
    /// L1 at 2 KiB plus L2 at 8 KiB 33.28 / 29.65. A non-temporal prefetch instead was 35 % slower.
    /// </summary>
    internal const int PrefetchDistance = 2048;

    /// <summary>Bytes ahead of the block being read that decode prefetches into L2 (see <see cref="PrefetchDistance"/>).</summary>
    internal const int L2PrefetchDistance = 8192;

    /// <summary>Scalar twin: the eight outputs of one group · one activation row, in this class's order.</summary>
    internal static void GroupScalar(byte* g, byte* a, int blocks, float* y)
    {
        float* acc = stackalloc float[Q4_0x8Format.GroupRows];
        for (int r = 0; r < Q4_0x8Format.GroupRows; r++) acc[r] = 0;
        for (int i = 0; i < blocks; i++, g += Q4_0x8Format.BlockBytes, a += Q8_0Format.BlockBytes)
        {
            sbyte* x = (sbyte*)(a + 2);
            float da = QuantDot.Scale(a);
            for (int r = 0; r < Q4_0x8Format.GroupRows; r++)
            {
                int s = 0;
                for (int m = 0; m < 4; m++)
                    for (int k = 0; k < 4; k++)
                    {
                        int q = g[Q4_0x8Format.NibbleOffset + 32 * m + 4 * r + k]; // row r's packed byte 4m + k
                        s += ((q & 0x0F) - 8) * x[4 * m + k] + ((q >> 4) - 8) * x[16 + 4 * m + k];
                    }
                acc[r] = MathF.FusedMultiplyAdd(QuantDot.Scale(g + 2 * r) * da, s, acc[r]);
            }
        }
        for (int r = 0; r < Q4_0x8Format.GroupRows; r++) y[r] = acc[r];
    }

    /// <summary>
    /// The eight outputs of the group at <paramref name="g"/> · the activation row <paramref name="a"/>
    /// (its biases at <paramref name="bias"/>) to y[0..7]. AVX2 + FMA; AVX-VNNI when the CPU has it.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void GroupAvx2(byte* g, byte* a, int* bias, int blocks, float* y)
    {
        if (AvxVnni.IsSupported) Group<Q4BatchDot.Vnni>(g, a, bias, blocks, y);
        else Group<Q4BatchDot.NoVnni>(g, a, bias, blocks, y);
    }

    /// <summary><see cref="GroupAvx2"/> with the integer dot chosen by <typeparamref name="TD"/> (tests run both).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Group<TD>(byte* g, byte* a, int* bias, int blocks, float* y) where TD : struct, Q4BatchDot.IBlockDot
    {
        float* half = Fp16Format.Table;
        Vector256<float> acc = Vector256<float>.Zero;
        for (int i = 0; i < blocks; i++, g += Q4_0x8Format.BlockBytes, a += Q8_0Format.BlockBytes)
        {
            // A block column is 144 bytes: three lines ahead cover every line it may touch.
            Sse.Prefetch0(g + PrefetchDistance); Sse.Prefetch0(g + PrefetchDistance + 64); Sse.Prefetch0(g + PrefetchDistance + 128);
            Sse.Prefetch1(g + L2PrefetchDistance); Sse.Prefetch1(g + L2PrefetchDistance + 64); Sse.Prefetch1(g + L2PrefetchDistance + 128);
            Nibbles(g, out var g0, out var g1, out var g2, out var g3, out var g4, out var g5, out var g6, out var g7);
            acc = Q4BatchDot.Accumulate<TD>(acc, Scales(g), half, g0, g1, g2, g3, g4, g5, g6, g7, a, bias[i]);
        }
        Avx.Store(y, acc);
    }

    /// <summary>
    /// The group at <paramref name="g"/> · activation rows <c>a + c·aStride</c> (c &lt; <paramref name="nCols"/> ≤
    /// <see cref="Q4BatchDot.TileColumns"/>), whose biases are at <c>bias + c·blocks</c>: results to y[c·yStride + 0..7].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void TileAvx2(byte* g, byte* a, nint aStride, int* bias, int nCols, int blocks, float* y, nint yStride)
    {
        if (AvxVnni.IsSupported) Tile<Q4BatchDot.Vnni>(g, a, aStride, bias, nCols, blocks, y, yStride);
        else Tile<Q4BatchDot.NoVnni>(g, a, aStride, bias, nCols, blocks, y, yStride);
    }

    /// <summary><see cref="TileAvx2"/> with the integer dot chosen by <typeparamref name="TD"/> (tests run both).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Tile<TD>(byte* g, byte* a, nint aStride, int* bias, int nCols, int blocks, float* y, nint yStride)
        where TD : struct, Q4BatchDot.IBlockDot
    {
        if ((uint)nCols - 1 > Q4BatchDot.TileColumns - 1) throw new ArgumentOutOfRangeException(nameof(nCols));
        float* half = Fp16Format.Table;
        RowTranspose.RowPointers(a, aStride, nCols, out byte* a0, out byte* a1, out byte* a2, out byte* a3, out byte* a4, out byte* a5, out byte* a6, out byte* a7);
        int lc = nCols - 1;
        int* s0 = bias, s1 = bias + Math.Min(1, lc) * blocks, s2 = bias + Math.Min(2, lc) * blocks, s3 = bias + Math.Min(3, lc) * blocks;
        int* s4 = bias + Math.Min(4, lc) * blocks, s5 = bias + Math.Min(5, lc) * blocks, s6 = bias + Math.Min(6, lc) * blocks, s7 = bias + Math.Min(7, lc) * blocks;
        Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default, c6 = default, c7 = default;
        for (int i = 0; i < blocks; i++, g += Q4_0x8Format.BlockBytes)
        {
            Nibbles(g, out var g0, out var g1, out var g2, out var g3, out var g4, out var g5, out var g6, out var g7);
            Vector256<float> dw = Scales(g);
            nint o = (nint)i * Q8_0Format.BlockBytes;
            c0 = Q4BatchDot.Accumulate<TD>(c0, dw, half, g0, g1, g2, g3, g4, g5, g6, g7, a0 + o, s0[i]);
            if (nCols > 1) c1 = Q4BatchDot.Accumulate<TD>(c1, dw, half, g0, g1, g2, g3, g4, g5, g6, g7, a1 + o, s1[i]);
            if (nCols > 2) c2 = Q4BatchDot.Accumulate<TD>(c2, dw, half, g0, g1, g2, g3, g4, g5, g6, g7, a2 + o, s2[i]);
            if (nCols > 3) c3 = Q4BatchDot.Accumulate<TD>(c3, dw, half, g0, g1, g2, g3, g4, g5, g6, g7, a3 + o, s3[i]);
            if (nCols > 4) c4 = Q4BatchDot.Accumulate<TD>(c4, dw, half, g0, g1, g2, g3, g4, g5, g6, g7, a4 + o, s4[i]);
            if (nCols > 5) c5 = Q4BatchDot.Accumulate<TD>(c5, dw, half, g0, g1, g2, g3, g4, g5, g6, g7, a5 + o, s5[i]);
            if (nCols > 6) c6 = Q4BatchDot.Accumulate<TD>(c6, dw, half, g0, g1, g2, g3, g4, g5, g6, g7, a6 + o, s6[i]);
            if (nCols > 7) c7 = Q4BatchDot.Accumulate<TD>(c7, dw, half, g0, g1, g2, g3, g4, g5, g6, g7, a7 + o, s7[i]);
        }
        Avx.Store(y, c0);
        if (nCols > 1) Avx.Store(y + yStride, c1);
        if (nCols > 2) Avx.Store(y + 2 * yStride, c2);
        if (nCols > 3) Avx.Store(y + 3 * yStride, c3);
        if (nCols > 4) Avx.Store(y + 4 * yStride, c4);
        if (nCols > 5) Avx.Store(y + 5 * yStride, c5);
        if (nCols > 6) Avx.Store(y + 6 * yStride, c6);
        if (nCols > 7) Avx.Store(y + 7 * yStride, c7);
    }

    /// <summary>The eight rows' codes of one block column: g_m (m &lt; 4) elements 4m..4m+3, g_{4+m} elements 16+4m..16+4m+3; lane r is row r.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Nibbles(byte* g, out Vector256<byte> g0, out Vector256<byte> g1, out Vector256<byte> g2, out Vector256<byte> g3,
        out Vector256<byte> g4, out Vector256<byte> g5, out Vector256<byte> g6, out Vector256<byte> g7)
    {
        Vector256<byte> mask = Vector256.Create((byte)0x0F);
        Vector256<byte> p0 = Avx.LoadVector256(g + Q4_0x8Format.NibbleOffset), p1 = Avx.LoadVector256(g + Q4_0x8Format.NibbleOffset + 32);
        Vector256<byte> p2 = Avx.LoadVector256(g + Q4_0x8Format.NibbleOffset + 64), p3 = Avx.LoadVector256(g + Q4_0x8Format.NibbleOffset + 96);
        g0 = Avx2.And(p0, mask); g4 = Avx2.And(Avx2.ShiftRightLogical(p0.AsUInt16(), 4).AsByte(), mask);
        g1 = Avx2.And(p1, mask); g5 = Avx2.And(Avx2.ShiftRightLogical(p1.AsUInt16(), 4).AsByte(), mask);
        g2 = Avx2.And(p2, mask); g6 = Avx2.And(Avx2.ShiftRightLogical(p2.AsUInt16(), 4).AsByte(), mask);
        g3 = Avx2.And(p3, mask); g7 = Avx2.And(Avx2.ShiftRightLogical(p3.AsUInt16(), 4).AsByte(), mask);
    }

    /// <summary>
    /// The eight rows' scales of one block column as floats, converted in registers (exact for every finite
    /// half; <see cref="Q4_0x8Format.Repack"/>'s callers keep matrices with infinite or NaN scales in the rows
    /// layout), with integer operations rather than a gather from the half table.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Scales(byte* g) => Fp16Format.ToSingle8Normalised((ushort*)g);
}
