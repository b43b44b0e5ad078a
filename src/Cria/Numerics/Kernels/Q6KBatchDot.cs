using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Cria.Numerics.Formats;

namespace Cria.Numerics.Kernels;

/// <summary>
/// Q6_K weights · Q8_K activations for several activation rows at once (prompt processing and
/// batched decode, on AVX2+FMA CPUs, with AVX-VNNI where there is one), reading plain rows or, through <see cref="IWeightRows"/>,
/// groups repacked at load (<see cref="Q6Kx8Dot"/>); one activation row on plain rows keeps ggml's vec_dot (<see cref="KQuantDot.Q6_KQ8_K"/>).
/// <para>
/// Order of the arithmetic, per output and super-block: S = Σ_k scale_k · Σ_{i in sub-block k} (c_i − 32)·a_i
/// (sixteen sub-blocks of sixteen elements, c the unsigned 6-bit code) is formed exactly as an int32,
/// then acc = fma(d_w·d_a, (float)S, acc), super-block after super-block — one integer per super-block
/// and output before the conversion, as in <see cref="Q4KBatchDot"/>, so it differs from the
/// vec_dot order by float rounding only.
/// </para>
/// <para>
/// The kernel takes eight weight rows and up to sixteen activation rows. Per half super-block the
/// eight rows' low-nibble bytes and high-bit bytes are transposed so lane r belongs to row r, the
/// unsigned codes of two 32-element chunks are assembled (sixteen vectors of four codes per lane)
/// and multiplied into all eight rows with vpdpbusd (or vpmaddubsw and vpmaddwd) against broadcast activation dwords; each
/// 16-element sum D_k is multiplied by its scale (vpmulld). The −32 offset is applied once per
/// super-block from the activation block sums: S = Σ_k scale_k·D_k − 32·Σ_k scale_k·bsum_k, the
/// second sum by vpmaddwd on (scale, scale) pairs. <see cref="DotScalar"/> is the scalar twin.
/// </para>
/// </summary>
public static unsafe class Q6KBatchDot
{
    /// <summary>Activation rows per <see cref="Tile"/> call (at most; sixteen rather than eight share the unpacked weights among twice as many).</summary>
    internal const int TileColumns = 16;

    /// <summary>Weight rows per <see cref="Tile"/> call.</summary>
    internal const int TileRows = 8;

    private const int WBytes = Q6_KFormat.BlockBytes; // 210
    private const int ABytes = Q8_KFormat.BlockBytes; // 292

