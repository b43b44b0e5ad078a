using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Cria.Numerics.Formats;

namespace Cria.Numerics.Kernels;

/// <summary>
/// Q6_K weights repacked into eight-row groups (<see cref="Q6_Kx8Format"/>) · Q8_K activations: <see cref="Q6KBatchDot"/>'s
/// tile, bit for bit (with or without AVX-VNNI), reading the transposed scales, high bits and low nibbles ready instead of
/// transposing eight rows (thirteen 8 × 16-byte transposes per super-block column). Batches use the tile; decode (one
/// activation row) uses <see cref="Kernel.Group"/>, the tile with one column and its accumulators in registers. Every line is
/// prefetched <see cref="PrefetchDistance"/> bytes ahead. The scalar reference is <see cref="Q6KBatchDot.DotScalar"/> on the
/// plain rows. There is no portable path: the layout is made only on CPUs with AVX2 and FMA.
/// </summary>
public static unsafe class Q6Kx8Dot
{
    /// <summary>
    /// Bytes ahead of the super-block column being read that every line is prefetched. Decode of Llama-3.2-1B Q4_K_M
    /// (tg64 t/s, builds alternated four times): 8 KiB 36.1, 44.0, 44.4, 40.9 against 16 KiB 32.7, 40.6, 43.2, 40.1;
    /// 8 KiB 36.2, 38.5, 42.4, 43.4 against 4 KiB 35.7, 35.0, 40.5, 41.9.
    /// </summary>
    internal const int PrefetchDistance = 8192;

    /// <summary>A repacked group: <c>w0</c> is its address; the other row pointers are not read.</summary>
    internal struct GroupLayout : Q6KBatchDot.IWeightRows
    {
        public static nint BlockStride => Q6_Kx8Format.BlockBytes;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Scales(byte* w0, byte* w1, byte* w2, byte* w3, byte* w4, byte* w5, byte* w6, byte* w7, nint o,
            out Vector256<int> sc0, out Vector256<int> sc1, out Vector256<int> sc2, out Vector256<int> sc3)
        {
            int* p = (int*)(w0 + o + Q6_Kx8Format.ScaleOffset);
            Sse.Prefetch0((byte*)p + PrefetchDistance); Sse.Prefetch0((byte*)p + PrefetchDistance + 64);
            sc0 = Avx.LoadVector256(p); sc1 = Avx.LoadVector256(p + 8); sc2 = Avx.LoadVector256(p + 16); sc3 = Avx.LoadVector256(p + 24);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Highs(byte* w0, byte* w1, byte* w2, byte* w3, byte* w4, byte* w5, byte* w6, byte* w7, nint o, int h,
            out Vector256<int> h0, out Vector256<int> h1, out Vector256<int> h2, out Vector256<int> h3,
            out Vector256<int> h4, out Vector256<int> h5, out Vector256<int> h6, out Vector256<int> h7) =>
            GroupVectors.Eight((int*)(w0 + o + Q6_Kx8Format.HighOffset + 256 * h), PrefetchDistance, out h0, out h1, out h2, out h3, out h4, out h5, out h6, out h7);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Lows(byte* w0, byte* w1, byte* w2, byte* w3, byte* w4, byte* w5, byte* w6, byte* w7, nint o, int h, int part,
            out Vector256<int> p0, out Vector256<int> p1, out Vector256<int> p2, out Vector256<int> p3,
            out Vector256<int> p4, out Vector256<int> p5, out Vector256<int> p6, out Vector256<int> p7) =>
            GroupVectors.Eight((int*)(w0 + o + Q6_Kx8Format.LowOffset + 512 * h + 256 * part), PrefetchDistance, out p0, out p1, out p2, out p3, out p4, out p5, out p6, out p7);

        // Exact for every finite half; the loader keeps matrices with an infinite or NaN d in rows.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> D(byte* w0, byte* w1, byte* w2, byte* w3, byte* w4, byte* w5, byte* w6, byte* w7, nint o) =>
            Fp16Format.ToSingle8Normalised((ushort*)(w0 + o + Q6_Kx8Format.DOffset));
    }

    /// <summary><see cref="Kernel.Tile"/> with the integer steps chosen by <typeparamref name="TD"/> (tests run both).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Tile<TD>(byte* g, byte* a, nint aStride, int nCols, int blocks, float* y, nint yStride) where TD : struct, IntegerDots.ISteps
    {
        if ((uint)nCols - 1 > Q6KBatchDot.TileColumns - 1) throw new ArgumentOutOfRangeException(nameof(nCols));
        Q6KBatchDot.Tile<GroupLayout, TD>(g, g, g, g, g, g, g, g, Q6_Kx8Format.GroupRows, a, aStride, nCols, blocks, y, yStride);
    }

