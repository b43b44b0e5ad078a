using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Cria.Numerics.Formats;

namespace Cria.Numerics.Kernels;

/// <summary>
/// Q4_0 weights · Q8_0 activations for several activation rows at once (prompt processing and
/// batched decode; MatMul uses it whenever a product has two or more activation rows). One
/// activation row keeps ggml's vec_dot (<see cref="QuantDot"/>), unchanged.
/// <para>
/// Order of the arithmetic, per output: for every block the whole 32-element integer dot
/// S = Σ q·a is formed exactly (as Σ c·a − 8·Σa with the codes c = q + 8, the −8·Σa precomputed per
/// activation block), then acc = fma(d_w·d_a, (float)S, acc), block after block, one float
/// accumulator. This is the order of llama.cpp's repacked q4_0_8x8 kernels (one int32 per block
/// and output before the conversion), not ggml's vec_dot order (eight lane sums converted and
/// accumulated separately, summed at the end), so the two differ by float rounding only (|S| ≤
/// 32·8·128 is exact in a float; each block adds at most two roundings).
/// </para>
/// <para>
/// The AVX2 kernel takes eight weight rows and up to eight activation rows: the eight rows' packed
/// nibbles are transposed in registers (8×4 dwords: four unpacks of 32 bits and four of 64 bits) so
/// lane r of every vector belongs to row r; each group of four activation bytes is then broadcast
/// and multiplied into all eight rows with one vpdpbusd (or vpmaddubsw with 16-bit sums and one
/// vpmaddwd at the end of the block), and one conversion and one fused multiply-add update eight
/// outputs. The transposed nibbles and the eight row scales serve all the activation rows. The
/// weights are read in place (no repacking, so no extra memory). The scalar twin
/// <see cref="DotScalar"/> gives the same bits.
/// </para>
/// </summary>
public static unsafe class Q4BatchDot
{
    /// <summary>−8·Σa of each Q8_0 activation block (the bias the unsigned codes need).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void ActivationBias(byte* a, int blocks, int* bias)
    {
        for (int i = 0; i < blocks; i++, a += Q8_0Format.BlockBytes)
        {
            int s;
            if (Avx2.IsSupported)
            {
                // vpsadbw of (a + 128) against zero: four 64-bit sums of eight bytes each.
                Vector256<ulong> sad = Avx2.SumAbsoluteDifferences(Avx2.Xor(Avx.LoadVector256(a + 2), Vector256.Create((byte)0x80)), Vector256<byte>.Zero).AsUInt64();
                s = (int)(sad.GetElement(0) + sad.GetElement(1) + sad.GetElement(2) + sad.GetElement(3)) - 32 * 128;
            }
            else
            {
                sbyte* q = (sbyte*)(a + 2);
                s = 0;
                for (int j = 0; j < 32; j++) s += q[j];
            }
            bias[i] = -8 * s;
        }
    }

    /// <summary>Scalar twin (and portable path): one output in this class's order.</summary>
    internal static float DotScalar(byte* w, byte* a, int blocks)
    {
        float acc = 0;
        for (int i = 0; i < blocks; i++, w += Q4_0Format.BlockBytes, a += Q8_0Format.BlockBytes)
        {
            sbyte* x = (sbyte*)(a + 2);
            int s = 0;
            for (int j = 0; j < 16; j++)
            {
                int q = w[2 + j];
                s += ((q & 0x0F) - 8) * x[j] + ((q >> 4) - 8) * x[j + 16];
            }
            acc = MathF.FusedMultiplyAdd(QuantDot.Scale(w) * QuantDot.Scale(a), s, acc);
        }
        return acc;
    }

    /// <summary>
    /// Rows <c>w + i·wStride</c> (i &lt; <paramref name="nRows"/> ≤ 8) · activation rows
    /// <c>a + c·aStride</c> (c &lt; <paramref name="nCols"/> ≤ <see cref="TileColumns"/>), whose <see cref="ActivationBias"/> is
    /// at <c>bias + c·blocks</c>: results to y[c·yStride + i]. Uses AVX-VNNI when the CPU has it.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void TileAvx2(byte* w, nint wStride, int nRows, byte* a, nint aStride, int* bias, int nCols, int blocks, float* y, nint yStride)
    {
        if (AvxVnni.IsSupported) Tile<Vnni>(w, wStride, nRows, a, aStride, bias, nCols, blocks, y, yStride);
        else Tile<NoVnni>(w, wStride, nRows, a, aStride, bias, nCols, blocks, y, yStride);
    }

