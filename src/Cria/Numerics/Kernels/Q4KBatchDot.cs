using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Cria.Numerics.Formats;

namespace Cria.Numerics.Kernels;

/// <summary>
/// Q4_K weights · Q8_K activations for several activation rows at once (prompt processing and
/// batched decode, on CPUs with AVX-VNNI). One activation row keeps ggml's vec_dot
/// (<see cref="KQuantDot.Q4_KQ8_K"/>), unchanged.
/// <para>
/// Order of the arithmetic, per output and super-block: the scaled integer sum
/// S = Σ_j scale_j · Σ_{i in sub-block j} q_i·a_i and the min sum M = Σ_j min_j · Σ_{i in j} a_i are
/// formed exactly as int32, then acc = fma(d_w·d_a, (float)S, acc) and accMin = fma(dmin_w·d_a,
/// (float)M, accMin), super-block after super-block; the output is acc − accMin. This is the order
/// of llama.cpp's repacked q4_K_8x8 kernels (one integer per super-block and output before the
/// conversion), not ggml's vec_dot order (eight lane sums converted separately), so the two differ
/// by float rounding only.
/// </para>
/// <para>
/// The kernel takes eight weight rows and up to sixteen activation rows (the unpacked weights of a
/// group serve all of them: sixteen rather than eight made a tile about a tenth cheaper per output).
/// Per super-block the eight rows' headers are transposed so lane r of every vector belongs to row r,
/// and their scales and mins are unpacked with 32-bit mask-and-shift steps on all eight rows at once.
/// Per group of 64 elements the eight rows' packed nibbles are transposed (8 rows × 8 dwords), giving
/// sixteen vectors whose lane r holds four 4-bit codes of row r; each group of four activation bytes
/// is broadcast and multiplied into all eight rows with one vpdpbusd; each 32-element sub-block's sum is held as two
/// partial sums in a lane's two shorts and one vpdpwssd adds scale · (both) to S
/// (<see cref="IntegerDots.ISteps.SubBlockShorts"/>). The weights are read in place (no repacking, no extra memory).
/// <see cref="DotScalar"/> is the scalar twin (same bits).
/// </para>
/// </summary>
public static unsafe class Q4KBatchDot
{
    /// <summary>Activation rows per <see cref="Tile"/> call (at most).</summary>
    internal const int TileColumns = 16;

    /// <summary>Weight rows per <see cref="Tile"/> call.</summary>
    internal const int TileRows = 8;

    private const int WBytes = Q4_KFormat.BlockBytes; // 144
    private const int ABytes = Q8_KFormat.BlockBytes; // 292

    /// <summary>Scalar twin: one output in this class's order.</summary>
    internal static float DotScalar(byte* w, byte* a, int blocks)
    {
        float acc = 0, accMin = 0;
        for (int i = 0; i < blocks; i++, w += WBytes, a += ABytes)
        {
            sbyte* q8 = (sbyte*)(a + 4);
            short* bsums = (short*)(a + 260);
            int s = 0, m = 0;
            for (int j = 0; j < 8; j++)
            {
                KQuantMath.ScaleMinK4(j, w + 4, out int sc, out int mn);
                int dot = 0;
                for (int e = 0; e < 32; e++)
                {
                    int b = w[16 + 32 * (j / 2) + e];
                    int code = (j & 1) == 0 ? b & 0xF : b >> 4;
                    dot += code * q8[32 * j + e];
                }
                s += sc * dot;
                m += mn * (bsums[2 * j] + bsums[2 * j + 1]);
            }
            float da = *(float*)a;
            acc = MathF.FusedMultiplyAdd(Fp16Format.ToSingle(*(ushort*)w) * da, s, acc);
            accMin = MathF.FusedMultiplyAdd(Fp16Format.ToSingle(*(ushort*)(w + 2)) * da, m, accMin);
        }
        return acc - accMin;
    }