    /// <summary>
    /// <see cref="Kernel.Group"/> with the integer steps of <typeparamref name="TD"/> (tests run both): per super-block the same
    /// integer S = Σ_k scale_k·D_k − 32·Σ_k scale_k·bsum_k as the tile (added in another order, which integers allow), then
    /// the same fused multiply-add.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Group<TD>(byte* g, byte* a, int blocks, float* y) where TD : struct, IntegerDots.ISteps
    {
        Vector256<float> acc = Vector256<float>.Zero;
        Vector256<byte> nibble = Vector256.Create((byte)0x0F), high = Vector256.Create((byte)0x30);
        for (int i = 0; i < blocks; i++, g += Q6_Kx8Format.BlockBytes, a += Q8_KFormat.BlockBytes)
        {
            GroupLayout.Scales(g, g, g, g, g, g, g, g, 0, out Vector256<int> sc0, out Vector256<int> sc1, out Vector256<int> sc2, out Vector256<int> sc3);
            // Σ_k scale_k·bsum_k: each scale pair formed where it is used (eight pairs held at once would spill registers).
            int* bs = (int*)(a + 260); // bsum pairs (bsum_2l, bsum_2l+1) as dwords
            Vector256<int> off = Avx2.MultiplyAddAdjacent(Q6KBatchDot.SignedPair(sc0, 0), Vector256.Create(bs[0]).AsInt16());
            off = TD.Shorts(off, Q6KBatchDot.SignedPair(sc0, 2), Vector256.Create(bs[1]).AsInt16());
            off = TD.Shorts(off, Q6KBatchDot.SignedPair(sc1, 0), Vector256.Create(bs[2]).AsInt16());
            off = TD.Shorts(off, Q6KBatchDot.SignedPair(sc1, 2), Vector256.Create(bs[3]).AsInt16());
            off = TD.Shorts(off, Q6KBatchDot.SignedPair(sc2, 0), Vector256.Create(bs[4]).AsInt16());
            off = TD.Shorts(off, Q6KBatchDot.SignedPair(sc2, 2), Vector256.Create(bs[5]).AsInt16());
            off = TD.Shorts(off, Q6KBatchDot.SignedPair(sc3, 0), Vector256.Create(bs[6]).AsInt16());
            off = TD.Shorts(off, Q6KBatchDot.SignedPair(sc3, 2), Vector256.Create(bs[7]).AsInt16());

            // Sub-blocks 8h + 2·part (+1) and 8h + 2·part + 4 (+1): scales k of dword k / 4, byte k % 4.
            byte* x = a + 4;
            GroupLayout.Highs(g, g, g, g, g, g, g, g, 0, 0, out Vector256<int> h0, out Vector256<int> h1, out Vector256<int> h2, out Vector256<int> h3,
                out Vector256<int> h4, out Vector256<int> h5, out Vector256<int> h6, out Vector256<int> h7);
            Vector256<int> s0 = Part<TD>(g, 0, 0, x, h0, h1, h2, h3, h4, h5, h6, h7, sc0, 0, sc1, 0, nibble, high);
            Vector256<int> s1 = Part<TD>(g, 0, 1, x + 32, h0, h1, h2, h3, h4, h5, h6, h7, sc0, 2, sc1, 2, nibble, high);
            GroupLayout.Highs(g, g, g, g, g, g, g, g, 0, 1, out h0, out h1, out h2, out h3, out h4, out h5, out h6, out h7);
            s0 = Avx2.Add(s0, Part<TD>(g, 1, 0, x + 128, h0, h1, h2, h3, h4, h5, h6, h7, sc2, 0, sc3, 0, nibble, high));
            s1 = Avx2.Add(s1, Part<TD>(g, 1, 1, x + 160, h0, h1, h2, h3, h4, h5, h6, h7, sc2, 2, sc3, 2, nibble, high));

            Vector256<int> sum = Avx2.Subtract(Avx2.Add(s0, s1), Avx2.ShiftLeftLogical(off, 5));
            Vector256<float> dw = GroupLayout.D(g, g, g, g, g, g, g, g, 0);
            acc = Fma.MultiplyAdd(Avx.Multiply(dw, Vector256.Create(*(float*)a)), Avx.ConvertToVector256Single(sum), acc);
        }
        Avx.Store(y, acc);
    }

