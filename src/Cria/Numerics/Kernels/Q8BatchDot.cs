using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Cria.Numerics.Formats;

namespace Cria.Numerics.Kernels;

/// <summary>
/// Q8_0 weights · Q8_0 activations for several activation rows at once (prompt processing and
/// batched decode, on CPUs with AVX-VNNI); one activation row keeps ggml's vec_dot
/// (<see cref="QuantDot"/>), unchanged.
/// <para>
/// Order of the arithmetic, per output: for every block the whole 32-element integer dot S = Σ w·a is
/// formed exactly, then acc = fma(d_w·d_a, (float)S, acc), block after block — one integer per block
/// and output before the conversion, as <see cref="Q4BatchDot"/> does for Q4_0; ggml's vec_dot
/// converts eight lane sums per block instead, so the two differ by float rounding only.
/// </para>
/// <para>
/// vpdpbusd multiplies unsigned by signed bytes, and here both operands are signed. The activations
/// are therefore stored in offset form (each code + 128, i.e. its sign bit flipped:
/// <see cref="ToOffsetForm"/>) and broadcast as the unsigned operand; the transposed weights are the
/// signed one. Σ (a + 128)·w = Σ a·w + 128·Σ w, and 128·Σ w of each row and block (one vpdpbusd of
/// the weights against ones per four codes, shared by all the activation rows) is subtracted before
/// the conversion. <see cref="DotScalar"/> is the scalar twin (same bits, on activations in normal form).
/// </para>
/// </summary>
public static unsafe class Q8BatchDot
{
    /// <summary>Activation rows per <see cref="Tile"/> call (at most; sixteen rather than eight share the transposed weights among twice as many).</summary>
    internal const int TileColumns = 16;

    /// <summary>Weight rows per <see cref="Tile"/> call.</summary>
    internal const int TileRows = 8;

    private const int Bytes = Q8_0Format.BlockBytes; // 34

    /// <summary>Flips the sign bit of every code of <paramref name="blocks"/> Q8_0 blocks (code + 128 as an unsigned byte); its own inverse.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void ToOffsetForm(byte* a, int blocks)
    {
        for (int i = 0; i < blocks; i++, a += Bytes)
        {
            if (Avx2.IsSupported) Avx.Store(a + 2, Avx2.Xor(Avx.LoadVector256(a + 2), Vector256.Create((byte)0x80)));
            else for (int j = 0; j < 32; j++) a[2 + j] ^= 0x80;
        }
    }

    /// <summary>Scalar twin: one output in this class's order (activations in normal form).</summary>
    internal static float DotScalar(byte* w, byte* a, int blocks)
    {
        float acc = 0;
        for (int i = 0; i < blocks; i++, w += Bytes, a += Bytes)
        {
            sbyte* qw = (sbyte*)(w + 2), qa = (sbyte*)(a + 2);
            int s = 0;
            for (int j = 0; j < 32; j++) s += qw[j] * qa[j];
            acc = MathF.FusedMultiplyAdd(QuantDot.Scale(w) * QuantDot.Scale(a), s, acc);
        }
        return acc;
    }

    /// <summary>
    /// Rows <c>w + i·wStride</c> (i &lt; <paramref name="nRows"/> ≤ 8) · activation rows <c>a + c·aStride</c> in offset
    /// form (c &lt; <paramref name="nCols"/> ≤ <see cref="TileColumns"/>): results to y[c·yStride + i]. Requires <see cref="CpuFeatures.VnniTiles"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Tile(byte* w, nint wStride, int nRows, byte* a, nint aStride, int nCols, int blocks, float* y, nint yStride)
    {
        if ((uint)nRows - 1 > TileRows - 1 || (uint)nCols - 1 > TileColumns - 1) throw new ArgumentOutOfRangeException(nameof(nCols));
        RowTranspose.RowPointers(w, wStride, nRows, out byte* w0, out byte* w1, out byte* w2, out byte* w3, out byte* w4, out byte* w5, out byte* w6, out byte* w7);
        Tile<RowsLayout>(w0, w1, w2, w3, w4, w5, w6, w7, nRows, a, aStride, nCols, blocks, y, yStride);
    }

    /// <summary>Where a tile's eight rows come from: the file's rows (transposed in registers) or a repacked group (<see cref="Q8_0x8Format"/>).</summary>
    internal interface IWeightRows
    {
        /// <summary>Bytes from one block column to the next.</summary>
        static abstract nint BlockStride { get; }

        /// <summary>The eight rows' scales as floats and code dwords 0..7 (lane r: row r) of the block column at offset <paramref name="o"/>.</summary>
        static abstract void Block(byte* w0, byte* w1, byte* w2, byte* w3, byte* w4, byte* w5, byte* w6, byte* w7, nint o, out Vector256<float> dw,
            out Vector256<sbyte> g0, out Vector256<sbyte> g1, out Vector256<sbyte> g2, out Vector256<sbyte> g3,
            out Vector256<sbyte> g4, out Vector256<sbyte> g5, out Vector256<sbyte> g6, out Vector256<sbyte> g7);
    }