    /// <summary>
    /// Rows <c>w + i·wStride</c> (i &lt; <paramref name="nRows"/> ≤ 8) · activation rows <c>a + c·aStride</c>
    /// (c &lt; <paramref name="nCols"/> ≤ <see cref="TileColumns"/>): results to y[c·yStride + i]. Requires <see cref="CpuFeatures.VnniTiles"/>.
    /// </summary>
    internal static void Tile(byte* w, nint wStride, int nRows, byte* a, nint aStride, int nCols, int blocks, float* y, nint yStride) =>
        Tile<IntegerDots.Vnni>(w, wStride, nRows, a, aStride, nCols, blocks, y, yStride);

    /// <summary>
    /// <see cref="Tile"/> with the integer steps of <typeparamref name="TD"/>: <see cref="IntegerDots.Vnni"/> (needs
    /// <see cref="CpuFeatures.VnniTiles"/>) or <see cref="IntegerDots.NoVnni"/> (AVX2); the same integers, so the same bits.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Tile<TD>(byte* w, nint wStride, int nRows, byte* a, nint aStride, int nCols, int blocks, float* y, nint yStride)
        where TD : struct, IntegerDots.ISteps
    {
        if ((uint)nRows - 1 > TileRows - 1 || (uint)nCols - 1 > TileColumns - 1) throw new ArgumentOutOfRangeException(nameof(nCols));
        RowTranspose.RowPointers(w, wStride, nRows, out byte* w0, out byte* w1, out byte* w2, out byte* w3, out byte* w4, out byte* w5, out byte* w6, out byte* w7);
        Tile<RowsLayout, TD>(w0, w1, w2, w3, w4, w5, w6, w7, nRows, a, aStride, nCols, blocks, y, yStride);
    }

    /// <summary>Where a tile's eight rows come from: the file's rows (transposed in registers) or a repacked group (<see cref="Q4_Kx8Format"/>).</summary>
    internal interface IWeightRows
    {
        /// <summary>Bytes from one super-block column to the next.</summary>
        static abstract nint BlockStride { get; }

        /// <summary>Header dwords 1..3 of the eight rows (lane r: row r) and their d and dmin as floats, of the super-block column at offset <paramref name="o"/>.</summary>
        static abstract void Header(byte* w0, byte* w1, byte* w2, byte* w3, byte* w4, byte* w5, byte* w6, byte* w7, nint o,
            out Vector256<int> u0, out Vector256<int> u1, out Vector256<int> u2, out Vector256<float> dw, out Vector256<float> dmw);

        /// <summary>Quant dwords 0..7 of group <paramref name="g"/> of the eight rows (lane r: row r).</summary>
        static abstract void Quants(byte* w0, byte* w1, byte* w2, byte* w3, byte* w4, byte* w5, byte* w6, byte* w7, nint o, int g,
            out Vector256<int> p0, out Vector256<int> p1, out Vector256<int> p2, out Vector256<int> p3,
            out Vector256<int> p4, out Vector256<int> p5, out Vector256<int> p6, out Vector256<int> p7);
    }

