using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Cria.Numerics.Formats;

namespace Cria.Numerics.Kernels;

/// <summary>
/// Q4_K weights repacked into eight-row groups (<see cref="Q4_Kx8Format"/>) · Q8_K activations:
/// <see cref="Q4KBatchDot"/>'s tile, bit for bit (with or without AVX-VNNI), reading the transposed headers and quants ready
/// instead of transposing eight rows (per super-block column of eight rows: 35 loads instead of 70 loads and
/// 52 shuffles). Batches use the tile; decode (one activation row) uses <see cref="Kernel.Group"/>, the tile with one column
/// and its accumulators in registers. Every line is prefetched <see cref="PrefetchDistance"/> bytes ahead. The scalar
/// reference is <see cref="Q4KBatchDot.DotScalar"/> on the plain rows. There is no portable path: the layout is made only
/// on CPUs with AVX2 and FMA.
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
            out Vector256<int> p4, out Vector256<int> p5, out Vector256<int> p6, out Vector256<int> p7) =>
            GroupVectors.Eight((int*)(w0 + o + Q4_Kx8Format.QuantOffset + 256 * g), PrefetchDistance, out p0, out p1, out p2, out p3, out p4, out p5, out p6, out p7);
    }

    /// <summary><see cref="Kernel.Tile"/> with the integer steps chosen by <typeparamref name="TD"/> (tests run both).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Tile<TD>(byte* g, byte* a, nint aStride, int nCols, int blocks, float* y, nint yStride) where TD : struct, IntegerDots.ISteps
    {
        if ((uint)nCols - 1 > Q4KBatchDot.TileColumns - 1) throw new ArgumentOutOfRangeException(nameof(nCols));
        Q4KBatchDot.Tile<GroupLayout, TD>(g, g, g, g, g, g, g, g, Q4_Kx8Format.GroupRows, a, aStride, nCols, blocks, y, yStride);
    }

    /// <summary>
    /// <see cref="Kernel.Group"/> with the integer steps of <typeparamref name="TD"/> (tests run both). <see cref="Kernel.Tile"/> with one column,
    /// its accumulators in registers and the four 64-element groups of a super-block unrolled into two integer chains
    /// (the super-block's integer sum is the same, so are the float steps).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Group<TD>(byte* g, byte* a, int blocks, float* y) where TD : struct, IntegerDots.ISteps
    {
        Vector256<float> acc = Vector256<float>.Zero, accMin = Vector256<float>.Zero;
        Vector256<byte> nibble = Vector256.Create((byte)0x0F);
        Vector256<byte> scale0 = Q4KBatchDot.ByteMask(0), scale1 = Q4KBatchDot.ByteMask(1), scale2 = Q4KBatchDot.ByteMask(2), scale3 = Q4KBatchDot.ByteMask(3);
        Vector256<byte> pair0 = Q4KBatchDot.PairMask(0), pair2 = Q4KBatchDot.PairMask(2);
        for (int i = 0; i < blocks; i++, g += Q4_Kx8Format.BlockBytes, a += Q8_KFormat.BlockBytes)
        {
            GroupLayout.Header(g, g, g, g, g, g, g, g, 0, out Vector256<int> u0, out Vector256<int> u1, out Vector256<int> u2, out Vector256<float> dw, out Vector256<float> dmw);
            Q4KBatchDot.ScalesAndMins(u0, u1, u2, out Vector256<int> scLow, out Vector256<int> scHigh, out Vector256<int> mnLow, out Vector256<int> mnHigh);

            byte* x = a + 4;
            Vector256<int> s0 = Quants<TD>(Vector256<int>.Zero, g, 0, x, scLow.AsByte(), scale0, scale1, nibble);
            Vector256<int> s1 = Quants<TD>(Vector256<int>.Zero, g, 1, x + 64, scLow.AsByte(), scale2, scale3, nibble);
            s0 = Quants<TD>(s0, g, 2, x + 128, scHigh.AsByte(), scale0, scale1, nibble);
            s1 = Quants<TD>(s1, g, 3, x + 192, scHigh.AsByte(), scale2, scale3, nibble);

            Vector256<int> mins = Q4KBatchDot.MinSums<TD>(Avx2.Shuffle(mnLow.AsByte(), pair0).AsInt16(), Avx2.Shuffle(mnLow.AsByte(), pair2).AsInt16(),
                Avx2.Shuffle(mnHigh.AsByte(), pair0).AsInt16(), Avx2.Shuffle(mnHigh.AsByte(), pair2).AsInt16(), a);
            Vector256<float> da = Vector256.Create(*(float*)a);
            acc = Fma.MultiplyAdd(Avx.Multiply(dw, da), Avx.ConvertToVector256Single(Avx2.Add(s0, s1)), acc);
            accMin = Fma.MultiplyAdd(Avx.Multiply(dmw, da), Avx.ConvertToVector256Single(mins), accMin);
        }
        Avx.Store(y, Avx.Subtract(acc, accMin));
    }

    /// <summary>
    /// <paramref name="s"/> + the scaled sums of 64-element group <paramref name="q"/> (sub-blocks 2q and 2q+1) of the eight rows
    /// against the activations at <paramref name="x"/>; the scales are bytes of <paramref name="sc"/> picked by the two masks.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Quants<TD>(Vector256<int> s, byte* g, int q, byte* x, Vector256<byte> sc, Vector256<byte> maskA, Vector256<byte> maskB,
        Vector256<byte> nibble) where TD : struct, IntegerDots.ISteps
    {
        GroupLayout.Quants(g, g, g, g, g, g, g, g, 0, q, out Vector256<int> p0, out Vector256<int> p1, out Vector256<int> p2, out Vector256<int> p3,
            out Vector256<int> p4, out Vector256<int> p5, out Vector256<int> p6, out Vector256<int> p7);
        Vector256<short> lows = TD.SubBlockShorts(Avx2.And(p0.AsByte(), nibble), Avx2.And(p1.AsByte(), nibble), Avx2.And(p2.AsByte(), nibble),
            Avx2.And(p3.AsByte(), nibble), Avx2.And(p4.AsByte(), nibble), Avx2.And(p5.AsByte(), nibble), Avx2.And(p6.AsByte(), nibble),
            Avx2.And(p7.AsByte(), nibble), x);
        s = TD.Shorts(s, lows, Avx2.Shuffle(sc, maskA).AsInt16());
        Vector256<short> highs = TD.SubBlockShorts(High(p0, nibble), High(p1, nibble), High(p2, nibble), High(p3, nibble),
            High(p4, nibble), High(p5, nibble), High(p6, nibble), High(p7, nibble), x + 32);
        return TD.Shorts(s, highs, Avx2.Shuffle(sc, maskB).AsInt16());
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> High(Vector256<int> p, Vector256<byte> nibble) => Avx2.And(Avx2.ShiftRightLogical(p.AsUInt16(), 4).AsByte(), nibble);

    /// <summary>This class's kernels with the integer steps this CPU has (AVX-VNNI or plain AVX2), for <see cref="MatMul"/> and the tests.</summary>
    internal struct Kernel : IGroupKernel
    {
        public static int BlockSize => Q4_KFormat.BlockSize;
        public static int TileColumns => Q4KBatchDot.TileColumns;

        /// <summary>
        /// Decode: the group at <paramref name="g"/> · the one activation row at <paramref name="a"/>, results to y[0..7];
        /// the same bits as <see cref="Tile{TD}"/> with one column. AVX2 + FMA; AVX-VNNI when the CPU has it.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public static void Group(byte* g, byte* a, int blocks, float* y)
        {
            if (AvxVnni.IsSupported) Q4Kx8Dot.Group<IntegerDots.Vnni>(g, a, blocks, y);
            else Q4Kx8Dot.Group<IntegerDots.NoVnni>(g, a, blocks, y);
        }

        /// <summary>
        /// The group at <paramref name="g"/> · activation rows <c>a + c·aStride</c> (c &lt; <paramref name="nCols"/> ≤
        /// <see cref="Q4KBatchDot.TileColumns"/>): results to y[c·yStride + 0..7]. AVX2 + FMA; AVX-VNNI when the CPU has it.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public static void Tile(byte* g, byte* a, nint aStride, int nCols, int blocks, float* y, nint yStride)
        {
            if (AvxVnni.IsSupported) Q4Kx8Dot.Tile<IntegerDots.Vnni>(g, a, aStride, nCols, blocks, y, yStride);
            else Q4Kx8Dot.Tile<IntegerDots.NoVnni>(g, a, aStride, nCols, blocks, y, yStride);
        }
    }
}