    /// <summary>
    /// Activation rows per <see cref="TileAvx2"/> call. Eight (the 8×8 tile) measured faster than
    /// four on this project's AVX-512 VM both with the JIT's 32 vector registers and with AVX-512
    /// turned off (DOTNET_EnableAVX512F=0, sixteen registers): the transpose and the scale vector
    /// are shared by twice the outputs.
    /// </summary>
    internal const int TileColumns = 8;

    /// <summary>Integer dot of eight transposed weight vectors with one activation block, plus the bias.</summary>
    internal interface IBlockDot
    {
        static abstract Vector256<int> Dot(Vector256<byte> g0, Vector256<byte> g1, Vector256<byte> g2, Vector256<byte> g3,
            Vector256<byte> g4, Vector256<byte> g5, Vector256<byte> g6, Vector256<byte> g7, byte* x, int bias);
    }

    /// <summary>AVX-VNNI: eight vpdpbusd in two chains.</summary>
    internal struct Vnni : IBlockDot
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Dot(Vector256<byte> g0, Vector256<byte> g1, Vector256<byte> g2, Vector256<byte> g3,
            Vector256<byte> g4, Vector256<byte> g5, Vector256<byte> g6, Vector256<byte> g7, byte* x, int bias)
        {
            Vector256<int> s0 = AvxVnni.MultiplyWideningAndAdd(Vector256.Create(bias), g0, Vector256.Create(*(int*)x).AsSByte());
            Vector256<int> s1 = AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, g4, Vector256.Create(*(int*)(x + 16)).AsSByte());
            s0 = AvxVnni.MultiplyWideningAndAdd(s0, g1, Vector256.Create(*(int*)(x + 4)).AsSByte());
            s1 = AvxVnni.MultiplyWideningAndAdd(s1, g5, Vector256.Create(*(int*)(x + 20)).AsSByte());
            s0 = AvxVnni.MultiplyWideningAndAdd(s0, g2, Vector256.Create(*(int*)(x + 8)).AsSByte());
            s1 = AvxVnni.MultiplyWideningAndAdd(s1, g6, Vector256.Create(*(int*)(x + 24)).AsSByte());
            s0 = AvxVnni.MultiplyWideningAndAdd(s0, g3, Vector256.Create(*(int*)(x + 12)).AsSByte());
            s1 = AvxVnni.MultiplyWideningAndAdd(s1, g7, Vector256.Create(*(int*)(x + 28)).AsSByte());
            return Avx2.Add(s0, s1);
        }
    }

    /// <summary>
    /// AVX2: vpmaddubsw per group, 16-bit sums (each product pair is at most 2·15·128 = 3840 in
    /// magnitude, eight of them 30720 &lt; 2¹⁵: no saturation), one vpmaddwd per block.
    /// </summary>
    internal struct NoVnni : IBlockDot
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Dot(Vector256<byte> g0, Vector256<byte> g1, Vector256<byte> g2, Vector256<byte> g3,
            Vector256<byte> g4, Vector256<byte> g5, Vector256<byte> g6, Vector256<byte> g7, byte* x, int bias)
        {
            Vector256<short> p0 = Avx2.Add(Avx2.MultiplyAddAdjacent(g0, Vector256.Create(*(int*)x).AsSByte()),
                                           Avx2.MultiplyAddAdjacent(g1, Vector256.Create(*(int*)(x + 4)).AsSByte()));
            Vector256<short> p1 = Avx2.Add(Avx2.MultiplyAddAdjacent(g2, Vector256.Create(*(int*)(x + 8)).AsSByte()),
                                           Avx2.MultiplyAddAdjacent(g3, Vector256.Create(*(int*)(x + 12)).AsSByte()));
            Vector256<short> p2 = Avx2.Add(Avx2.MultiplyAddAdjacent(g4, Vector256.Create(*(int*)(x + 16)).AsSByte()),
                                           Avx2.MultiplyAddAdjacent(g5, Vector256.Create(*(int*)(x + 20)).AsSByte()));
            Vector256<short> p3 = Avx2.Add(Avx2.MultiplyAddAdjacent(g6, Vector256.Create(*(int*)(x + 24)).AsSByte()),
                                           Avx2.MultiplyAddAdjacent(g7, Vector256.Create(*(int*)(x + 28)).AsSByte()));
            Vector256<short> p = Avx2.Add(Avx2.Add(p0, p1), Avx2.Add(p2, p3));
            return Avx2.Add(Avx2.MultiplyAddAdjacent(p, Vector256.Create((short)1)), Vector256.Create(bias));
        }
    }

    /// <summary>
    /// One block of one activation row into eight outputs: acc + (d_w·d_a)·S lane by lane, where
    /// <paramref name="dw"/> holds the eight rows' scales, g0..g7 their transposed codes, <paramref name="a"/>
    /// the Q8_0 activation block and <paramref name="bias"/> its −8·Σa.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> Accumulate<TD>(Vector256<float> acc, Vector256<float> dw, float* half,
        Vector256<byte> g0, Vector256<byte> g1, Vector256<byte> g2, Vector256<byte> g3,
        Vector256<byte> g4, Vector256<byte> g5, Vector256<byte> g6, Vector256<byte> g7, byte* a, int bias)
        where TD : struct, IBlockDot =>
        Fma.MultiplyAdd(Avx.Multiply(dw, Vector256.Create(half[*(ushort*)a])),
            Avx.ConvertToVector256Single(TD.Dot(g0, g1, g2, g3, g4, g5, g6, g7, a + 2, bias)), acc);

    /// <summary><see cref="TileAvx2"/> with the integer dot chosen by <typeparamref name="TD"/> (tests run both).</summary>
    internal static void Tile<TD>(byte* w, nint wStride, int nRows, byte* a, nint aStride, int* bias, int nCols, int blocks, float* y, nint yStride)
        where TD : struct, IBlockDot
    {
        if ((uint)nRows - 1 > 7 || (uint)nCols - 1 > TileColumns - 1) throw new ArgumentOutOfRangeException(nameof(nCols));
        float* half = Fp16Format.Table;
        // Missing rows / columns repeat the last one (computed, not stored).
        RowTranspose.RowPointers(w, wStride, nRows, out byte* w0, out byte* w1, out byte* w2, out byte* w3, out byte* w4, out byte* w5, out byte* w6, out byte* w7);
        RowTranspose.RowPointers(a, aStride, nCols, out byte* a0, out byte* a1, out byte* a2, out byte* a3, out byte* a4, out byte* a5, out byte* a6, out byte* a7);
        int lc = nCols - 1;
        int* s0 = bias, s1 = bias + Math.Min(1, lc) * blocks, s2 = bias + Math.Min(2, lc) * blocks, s3 = bias + Math.Min(3, lc) * blocks;
        int* s4 = bias + Math.Min(4, lc) * blocks, s5 = bias + Math.Min(5, lc) * blocks, s6 = bias + Math.Min(6, lc) * blocks, s7 = bias + Math.Min(7, lc) * blocks;
        Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default, c6 = default, c7 = default;
        Vector256<byte> mask = Vector256.Create((byte)0x0F);
        for (int i = 0; i < blocks; i++)
        {
            // Transpose the packed nibbles: after the unpacks, dword r of p_m is row r's packed bytes 4m..4m+3,
            // whose low nibbles are elements 4m..4m+3 and high nibbles 16+4m..16+4m+3.
            Vector256<int> r0 = Vector256.Create(Sse2.LoadVector128(w0 + 2), Sse2.LoadVector128(w4 + 2)).AsInt32();
            Vector256<int> r1 = Vector256.Create(Sse2.LoadVector128(w1 + 2), Sse2.LoadVector128(w5 + 2)).AsInt32();
            Vector256<int> r2 = Vector256.Create(Sse2.LoadVector128(w2 + 2), Sse2.LoadVector128(w6 + 2)).AsInt32();
            Vector256<int> r3 = Vector256.Create(Sse2.LoadVector128(w3 + 2), Sse2.LoadVector128(w7 + 2)).AsInt32();
            Vector256<long> t0 = Avx2.UnpackLow(r0, r1).AsInt64(), t1 = Avx2.UnpackHigh(r0, r1).AsInt64();
            Vector256<long> t2 = Avx2.UnpackLow(r2, r3).AsInt64(), t3 = Avx2.UnpackHigh(r2, r3).AsInt64();
            Vector256<byte> p0 = Avx2.UnpackLow(t0, t2).AsByte(), p1 = Avx2.UnpackHigh(t0, t2).AsByte();
            Vector256<byte> p2 = Avx2.UnpackLow(t1, t3).AsByte(), p3 = Avx2.UnpackHigh(t1, t3).AsByte();
            Vector256<byte> g0 = Avx2.And(p0, mask), g4 = Avx2.And(Avx2.ShiftRightLogical(p0.AsUInt16(), 4).AsByte(), mask);
            Vector256<byte> g1 = Avx2.And(p1, mask), g5 = Avx2.And(Avx2.ShiftRightLogical(p1.AsUInt16(), 4).AsByte(), mask);
            Vector256<byte> g2 = Avx2.And(p2, mask), g6 = Avx2.And(Avx2.ShiftRightLogical(p2.AsUInt16(), 4).AsByte(), mask);
            Vector256<byte> g3 = Avx2.And(p3, mask), g7 = Avx2.And(Avx2.ShiftRightLogical(p3.AsUInt16(), 4).AsByte(), mask);
            Vector256<float> dw = Vector256.Create(half[*(ushort*)w0], half[*(ushort*)w1], half[*(ushort*)w2], half[*(ushort*)w3],
                                                   half[*(ushort*)w4], half[*(ushort*)w5], half[*(ushort*)w6], half[*(ushort*)w7]);

            c0 = Accumulate<TD>(c0, dw, half, g0, g1, g2, g3, g4, g5, g6, g7, a0, s0[i]);
            if (nCols > 1) c1 = Accumulate<TD>(c1, dw, half, g0, g1, g2, g3, g4, g5, g6, g7, a1, s1[i]);
            if (nCols > 2) c2 = Accumulate<TD>(c2, dw, half, g0, g1, g2, g3, g4, g5, g6, g7, a2, s2[i]);
            if (nCols > 3) c3 = Accumulate<TD>(c3, dw, half, g0, g1, g2, g3, g4, g5, g6, g7, a3, s3[i]);
            if (nCols > 4) c4 = Accumulate<TD>(c4, dw, half, g0, g1, g2, g3, g4, g5, g6, g7, a4, s4[i]);
            if (nCols > 5) c5 = Accumulate<TD>(c5, dw, half, g0, g1, g2, g3, g4, g5, g6, g7, a5, s5[i]);
            if (nCols > 6) c6 = Accumulate<TD>(c6, dw, half, g0, g1, g2, g3, g4, g5, g6, g7, a6, s6[i]);
            if (nCols > 7) c7 = Accumulate<TD>(c7, dw, half, g0, g1, g2, g3, g4, g5, g6, g7, a7, s7[i]);

            w0 += Q4_0Format.BlockBytes; w1 += Q4_0Format.BlockBytes; w2 += Q4_0Format.BlockBytes; w3 += Q4_0Format.BlockBytes;
            w4 += Q4_0Format.BlockBytes; w5 += Q4_0Format.BlockBytes; w6 += Q4_0Format.BlockBytes; w7 += Q4_0Format.BlockBytes;
            a0 += Q8_0Format.BlockBytes; a1 += Q8_0Format.BlockBytes; a2 += Q8_0Format.BlockBytes; a3 += Q8_0Format.BlockBytes;
            a4 += Q8_0Format.BlockBytes; a5 += Q8_0Format.BlockBytes; a6 += Q8_0Format.BlockBytes; a7 += Q8_0Format.BlockBytes;
        }
        RowTranspose.StoreLanes(c0, y, nRows);
        if (nCols > 1) RowTranspose.StoreLanes(c1, y + yStride, nRows);
        if (nCols > 2) RowTranspose.StoreLanes(c2, y + 2 * yStride, nRows);
        if (nCols > 3) RowTranspose.StoreLanes(c3, y + 3 * yStride, nRows);
        if (nCols > 4) RowTranspose.StoreLanes(c4, y + 4 * yStride, nRows);
        if (nCols > 5) RowTranspose.StoreLanes(c5, y + 5 * yStride, nRows);
        if (nCols > 6) RowTranspose.StoreLanes(c6, y + 6 * yStride, nRows);
        if (nCols > 7) RowTranspose.StoreLanes(c7, y + 7 * yStride, nRows);
    }
}