    /// <summary>Eight plain Q4_K rows, transposed in registers.</summary>
    internal struct RowsLayout : IWeightRows
    {
        public static nint BlockStride => WBytes;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Header(byte* w0, byte* w1, byte* w2, byte* w3, byte* w4, byte* w5, byte* w6, byte* w7, nint o,
            out Vector256<int> u0, out Vector256<int> u1, out Vector256<int> u2, out Vector256<float> dw, out Vector256<float> dmw)
        {
            float* half = Fp16Format.Table;
            RowTranspose.Eight(w0, w1, w2, w3, w4, w5, w6, w7, o, out _, out u0, out u1, out u2);
            dw = Vector256.Create(half[*(ushort*)(w0 + o)], half[*(ushort*)(w1 + o)], half[*(ushort*)(w2 + o)], half[*(ushort*)(w3 + o)],
                                  half[*(ushort*)(w4 + o)], half[*(ushort*)(w5 + o)], half[*(ushort*)(w6 + o)], half[*(ushort*)(w7 + o)]);
            dmw = Vector256.Create(half[*(ushort*)(w0 + o + 2)], half[*(ushort*)(w1 + o + 2)], half[*(ushort*)(w2 + o + 2)], half[*(ushort*)(w3 + o + 2)],
                                   half[*(ushort*)(w4 + o + 2)], half[*(ushort*)(w5 + o + 2)], half[*(ushort*)(w6 + o + 2)], half[*(ushort*)(w7 + o + 2)]);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Quants(byte* w0, byte* w1, byte* w2, byte* w3, byte* w4, byte* w5, byte* w6, byte* w7, nint o, int g,
            out Vector256<int> p0, out Vector256<int> p1, out Vector256<int> p2, out Vector256<int> p3,
            out Vector256<int> p4, out Vector256<int> p5, out Vector256<int> p6, out Vector256<int> p7)
        {
            nint q = o + 16 + 32 * g;
            RowTranspose.Eight(w0, w1, w2, w3, w4, w5, w6, w7, q, out p0, out p1, out p2, out p3);
            RowTranspose.Eight(w0, w1, w2, w3, w4, w5, w6, w7, q + 16, out p4, out p5, out p6, out p7);
        }
    }