    /// <summary>
    /// One part (32 low-nibble bytes: the low-nibble chunk and the high-nibble chunk) of half <paramref name="h"/> for the eight
    /// rows against the activations at <paramref name="x"/>: Σ scale_k·D_k over its four sixteen-element sub-blocks. Sub-blocks
    /// 8h + 2·part and +1 take scale bytes <paramref name="kLo"/>, +1 of <paramref name="scLo"/>; sub-blocks 8h + 2·part + 4
    /// and +5 bytes <paramref name="kHi"/>, +1 of <paramref name="scHi"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Part<TD>(byte* g, int h, int part, byte* x,
        Vector256<int> h0, Vector256<int> h1, Vector256<int> h2, Vector256<int> h3, Vector256<int> h4, Vector256<int> h5, Vector256<int> h6, Vector256<int> h7,
        Vector256<int> scLo, int kLo, Vector256<int> scHi, int kHi, Vector256<byte> nibble, Vector256<byte> high) where TD : struct, IntegerDots.ISteps
    {
        GroupLayout.Lows(g, g, g, g, g, g, g, g, 0, h, part, out Vector256<int> p0, out Vector256<int> p1, out Vector256<int> p2, out Vector256<int> p3,
            out Vector256<int> p4, out Vector256<int> p5, out Vector256<int> p6, out Vector256<int> p7);
        bool second = part == 1;
        Vector256<int> s = Avx2.MultiplyLow(TD.Quarter(Q6KBatchDot.Low(p0, h0, second, nibble, high), Q6KBatchDot.Low(p1, h1, second, nibble, high),
            Q6KBatchDot.Low(p2, h2, second, nibble, high), Q6KBatchDot.Low(p3, h3, second, nibble, high), x), Q6KBatchDot.Scale(scLo, kLo));
        s = Avx2.Add(s, Avx2.MultiplyLow(TD.Quarter(Q6KBatchDot.Low(p4, h4, second, nibble, high), Q6KBatchDot.Low(p5, h5, second, nibble, high),
            Q6KBatchDot.Low(p6, h6, second, nibble, high), Q6KBatchDot.Low(p7, h7, second, nibble, high), x + 16), Q6KBatchDot.Scale(scLo, kLo + 1)));
        s = Avx2.Add(s, Avx2.MultiplyLow(TD.Quarter(Q6KBatchDot.High(p0, h0, second, nibble, high), Q6KBatchDot.High(p1, h1, second, nibble, high),
            Q6KBatchDot.High(p2, h2, second, nibble, high), Q6KBatchDot.High(p3, h3, second, nibble, high), x + 64), Q6KBatchDot.Scale(scHi, kHi)));
        return Avx2.Add(s, Avx2.MultiplyLow(TD.Quarter(Q6KBatchDot.High(p4, h4, second, nibble, high), Q6KBatchDot.High(p5, h5, second, nibble, high),
            Q6KBatchDot.High(p6, h6, second, nibble, high), Q6KBatchDot.High(p7, h7, second, nibble, high), x + 80), Q6KBatchDot.Scale(scHi, kHi + 1)));
    }

    /// <summary>This class's kernels with the integer steps this CPU has (AVX-VNNI or plain AVX2), for <see cref="MatMul"/> and the tests.</summary>
    internal struct Kernel : IGroupKernel
    {
        public static int BlockSize => Q6_KFormat.BlockSize;
        public static int TileColumns => Q6KBatchDot.TileColumns;

        /// <summary>
        /// Decode: the group at <paramref name="g"/> · the one activation row at <paramref name="a"/>, results to y[0..7]; the
        /// same bits as <see cref="Tile{TD}"/> with one column. AVX2 + FMA; AVX-VNNI when the CPU has it.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public static void Group(byte* g, byte* a, int blocks, float* y)
        {
            if (AvxVnni.IsSupported) Q6Kx8Dot.Group<IntegerDots.Vnni>(g, a, blocks, y);
            else Q6Kx8Dot.Group<IntegerDots.NoVnni>(g, a, blocks, y);
        }

        /// <summary>
        /// The group at <paramref name="g"/> · activation rows <c>a + c·aStride</c> (c &lt; <paramref name="nCols"/> ≤
        /// <see cref="Q6KBatchDot.TileColumns"/>): results to y[c·yStride + 0..7]. AVX2 + FMA; AVX-VNNI when the CPU has it.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public static void Tile(byte* g, byte* a, nint aStride, int nCols, int blocks, float* y, nint yStride)
        {
            if (AvxVnni.IsSupported) Q6Kx8Dot.Tile<IntegerDots.Vnni>(g, a, aStride, nCols, blocks, y, yStride);
            else Q6Kx8Dot.Tile<IntegerDots.NoVnni>(g, a, aStride, nCols, blocks, y, yStride);
        }
    }
}