    /// <summary>Eight plain Q8_0 rows, transposed in registers.</summary>
    internal struct RowsLayout : IWeightRows
    {
        public static nint BlockStride => Bytes;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Block(byte* w0, byte* w1, byte* w2, byte* w3, byte* w4, byte* w5, byte* w6, byte* w7, nint o, out Vector256<float> dw,
            out Vector256<sbyte> g0, out Vector256<sbyte> g1, out Vector256<sbyte> g2, out Vector256<sbyte> g3,
            out Vector256<sbyte> g4, out Vector256<sbyte> g5, out Vector256<sbyte> g6, out Vector256<sbyte> g7)
        {
            RowTranspose.Eight(w0, w1, w2, w3, w4, w5, w6, w7, o + 2, out Vector256<int> p0, out Vector256<int> p1, out Vector256<int> p2, out Vector256<int> p3);
            RowTranspose.Eight(w0, w1, w2, w3, w4, w5, w6, w7, o + 18, out Vector256<int> p4, out Vector256<int> p5, out Vector256<int> p6, out Vector256<int> p7);
            g0 = p0.AsSByte(); g1 = p1.AsSByte(); g2 = p2.AsSByte(); g3 = p3.AsSByte();
            g4 = p4.AsSByte(); g5 = p5.AsSByte(); g6 = p6.AsSByte(); g7 = p7.AsSByte();
            float* half = Fp16Format.Table;
            dw = Vector256.Create(half[*(ushort*)(w0 + o)], half[*(ushort*)(w1 + o)], half[*(ushort*)(w2 + o)], half[*(ushort*)(w3 + o)],
                                  half[*(ushort*)(w4 + o)], half[*(ushort*)(w5 + o)], half[*(ushort*)(w6 + o)], half[*(ushort*)(w7 + o)]);
        }
    }

    /// <summary>
    /// The tile over eight rows given by <typeparamref name="TW"/> (<paramref name="nRows"/> of them stored);
    /// a repacked group passes its address as <paramref name="w0"/> (the other pointers are not read).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Tile<TW>(byte* w0, byte* w1, byte* w2, byte* w3, byte* w4, byte* w5, byte* w6, byte* w7, int nRows,
        byte* a, nint aStride, int nCols, int blocks, float* y, nint yStride) where TW : struct, IWeightRows
    {
        float* half = Fp16Format.Table;
        Vector256<float>* acc = stackalloc Vector256<float>[TileColumns];
        for (int c = 0; c < TileColumns; c++) acc[c] = Vector256<float>.Zero;
        Vector256<byte> ones = Vector256.Create((byte)1);
        for (int i = 0; i < blocks; i++)
        {
            // Lane r of g_m: codes 4m..4m+3 of row r's block.
            TW.Block(w0, w1, w2, w3, w4, w5, w6, w7, (nint)i * TW.BlockStride, out Vector256<float> dw,
                out var g0, out var g1, out var g2, out var g3, out var g4, out var g5, out var g6, out var g7);
            // −128·Σw per row (the offset the unsigned activations bring in).
            Vector256<int> sw0 = AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, ones, g0);
            Vector256<int> sw1 = AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, ones, g1);
            sw0 = AvxVnni.MultiplyWideningAndAdd(sw0, ones, g2);
            sw1 = AvxVnni.MultiplyWideningAndAdd(sw1, ones, g3);
            sw0 = AvxVnni.MultiplyWideningAndAdd(sw0, ones, g4);
            sw1 = AvxVnni.MultiplyWideningAndAdd(sw1, ones, g5);
            sw0 = AvxVnni.MultiplyWideningAndAdd(sw0, ones, g6);
            sw1 = AvxVnni.MultiplyWideningAndAdd(sw1, ones, g7);
            Vector256<int> bias = Avx2.Subtract(Vector256<int>.Zero, Avx2.ShiftLeftLogical(Avx2.Add(sw0, sw1), 7));
            byte* x = a + (nint)i * Bytes;
            for (int c = 0; c < nCols; c++, x += aStride)
            {
                // Two chains of four: with the other columns in flight that hides the multiply-add latency.
                Vector256<int> s0 = AvxVnni.MultiplyWideningAndAdd(bias, Vector256.Create(*(int*)(x + 2)).AsByte(), g0);
                Vector256<int> s1 = AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, Vector256.Create(*(int*)(x + 6)).AsByte(), g1);
                s0 = AvxVnni.MultiplyWideningAndAdd(s0, Vector256.Create(*(int*)(x + 10)).AsByte(), g2);
                s1 = AvxVnni.MultiplyWideningAndAdd(s1, Vector256.Create(*(int*)(x + 14)).AsByte(), g3);
                s0 = AvxVnni.MultiplyWideningAndAdd(s0, Vector256.Create(*(int*)(x + 18)).AsByte(), g4);
                s1 = AvxVnni.MultiplyWideningAndAdd(s1, Vector256.Create(*(int*)(x + 22)).AsByte(), g5);
                s0 = AvxVnni.MultiplyWideningAndAdd(s0, Vector256.Create(*(int*)(x + 26)).AsByte(), g6);
                s1 = AvxVnni.MultiplyWideningAndAdd(s1, Vector256.Create(*(int*)(x + 30)).AsByte(), g7);
                Vector256<int> s = Avx2.Add(s0, s1);
                acc[c] = Fma.MultiplyAdd(Avx.Multiply(dw, Vector256.Create(half[*(ushort*)x])), Avx.ConvertToVector256Single(s), acc[c]);
            }
        }
        for (int c = 0; c < nCols; c++)
        {
            RowTranspose.StoreLanes(acc[c], y + c * yStride, nRows);
        }
    }
}