    /// <summary>
    /// The tile over eight rows given by <typeparamref name="TW"/> (<paramref name="nRows"/> of them stored);
    /// a repacked group passes its address as <paramref name="w0"/> (the other pointers are not read).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Tile<TW, TD>(byte* w0, byte* w1, byte* w2, byte* w3, byte* w4, byte* w5, byte* w6, byte* w7, int nRows,
        byte* a, nint aStride, int nCols, int blocks, float* y, nint yStride) where TW : struct, IWeightRows where TD : struct, IntegerDots.ISteps
    {

        // Per activation row: the float accumulators (acc, accMin) and this super-block's integer sum S.
        Vector256<float>* acc = stackalloc Vector256<float>[2 * TileColumns];
        Vector256<int>* sums = stackalloc Vector256<int>[TileColumns];
        for (int c = 0; c < 2 * TileColumns; c++) acc[c] = Vector256<float>.Zero;

        Vector256<byte> nibble = Vector256.Create((byte)0x0F);
        // Built once: as loop-dependent constants the JIT assembles them with scalar inserts every group.
        Vector256<byte> scale0 = ByteMask(0), scale1 = ByteMask(1), scale2 = ByteMask(2), scale3 = ByteMask(3);
        Vector256<byte> pair0 = PairMask(0), pair2 = PairMask(2);
        for (int i = 0; i < blocks; i++)
        {
            nint o = (nint)i * TW.BlockStride;
            // Headers (d, dmin, 12 bytes of scales and mins): dword k of row r to lane r of u_{k-1}.
            TW.Header(w0, w1, w2, w3, w4, w5, w6, w7, o, out Vector256<int> u0, out Vector256<int> u1, out Vector256<int> u2, out Vector256<float> dw, out Vector256<float> dmw);
            ScalesAndMins(u0, u1, u2, out Vector256<int> scLow, out Vector256<int> scHigh, out Vector256<int> mnLow, out Vector256<int> mnHigh);
            // Min pairs (min_2l, min_2l+1) as two shorts per lane, for vpmaddwd with the activation's sub-block sums.
            Vector256<short> mp0 = Avx2.Shuffle(mnLow.AsByte(), pair0).AsInt16(), mp1 = Avx2.Shuffle(mnLow.AsByte(), pair2).AsInt16();
            Vector256<short> mp2 = Avx2.Shuffle(mnHigh.AsByte(), pair0).AsInt16(), mp3 = Avx2.Shuffle(mnHigh.AsByte(), pair2).AsInt16();

            for (int g = 0; g < 4; g++)
            {
                // Scales of sub-blocks 2g (low nibbles of the group) and 2g+1 (high nibbles), twice per lane (two shorts).
                Vector256<byte> sc = (g < 2 ? scLow : scHigh).AsByte();
                Vector256<short> scA = Avx2.Shuffle(sc, (g & 1) == 0 ? scale0 : scale2).AsInt16();
                Vector256<short> scB = Avx2.Shuffle(sc, (g & 1) == 0 ? scale1 : scale3).AsInt16();
                TW.Quants(w0, w1, w2, w3, w4, w5, w6, w7, o, g, out Vector256<int> p0, out Vector256<int> p1, out Vector256<int> p2, out Vector256<int> p3,
                    out Vector256<int> p4, out Vector256<int> p5, out Vector256<int> p6, out Vector256<int> p7);
                // Lane r of lo_m: elements 4m..4m+3 of sub-block 2g of row r; of hi_m: the same of sub-block 2g+1.
                Vector256<byte> lo0 = Avx2.And(p0.AsByte(), nibble), hi0 = Avx2.And(Avx2.ShiftRightLogical(p0.AsUInt16(), 4).AsByte(), nibble);
                Vector256<byte> lo1 = Avx2.And(p1.AsByte(), nibble), hi1 = Avx2.And(Avx2.ShiftRightLogical(p1.AsUInt16(), 4).AsByte(), nibble);
                Vector256<byte> lo2 = Avx2.And(p2.AsByte(), nibble), hi2 = Avx2.And(Avx2.ShiftRightLogical(p2.AsUInt16(), 4).AsByte(), nibble);
                Vector256<byte> lo3 = Avx2.And(p3.AsByte(), nibble), hi3 = Avx2.And(Avx2.ShiftRightLogical(p3.AsUInt16(), 4).AsByte(), nibble);
                Vector256<byte> lo4 = Avx2.And(p4.AsByte(), nibble), hi4 = Avx2.And(Avx2.ShiftRightLogical(p4.AsUInt16(), 4).AsByte(), nibble);
                Vector256<byte> lo5 = Avx2.And(p5.AsByte(), nibble), hi5 = Avx2.And(Avx2.ShiftRightLogical(p5.AsUInt16(), 4).AsByte(), nibble);
                Vector256<byte> lo6 = Avx2.And(p6.AsByte(), nibble), hi6 = Avx2.And(Avx2.ShiftRightLogical(p6.AsUInt16(), 4).AsByte(), nibble);
                Vector256<byte> lo7 = Avx2.And(p7.AsByte(), nibble), hi7 = Avx2.And(Avx2.ShiftRightLogical(p7.AsUInt16(), 4).AsByte(), nibble);

                byte* x = a + (nint)i * ABytes + 4 + 64 * g;
                for (int c = 0; c < nCols; c++, x += aStride)
                {
                    Vector256<int> s = g == 0 ? Vector256<int>.Zero : sums[c];
                    s = TD.Shorts(s, TD.SubBlockShorts(lo0, lo1, lo2, lo3, lo4, lo5, lo6, lo7, x), scA);
                    sums[c] = TD.Shorts(s, TD.SubBlockShorts(hi0, hi1, hi2, hi3, hi4, hi5, hi6, hi7, x + 32), scB);
                }
            }

            byte* ab = a + (nint)i * ABytes;
            for (int c = 0; c < nCols; c++, ab += aStride)
            {
                Vector256<int> mins = MinSums<TD>(mp0, mp1, mp2, mp3, ab);
                Vector256<float> da = Vector256.Create(*(float*)ab);
                acc[2 * c] = Fma.MultiplyAdd(Avx.Multiply(dw, da), Avx.ConvertToVector256Single(sums[c]), acc[2 * c]);
                acc[2 * c + 1] = Fma.MultiplyAdd(Avx.Multiply(dmw, da), Avx.ConvertToVector256Single(mins), acc[2 * c + 1]);
            }
        }
        for (int c = 0; c < nCols; c++)
        {
            RowTranspose.StoreLanes(Avx.Subtract(acc[2 * c], acc[2 * c + 1]), y + c * yStride, nRows);
        }
    }

