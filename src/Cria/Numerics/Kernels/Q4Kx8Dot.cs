using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Cria.Numerics.Formats;

namespace Cria.Numerics.Kernels;

/// <summary>
/// Q4_K weights repacked into eight-row groups (<see cref="Q4_Kx8Format"/>) · Q8_K activations:
/// <see cref="Q4KBatchDot"/>'s tile, bit for bit (with or without AVX-VNNI), reading the transposed headers and quants ready
/// instead of transposing eight rows (per super-block column of eight rows: 35 loads instead of 70 loads and
/// 52 shuffles). Decode (one activation row) and batches use the same tile; every line is prefetched
/// <see cref="PrefetchDistance"/> bytes ahead. <see cref="GroupScalar"/> is the scalar twin. There is no
/// portable path: the layout is made only on CPUs with AVX2 and FMA.
/// </summary>
public static unsafe class Q4Kx8Dot
{
    /// <summary>
    /// Bytes ahead of the super-block column being read that every line is prefetched. Measured in-process (decode t/s,
    /// repacked / rows layout, Q4_K_M files, medians of 8–10 alternations): TinyLlama 2 KiB 1.04, 4 KiB 1.05, 8 KiB 1.10,
    /// 12 KiB 1.08; Llama-3.2-1B 4 KiB 1.04, 8 KiB 1.07.
    /// </summary>
    internal const int PrefetchDistance = 8192;

    /// <summary>A repacked group: <c>w0</c> is its address; the other row pointers are not read.</summary>
    internal struct GroupLayout : Q4KBatchDot.IWeightRows
    {
        public static nint BlockStride => Q4_Kx8Format.BlockBytes;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Header(byte* w0, byte* w1, byte* w2, byte* w3, byte* w4, byte* w5, byte* w6, byte* w7, nint o,
            out Vector256<int> u0, out Vector256<int> u1, out Vector256<int> u2, out Vector256<float> dw, out Vector256<float> dmw)
        {
            byte* p = w0 + o;
            Sse.Prefetch0(p + PrefetchDistance); Sse.Prefetch0(p + PrefetchDistance + 64);
            u0 = Avx.LoadVector256((int*)(p + Q4_Kx8Format.HeaderOffset));
            u1 = Avx.LoadVector256((int*)(p + Q4_Kx8Format.HeaderOffset + 32));
            u2 = Avx.LoadVector256((int*)(p + Q4_Kx8Format.HeaderOffset + 64));
            // Exact for every finite half; the loader keeps matrices with an infinite or NaN d or dmin in rows.
            dw = Fp16Format.ToSingle8Normalised((ushort*)p);
            dmw = Fp16Format.ToSingle8Normalised((ushort*)(p + Q4_Kx8Format.MinOffset));
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Quants(byte* w0, byte* w1, byte* w2, byte* w3, byte* w4, byte* w5, byte* w6, byte* w7, nint o, int g,
            out Vector256<int> p0, out Vector256<int> p1, out Vector256<int> p2, out Vector256<int> p3,
            out Vector256<int> p4, out Vector256<int> p5, out Vector256<int> p6, out Vector256<int> p7)
        {
            int* q = (int*)(w0 + o + Q4_Kx8Format.QuantOffset + 256 * g);
            byte* ahead = (byte*)q + PrefetchDistance;
            Sse.Prefetch0(ahead); Sse.Prefetch0(ahead + 64); Sse.Prefetch0(ahead + 128); Sse.Prefetch0(ahead + 192);
            p0 = Avx.LoadVector256(q); p1 = Avx.LoadVector256(q + 8); p2 = Avx.LoadVector256(q + 16); p3 = Avx.LoadVector256(q + 24);
            p4 = Avx.LoadVector256(q + 32); p5 = Avx.LoadVector256(q + 40); p6 = Avx.LoadVector256(q + 48); p7 = Avx.LoadVector256(q + 56);
        }
    }

    /// <summary>
    /// The group at <paramref name="g"/> · activation rows <c>a + c·aStride</c> (c &lt; <paramref name="nCols"/> ≤
    /// <see cref="Q4KBatchDot.TileColumns"/>): results to y[c·yStride + 0..7]. AVX2 + FMA; AVX-VNNI when the CPU has it.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Tile(byte* g, byte* a, nint aStride, int nCols, int blocks, float* y, nint yStride)
    {
        if (AvxVnni.IsSupported) Tile<IntegerDots.Vnni>(g, a, aStride, nCols, blocks, y, yStride);
        else Tile<IntegerDots.NoVnni>(g, a, aStride, nCols, blocks, y, yStride);
    }

    /// <summary><see cref="Tile"/> with the integer steps chosen by <typeparamref name="TD"/> (tests run both).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Tile<TD>(byte* g, byte* a, nint aStride, int nCols, int blocks, float* y, nint yStride) where TD : struct, IntegerDots.ISteps
    {
        if ((uint)nCols - 1 > Q4KBatchDot.TileColumns - 1) throw new ArgumentOutOfRangeException(nameof(nCols));
        Q4KBatchDot.Tile<GroupLayout, TD>(g, g, g, g, g, g, g, g, Q4_Kx8Format.GroupRows, a, aStride, nCols, blocks, y, yStride);
    }

    /// <summary>Scalar twin for the tests: each row of the group unpacked and multiplied in <see cref="Q4KBatchDot.DotScalar"/>'s order.</summary>
    internal static void GroupScalar(byte* g, byte* a, int blocks, float* y)
    {
        byte[] row = new byte[blocks * Q4_KFormat.BlockBytes];
        fixed (byte* r = row)
            for (int lane = 0; lane < Q4_Kx8Format.GroupRows; lane++)
            {
                Q4_Kx8Format.UnpackRow(g, lane, r, blocks);
                y[lane] = Q4KBatchDot.DotScalar(r, a, blocks);
            }
    }
}