    /// <summary>Scalar twin: one output in this class's order.</summary>
    internal static float DotScalar(byte* w, byte* a, int blocks)
    {
        sbyte* q = stackalloc sbyte[256];
        float acc = 0;
        for (int i = 0; i < blocks; i++, w += WBytes, a += ABytes)
        {
            Q6_KFormat.Codes(w, q);
            sbyte* sc = (sbyte*)(w + 192);
            sbyte* x = (sbyte*)(a + 4);
            int s = 0;
            for (int e = 0; e < 256; e++) s += sc[e / 16] * q[e] * x[e];
            acc = MathF.FusedMultiplyAdd(Fp16Format.ToSingle(*(ushort*)(w + 208)) * *(float*)a, s, acc);
        }
        return acc;
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

    /// <summary>Where a tile's eight rows come from: the file's rows (transposed in registers) or a repacked group (<see cref="Q6_Kx8Format"/>).</summary>
    internal interface IWeightRows
    {
        /// <summary>Bytes from one super-block column to the next.</summary>
        static abstract nint BlockStride { get; }

        /// <summary>The rows' scale dwords 0..3 (lane r: row r) of the super-block column at offset <paramref name="o"/>.</summary>
        static abstract void Scales(byte* w0, byte* w1, byte* w2, byte* w3, byte* w4, byte* w5, byte* w6, byte* w7, nint o,
            out Vector256<int> sc0, out Vector256<int> sc1, out Vector256<int> sc2, out Vector256<int> sc3);

        /// <summary>The rows' high-bit dwords 0..7 of half <paramref name="h"/>.</summary>
        static abstract void Highs(byte* w0, byte* w1, byte* w2, byte* w3, byte* w4, byte* w5, byte* w6, byte* w7, nint o, int h,
            out Vector256<int> h0, out Vector256<int> h1, out Vector256<int> h2, out Vector256<int> h3,
            out Vector256<int> h4, out Vector256<int> h5, out Vector256<int> h6, out Vector256<int> h7);

        /// <summary>The rows' low-nibble dwords 0..7 of bytes 64h + 32·part .. +31.</summary>
        static abstract void Lows(byte* w0, byte* w1, byte* w2, byte* w3, byte* w4, byte* w5, byte* w6, byte* w7, nint o, int h, int part,
            out Vector256<int> p0, out Vector256<int> p1, out Vector256<int> p2, out Vector256<int> p3,
            out Vector256<int> p4, out Vector256<int> p5, out Vector256<int> p6, out Vector256<int> p7);

        /// <summary>The rows' d as floats (lane r: row r).</summary>
        static abstract Vector256<float> D(byte* w0, byte* w1, byte* w2, byte* w3, byte* w4, byte* w5, byte* w6, byte* w7, nint o);
    }

    /// <summary>Eight plain rows, transposed in registers (<see cref="RowTranspose.Eight(byte*, byte*, byte*, byte*, byte*, byte*, byte*, byte*, nint, out Vector256{int}, out Vector256{int}, out Vector256{int}, out Vector256{int})"/>).</summary>
    internal struct RowsLayout : IWeightRows
    {
        public static nint BlockStride => WBytes;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Scales(byte* w0, byte* w1, byte* w2, byte* w3, byte* w4, byte* w5, byte* w6, byte* w7, nint o,
            out Vector256<int> sc0, out Vector256<int> sc1, out Vector256<int> sc2, out Vector256<int> sc3) =>
            RowTranspose.Eight(w0, w1, w2, w3, w4, w5, w6, w7, o + 192, out sc0, out sc1, out sc2, out sc3);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Highs(byte* w0, byte* w1, byte* w2, byte* w3, byte* w4, byte* w5, byte* w6, byte* w7, nint o, int h,
            out Vector256<int> h0, out Vector256<int> h1, out Vector256<int> h2, out Vector256<int> h3,
            out Vector256<int> h4, out Vector256<int> h5, out Vector256<int> h6, out Vector256<int> h7)
        {
            RowTranspose.Eight(w0, w1, w2, w3, w4, w5, w6, w7, o + 128 + 32 * h, out h0, out h1, out h2, out h3);
            RowTranspose.Eight(w0, w1, w2, w3, w4, w5, w6, w7, o + 128 + 32 * h + 16, out h4, out h5, out h6, out h7);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Lows(byte* w0, byte* w1, byte* w2, byte* w3, byte* w4, byte* w5, byte* w6, byte* w7, nint o, int h, int part,
            out Vector256<int> p0, out Vector256<int> p1, out Vector256<int> p2, out Vector256<int> p3,
            out Vector256<int> p4, out Vector256<int> p5, out Vector256<int> p6, out Vector256<int> p7)
        {
            nint q = o + 64 * h + 32 * part;
            RowTranspose.Eight(w0, w1, w2, w3, w4, w5, w6, w7, q, out p0, out p1, out p2, out p3);
            RowTranspose.Eight(w0, w1, w2, w3, w4, w5, w6, w7, q + 16, out p4, out p5, out p6, out p7);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> D(byte* w0, byte* w1, byte* w2, byte* w3, byte* w4, byte* w5, byte* w6, byte* w7, nint o)
        {
            float* half = Fp16Format.Table;
            return Vector256.Create(half[*(ushort*)(w0 + o + 208)], half[*(ushort*)(w1 + o + 208)], half[*(ushort*)(w2 + o + 208)], half[*(ushort*)(w3 + o + 208)],
                                    half[*(ushort*)(w4 + o + 208)], half[*(ushort*)(w5 + o + 208)], half[*(ushort*)(w6 + o + 208)], half[*(ushort*)(w7 + o + 208)]);
        }
    }

    /// <summary>
    /// The tile over eight weight rows given by <typeparamref name="TW"/> (row pointers <paramref name="w0"/>..<paramref name="w7"/>;
    /// a repacked group passes its address eight times) and up to <see cref="TileColumns"/> activation rows; the results of the
    /// first <paramref name="nRows"/> rows are stored.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Tile<TW, TD>(byte* w0, byte* w1, byte* w2, byte* w3, byte* w4, byte* w5, byte* w6, byte* w7, int nRows,
        byte* a, nint aStride, int nCols, int blocks, float* y, nint yStride) where TW : struct, IWeightRows where TD : struct, IntegerDots.ISteps
    {
        Vector256<float>* acc = stackalloc Vector256<float>[TileColumns];
        Vector256<int>* sums = stackalloc Vector256<int>[TileColumns];
        Vector256<int>* scales = stackalloc Vector256<int>[16]; // scale k of every row, per super-block
        for (int c = 0; c < TileColumns; c++) acc[c] = Vector256<float>.Zero;
        Vector256<byte> nibble = Vector256.Create((byte)0x0F), high = Vector256.Create((byte)0x30);
        for (int i = 0; i < blocks; i++)
        {
            nint o = (nint)i * TW.BlockStride;
            // The sixteen 8-bit scales of each row: dword m of row r (scales 4m..4m+3) to lane r of sc_m.
            TW.Scales(w0, w1, w2, w3, w4, w5, w6, w7, o, out Vector256<int> sc0, out Vector256<int> sc1, out Vector256<int> sc2, out Vector256<int> sc3);
            // Unrolled so every shuffle mask is a constant (built inside the loops below, the JIT
            // assembled each one from scalars).
            scales[0] = Scale(sc0, 0); scales[1] = Scale(sc0, 1); scales[2] = Scale(sc0, 2); scales[3] = Scale(sc0, 3);
            scales[4] = Scale(sc1, 0); scales[5] = Scale(sc1, 1); scales[6] = Scale(sc1, 2); scales[7] = Scale(sc1, 3);
            scales[8] = Scale(sc2, 0); scales[9] = Scale(sc2, 1); scales[10] = Scale(sc2, 2); scales[11] = Scale(sc2, 3);
            scales[12] = Scale(sc3, 0); scales[13] = Scale(sc3, 1); scales[14] = Scale(sc3, 2); scales[15] = Scale(sc3, 3);

            // The offset term Σ_k scale_k·bsum_k per activation row, from (scale_2l, scale_2l+1) short pairs.
            ScalePairs(sc0, sc1, sc2, sc3, out Vector256<short> sp0, out Vector256<short> sp1, out Vector256<short> sp2, out Vector256<short> sp3,
                out Vector256<short> sp4, out Vector256<short> sp5, out Vector256<short> sp6, out Vector256<short> sp7);
            byte* ab = a + (nint)i * ABytes;
            for (int c = 0; c < nCols; c++, ab += aStride)
                sums[c] = Avx2.ShiftLeftLogical(Avx2.Subtract(Vector256<int>.Zero, OffsetSums<TD>(sp0, sp1, sp2, sp3, sp4, sp5, sp6, sp7, ab)), 5); // −32·Σ scale·bsum

            for (int h = 0; h < 2; h++)
            {
                // High bits of the half: byte l of qh holds bits 4-5 of elements l, l+32, l+64, l+96 (two bits each).
                TW.Highs(w0, w1, w2, w3, w4, w5, w6, w7, o, h, out Vector256<int> h0, out Vector256<int> h1, out Vector256<int> h2, out Vector256<int> h3,
                    out Vector256<int> h4, out Vector256<int> h5, out Vector256<int> h6, out Vector256<int> h7);
                for (int part = 0; part < 2; part++)
                {
                    // part 0: ql bytes 0..31 of the half (chunks t = 0 low nibbles, t = 2 high nibbles);
                    // part 1: ql bytes 32..63 (t = 1 and t = 3). Chunk t takes high bits 2t, 2t+1.
                    TW.Lows(w0, w1, w2, w3, w4, w5, w6, w7, o, h, part, out Vector256<int> p0, out Vector256<int> p1, out Vector256<int> p2, out Vector256<int> p3,
                        out Vector256<int> p4, out Vector256<int> p5, out Vector256<int> p6, out Vector256<int> p7);
                    bool second = part == 1;
                    Vector256<byte> lo0 = Low(p0, h0, second, nibble, high), hi0 = High(p0, h0, second, nibble, high);
                    Vector256<byte> lo1 = Low(p1, h1, second, nibble, high), hi1 = High(p1, h1, second, nibble, high);
                    Vector256<byte> lo2 = Low(p2, h2, second, nibble, high), hi2 = High(p2, h2, second, nibble, high);
                    Vector256<byte> lo3 = Low(p3, h3, second, nibble, high), hi3 = High(p3, h3, second, nibble, high);
                    Vector256<byte> lo4 = Low(p4, h4, second, nibble, high), hi4 = High(p4, h4, second, nibble, high);
                    Vector256<byte> lo5 = Low(p5, h5, second, nibble, high), hi5 = High(p5, h5, second, nibble, high);
                    Vector256<byte> lo6 = Low(p6, h6, second, nibble, high), hi6 = High(p6, h6, second, nibble, high);
                    Vector256<byte> lo7 = Low(p7, h7, second, nibble, high), hi7 = High(p7, h7, second, nibble, high);
                    // Scales: chunk t = part covers sub-blocks 8h + 2·part (+1); chunk t = part + 2 sub-blocks 8h + 2·part + 4 (+1).
                    int kLo = 8 * h + 2 * part, kHi = kLo + 4;
                    Vector256<int> sLo0 = scales[kLo], sLo1 = scales[kLo + 1], sHi0 = scales[kHi], sHi1 = scales[kHi + 1];

                    byte* x = a + (nint)i * ABytes + 4 + 128 * h + 32 * part;
                    for (int c = 0; c < nCols; c++, x += aStride)
                    {
                        Vector256<int> s = Avx2.MultiplyLow(TD.Quarter(lo0, lo1, lo2, lo3, x), sLo0);
                        s = Avx2.Add(s, Avx2.MultiplyLow(TD.Quarter(lo4, lo5, lo6, lo7, x + 16), sLo1));
                        s = Avx2.Add(s, Avx2.MultiplyLow(TD.Quarter(hi0, hi1, hi2, hi3, x + 64), sHi0));
                        s = Avx2.Add(s, Avx2.MultiplyLow(TD.Quarter(hi4, hi5, hi6, hi7, x + 80), sHi1));
                        sums[c] = Avx2.Add(sums[c], s);
                    }
                }
            }

            Vector256<float> dw = TW.D(w0, w1, w2, w3, w4, w5, w6, w7, o);
            ab = a + (nint)i * ABytes;
            for (int c = 0; c < nCols; c++, ab += aStride)
                acc[c] = Fma.MultiplyAdd(Avx.Multiply(dw, Vector256.Create(*(float*)ab)), Avx.ConvertToVector256Single(sums[c]), acc[c]);
        }
        for (int c = 0; c < nCols; c++)
        {
            RowTranspose.StoreLanes(acc[c], y + c * yStride, nRows);
        }
    }

    /// <summary>
    /// Codes of the low-nibble chunk t (0, or 1 when <paramref name="second"/>): (p &amp; 15) | high bits 2t, 2t+1
    /// moved to bits 4-5 (a left shift by 4 − 2t; bits crossing into the next byte are masked off).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<byte> Low(Vector256<int> p, Vector256<int> h, bool second, Vector256<byte> nibble, Vector256<byte> high)
    {
        Vector256<ushort> moved = second ? Avx2.ShiftLeftLogical(h.AsUInt16(), 2) : Avx2.ShiftLeftLogical(h.AsUInt16(), 4);
        return Avx2.Or(Avx2.And(p.AsByte(), nibble), Avx2.And(moved.AsByte(), high));
    }

    /// <summary>Codes of the high-nibble chunk t (2, or 3 when <paramref name="second"/>): (p &gt;&gt; 4 &amp; 15) | high bits 2t, 2t+1 moved to bits 4-5 (a right shift by 2t − 4).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<byte> High(Vector256<int> p, Vector256<int> h, bool second, Vector256<byte> nibble, Vector256<byte> high)
    {
        Vector256<byte> moved = second ? Avx2.ShiftRightLogical(h.AsUInt16(), 2).AsByte() : h.AsByte();
        return Avx2.Or(Avx2.And(Avx2.ShiftRightLogical(p.AsUInt16(), 4).AsByte(), nibble), Avx2.And(moved, high));
    }

    /// <summary>Byte k (0..3) of every dword of <paramref name="v"/> (scale 4m + k of every row, from sc_m), sign-extended to an int per lane: moved to the top byte by a shuffle and shifted down arithmetically.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<int> Scale(Vector256<int> v, int k)
    {
        uint m = 0x00808080u | ((uint)k << 24);
        uint s = 0x04000000u;
        Vector256<byte> mask = Vector256.Create(m, m + s, m + 2 * s, m + 3 * s, m, m + s, m + 2 * s, m + 3 * s).AsByte();
        return Avx2.ShiftRightArithmetic(Avx2.Shuffle(v.AsByte(), mask).AsInt32(), 24);
    }

    /// <summary>The rows' scale pairs (scale_2l, scale_2l+1), l = 0..7, as two sign-extended shorts per lane, from their scale dwords.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void ScalePairs(Vector256<int> sc0, Vector256<int> sc1, Vector256<int> sc2, Vector256<int> sc3,
        out Vector256<short> sp0, out Vector256<short> sp1, out Vector256<short> sp2, out Vector256<short> sp3,
        out Vector256<short> sp4, out Vector256<short> sp5, out Vector256<short> sp6, out Vector256<short> sp7)
    {
        sp0 = SignedPair(sc0, 0); sp1 = SignedPair(sc0, 2); sp2 = SignedPair(sc1, 0); sp3 = SignedPair(sc1, 2);
        sp4 = SignedPair(sc2, 0); sp5 = SignedPair(sc2, 2); sp6 = SignedPair(sc3, 0); sp7 = SignedPair(sc3, 2);
    }

    /// <summary>
    /// Σ_k scale_k · bsum_k per row (the −32 offset's factor): the scale pairs from <see cref="ScalePairs"/> against the bsum
    /// pairs (bsum_2l, bsum_2l+1) of the Q8_K activation block at <paramref name="ab"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<int> OffsetSums<TD>(Vector256<short> sp0, Vector256<short> sp1, Vector256<short> sp2, Vector256<short> sp3,
        Vector256<short> sp4, Vector256<short> sp5, Vector256<short> sp6, Vector256<short> sp7, byte* ab) where TD : struct, IntegerDots.ISteps
    {
        int* bs = (int*)(ab + 260);
        Vector256<int> off = Avx2.MultiplyAddAdjacent(sp0, Vector256.Create(bs[0]).AsInt16());
        off = TD.Shorts(off, sp1, Vector256.Create(bs[1]).AsInt16());
        off = TD.Shorts(off, sp2, Vector256.Create(bs[2]).AsInt16());
        off = TD.Shorts(off, sp3, Vector256.Create(bs[3]).AsInt16());
        off = TD.Shorts(off, sp4, Vector256.Create(bs[4]).AsInt16());
        off = TD.Shorts(off, sp5, Vector256.Create(bs[5]).AsInt16());
        off = TD.Shorts(off, sp6, Vector256.Create(bs[6]).AsInt16());
        return TD.Shorts(off, sp7, Vector256.Create(bs[7]).AsInt16());
    }

    /// <summary>Bytes k and k+1 of every dword as two sign-extended shorts (the byte moved to each short's top, then an arithmetic shift).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<short> SignedPair(Vector256<int> v, int k)
    {
        uint m = 0x00800080u | ((uint)k << 8) | ((uint)(k + 1) << 24);
        uint s = 0x04000400u;
        Vector256<byte> mask = Vector256.Create(m, m + s, m + 2 * s, m + 3 * s, m, m + s, m + 2 * s, m + 3 * s).AsByte();
        return Avx2.ShiftRightArithmetic(Avx2.Shuffle(v.AsByte(), mask).AsInt16(), 8);
    }
}