    /// <summary>
    /// The eight rows' 6-bit scales and mins from their header dwords 1..3 (lane r: row r): bytes 0..3 of
    /// <paramref name="scLow"/> are scales 0..3, of <paramref name="scHigh"/> scales 4..7; the same for the mins (see KQuantMath.ScaleMinK4).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void ScalesAndMins(Vector256<int> u0, Vector256<int> u1, Vector256<int> u2,
        out Vector256<int> scLow, out Vector256<int> scHigh, out Vector256<int> mnLow, out Vector256<int> mnHigh)
    {
        Vector256<int> m3f = Vector256.Create(0x3F3F3F3F), m0f = Vector256.Create(0x0F0F0F0F), m03 = Vector256.Create(0x03030303);
        scLow = Avx2.And(u0, m3f);
        scHigh = Avx2.Or(Avx2.And(u2, m0f), Avx2.ShiftLeftLogical(Avx2.And(Avx2.ShiftRightLogical(u0, 6), m03), 4));
        mnLow = Avx2.And(u1, m3f);
        mnHigh = Avx2.Or(Avx2.And(Avx2.ShiftRightLogical(u2, 4), m0f), Avx2.ShiftLeftLogical(Avx2.And(Avx2.ShiftRightLogical(u1, 6), m03), 4));
    }

    /// <summary>
    /// Σ_l min_l · S_l per row: the min pairs (min_2l, min_2l+1) as shorts (<paramref name="mp0"/>..<paramref name="mp3"/>,
    /// l = 0..7) against the sub-block sums S of the Q8_K activation block at <paramref name="ab"/> (pairs of its bsums).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<int> MinSums<TD>(Vector256<short> mp0, Vector256<short> mp1, Vector256<short> mp2, Vector256<short> mp3, byte* ab)
        where TD : struct, IntegerDots.ISteps
    {
        // Two sub-block sums per dword: (S_2l, S_2l+1).
        Vector128<int> ss = Ssse3.HorizontalAdd(Sse2.LoadVector128((short*)(ab + 260)), Sse2.LoadVector128((short*)(ab + 276))).AsInt32();
        Vector256<int> mins = Avx2.MultiplyAddAdjacent(mp0, Avx2.BroadcastScalarToVector256(ss).AsInt16());
        mins = TD.Shorts(mins, mp1, Avx2.BroadcastScalarToVector256(Sse2.ShiftRightLogical128BitLane(ss, 4)).AsInt16());
        mins = TD.Shorts(mins, mp2, Avx2.BroadcastScalarToVector256(Sse2.ShiftRightLogical128BitLane(ss, 8)).AsInt16());
        return TD.Shorts(mins, mp3, Avx2.BroadcastScalarToVector256(Sse2.ShiftRightLogical128BitLane(ss, 12)).AsInt16());
    }

    /// <summary>vpshufb mask putting byte <paramref name="k"/> of every dword into both of its shorts (zero-extended).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<byte> ByteMask(int k)
    {
        uint m = 0x80008000u | (uint)k | ((uint)k << 16);
        uint s4 = 0x00040004u;
        return Vector256.Create(m, m + s4, m + 2 * s4, m + 3 * s4, m, m + s4, m + 2 * s4, m + 3 * s4).AsByte();
    }

    /// <summary>vpshufb mask taking bytes k and k+1 of every dword as two zero-extended shorts.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<byte> PairMask(int k)
    {
        uint m = 0x80008000u | (uint)k | ((uint)(k + 1) << 16);
        uint s = 0x00040004u;
        return Vector256.Create(m, m + s, m + 2 * s, m + 3 * s, m, m + s, m + 2 * s, m + 3 * s).AsByte();
    }
}
