using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Cria.Numerics.Formats;

namespace Cria.Numerics.Kernels;

/// <summary>
/// Q8_0 weights repacked into eight-row groups (<see cref="Q8_0x8Format"/>) · Q8_0 activations. The arithmetic is <see cref="Q8BatchDot"/>'s, bit for bit: per block the whole 32-element integer dot
/// S = Σ w·a, then acc = fma(d_w·d_a, (float)S, acc), one float accumulator per output.
/// <para>Decode (<see cref="Group{TD}"/>) takes the activations in normal form, as every one-row product does: the
/// signed × signed byte products are formed as |w| · (a with w's sign), by vpdpbusd with AVX-VNNI or by vpmaddubsw
/// and vpmaddwd without; a block column of eight rows costs eight loads, eight broadcasts, 24 (32 without VNNI)
/// integer operations and one conversion of eight half scales, and every line is prefetched ahead. Batches go
/// through <see cref="Q8BatchDot"/>'s tile reading the group (<see cref="Tile"/>, activations in offset form) on
/// CPUs with AVX-VNNI, through <see cref="TileNormal{TD}"/> on the others. <see cref="GroupScalar"/> is the scalar
/// twin and the portable path.</para>
/// </summary>
public static unsafe class Q8x8Dot
{
    /// <summary>Bytes ahead of the block column being read that decode prefetches every line into L1 (as <see cref="Q4x8Dot.PrefetchDistance"/>).</summary>
    internal const int PrefetchDistance = 2048;

    /// <summary>Bytes ahead that decode prefetches into L2 (as <see cref="Q4x8Dot.L2PrefetchDistance"/>).</summary>
    internal const int L2PrefetchDistance = 8192;

    /// <summary>A repacked group: <c>w0</c> is its address; the other row pointers are not read.</summary>
    internal struct GroupLayout : Q8BatchDot.IWeightRows
    {
        public static nint BlockStride => Q8_0x8Format.BlockBytes;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Block(byte* w0, byte* w1, byte* w2, byte* w3, byte* w4, byte* w5, byte* w6, byte* w7, nint o, out Vector256<float> dw,
            out Vector256<sbyte> g0, out Vector256<sbyte> g1, out Vector256<sbyte> g2, out Vector256<sbyte> g3,
            out Vector256<sbyte> g4, out Vector256<sbyte> g5, out Vector256<sbyte> g6, out Vector256<sbyte> g7)
        {
            byte* p = w0 + o;
            // Exact for every finite half; the loader keeps matrices with an infinite or NaN scale in rows.
            dw = Fp16Format.ToSingle8Normalised((ushort*)p);
            sbyte* q = (sbyte*)(p + Q8_0x8Format.CodeOffset);
            g0 = Avx.LoadVector256(q); g1 = Avx.LoadVector256(q + 32); g2 = Avx.LoadVector256(q + 64); g3 = Avx.LoadVector256(q + 96);
            g4 = Avx.LoadVector256(q + 128); g5 = Avx.LoadVector256(q + 160); g6 = Avx.LoadVector256(q + 192); g7 = Avx.LoadVector256(q + 224);
        }
    }

    /// <summary>
    /// The group at <paramref name="g"/> · activation rows <c>a + c·aStride</c> in offset form (c &lt; <paramref name="nCols"/> ≤
    /// <see cref="Q8BatchDot.TileColumns"/>): results to y[c·yStride + 0..7]. Requires <see cref="CpuFeatures.VnniTiles"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Tile(byte* g, byte* a, nint aStride, int nCols, int blocks, float* y, nint yStride)
    {
        if ((uint)nCols - 1 > Q8BatchDot.TileColumns - 1) throw new ArgumentOutOfRangeException(nameof(nCols));
        Q8BatchDot.Tile<GroupLayout>(g, g, g, g, g, g, g, g, Q8_0x8Format.GroupRows, a, aStride, nCols, blocks, y, yStride);
    }

    /// <summary>
    /// The eight outputs of the group at <paramref name="g"/> · the activation row <paramref name="a"/> (normal form)
    /// to y[0..7]. AVX2 + FMA; AVX-VNNI when the CPU has it.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void GroupAvx2(byte* g, byte* a, int blocks, float* y)
    {
        if (AvxVnni.IsSupported) Group<Vnni>(g, a, blocks, y);
        else Group<NoVnni>(g, a, blocks, y);
    }

    /// <summary><see cref="GroupAvx2"/> with the integer products chosen by <typeparamref name="TD"/> (tests run both).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Group<TD>(byte* g, byte* a, int blocks, float* y) where TD : struct, ICodeDot
    {
        float* half = Fp16Format.Table;
        Vector256<float> acc = Vector256<float>.Zero;
        for (int i = 0; i < blocks; i++, g += Q8_0x8Format.BlockBytes, a += Q8_0Format.BlockBytes)
        {
            Sse.Prefetch0(g + PrefetchDistance); Sse.Prefetch0(g + PrefetchDistance + 64); Sse.Prefetch0(g + PrefetchDistance + 128);
            Sse.Prefetch0(g + PrefetchDistance + 192); Sse.Prefetch0(g + PrefetchDistance + 256);
            Sse.Prefetch1(g + L2PrefetchDistance); Sse.Prefetch1(g + L2PrefetchDistance + 64); Sse.Prefetch1(g + L2PrefetchDistance + 128);
            Sse.Prefetch1(g + L2PrefetchDistance + 192); Sse.Prefetch1(g + L2PrefetchDistance + 256);
            sbyte* q = (sbyte*)(g + Q8_0x8Format.CodeOffset);
            Vector256<int> s = Dot<TD>(q, a + 2);
            Vector256<float> dw = Fp16Format.ToSingle8Normalised((ushort*)g);
            acc = Fma.MultiplyAdd(Avx.Multiply(dw, Vector256.Create(half[*(ushort*)a])), Avx.ConvertToVector256Single(s), acc);
        }
        Avx.Store(y, acc);
    }

    /// <summary>
    /// The group at <paramref name="g"/> · activation rows <c>a + c·aStride</c> in normal form (c &lt; <paramref name="nCols"/> ≤
    /// <see cref="TileColumns"/>): results to y[c·yStride + 0..7]. For CPUs without AVX-VNNI (with it, batches take
    /// <see cref="Tile"/>, which needs the activations in offset form); AVX2 + FMA.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void TileNormal<TD>(byte* g, byte* a, nint aStride, int nCols, int blocks, float* y, nint yStride) where TD : struct, ICodeDot
    {
        if ((uint)nCols - 1 > TileColumns - 1) throw new ArgumentOutOfRangeException(nameof(nCols));
        float* half = Fp16Format.Table;
        Vector256<float>* acc = stackalloc Vector256<float>[TileColumns];
        for (int c = 0; c < TileColumns; c++) acc[c] = Vector256<float>.Zero;
        for (int i = 0; i < blocks; i++, g += Q8_0x8Format.BlockBytes)
        {
            sbyte* q = (sbyte*)(g + Q8_0x8Format.CodeOffset);
            Vector256<sbyte> g0 = Avx.LoadVector256(q), g1 = Avx.LoadVector256(q + 32), g2 = Avx.LoadVector256(q + 64), g3 = Avx.LoadVector256(q + 96);
            Vector256<sbyte> g4 = Avx.LoadVector256(q + 128), g5 = Avx.LoadVector256(q + 160), g6 = Avx.LoadVector256(q + 192), g7 = Avx.LoadVector256(q + 224);
            // |w| once per block column, for every activation row below.
            Vector256<byte> m0 = Avx2.Abs(g0), m1 = Avx2.Abs(g1), m2 = Avx2.Abs(g2), m3 = Avx2.Abs(g3);
            Vector256<byte> m4 = Avx2.Abs(g4), m5 = Avx2.Abs(g5), m6 = Avx2.Abs(g6), m7 = Avx2.Abs(g7);
            Vector256<float> dw = Fp16Format.ToSingle8Normalised((ushort*)g);
            byte* x = a + (nint)i * Q8_0Format.BlockBytes;
            for (int c = 0; c < nCols; c++, x += aStride)
            {
                Vector256<int> s0 = TD.Products(Vector256<int>.Zero, m0, g0, *(int*)(x + 2));
                Vector256<int> s1 = TD.Products(Vector256<int>.Zero, m1, g1, *(int*)(x + 6));
                s0 = TD.Products(s0, m2, g2, *(int*)(x + 10));
                s1 = TD.Products(s1, m3, g3, *(int*)(x + 14));
                s0 = TD.Products(s0, m4, g4, *(int*)(x + 18));
                s1 = TD.Products(s1, m5, g5, *(int*)(x + 22));
                s0 = TD.Products(s0, m6, g6, *(int*)(x + 26));
                s1 = TD.Products(s1, m7, g7, *(int*)(x + 30));
                acc[c] = Fma.MultiplyAdd(Avx.Multiply(dw, Vector256.Create(half[*(ushort*)x])), Avx.ConvertToVector256Single(Avx2.Add(s0, s1)), acc[c]);
            }
        }
        for (int c = 0; c < nCols; c++) Avx.Store(y + c * yStride, acc[c]);
    }

    /// <summary>Activation rows per <see cref="TileNormal{TD}"/> call (at most).</summary>
    internal const int TileColumns = 8;

    /// <summary>Lane r: Σ over one block column of row r's 32 codes times the activation codes at <paramref name="x"/>, two chains of four.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Dot<TD>(sbyte* q, byte* x) where TD : struct, ICodeDot
    {
        Vector256<int> s0 = TD.Products(Vector256<int>.Zero, Avx.LoadVector256(q), *(int*)x);
        Vector256<int> s1 = TD.Products(Vector256<int>.Zero, Avx.LoadVector256(q + 32), *(int*)(x + 4));
        s0 = TD.Products(s0, Avx.LoadVector256(q + 64), *(int*)(x + 8));
        s1 = TD.Products(s1, Avx.LoadVector256(q + 96), *(int*)(x + 12));
        s0 = TD.Products(s0, Avx.LoadVector256(q + 128), *(int*)(x + 16));
        s1 = TD.Products(s1, Avx.LoadVector256(q + 160), *(int*)(x + 20));
        s0 = TD.Products(s0, Avx.LoadVector256(q + 192), *(int*)(x + 24));
        s1 = TD.Products(s1, Avx.LoadVector256(q + 224), *(int*)(x + 28));
        return Avx2.Add(s0, s1);
    }

    /// <summary>
    /// sum + (lane r) Σ_k w_rk · a_k over the four codes of <c>w</c>'s dword r and the four activation codes <c>a4</c>, exact:
    /// formed as |w| · (a with w's sign), an unsigned × signed product.
    /// </summary>
    internal interface ICodeDot
    {
        static abstract Vector256<int> Products(Vector256<int> sum, Vector256<sbyte> w, int a4);

        /// <summary><see cref="Products(Vector256{int}, Vector256{sbyte}, int)"/> with |w| already formed (<paramref name="magnitudes"/>), when several activation rows share it.</summary>
        static abstract Vector256<int> Products(Vector256<int> sum, Vector256<byte> magnitudes, Vector256<sbyte> w, int a4);
    }

    /// <summary>AVX-VNNI: one vpdpbusd.</summary>
    internal struct Vnni : ICodeDot
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Products(Vector256<int> sum, Vector256<sbyte> w, int a4) => Products(sum, Avx2.Abs(w), w, a4);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Products(Vector256<int> sum, Vector256<byte> magnitudes, Vector256<sbyte> w, int a4) =>
            AvxVnni.MultiplyWideningAndAdd(sum, magnitudes, Avx2.Sign(Vector256.Create(a4).AsSByte(), w));
    }

    /// <summary>AVX2: vpmaddubsw (each pair at most 2·128·127 = 32512 in magnitude: no saturation), then vpmaddwd by ones.</summary>
    internal struct NoVnni : ICodeDot
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Products(Vector256<int> sum, Vector256<sbyte> w, int a4) => Products(sum, Avx2.Abs(w), w, a4);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Products(Vector256<int> sum, Vector256<byte> magnitudes, Vector256<sbyte> w, int a4) =>
            Avx2.Add(sum, Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(magnitudes, Avx2.Sign(Vector256.Create(a4).AsSByte(), w)), Vector256.Create((short)1)));
    }

    /// <summary>Scalar twin: the eight outputs of one group · one activation row (normal form), in this class's order.</summary>
    internal static void GroupScalar(byte* g, byte* a, int blocks, float* y)
    {
        float* acc = stackalloc float[Q8_0x8Format.GroupRows];
        for (int r = 0; r < Q8_0x8Format.GroupRows; r++) acc[r] = 0;
        for (int i = 0; i < blocks; i++, g += Q8_0x8Format.BlockBytes, a += Q8_0Format.BlockBytes)
        {
            sbyte* x = (sbyte*)(a + 2);
            float da = QuantDot.Scale(a);
            for (int r = 0; r < Q8_0x8Format.GroupRows; r++)
            {
                int s = 0;
                for (int m = 0; m < 8; m++)
                    for (int k = 0; k < 4; k++)
                        s += ((sbyte*)g)[Q8_0x8Format.CodeOffset + 32 * m + 4 * r + k] * x[4 * m + k]; // row r's code 4m + k
                acc[r] = MathF.FusedMultiplyAdd(QuantDot.Scale(g + 2 * r) * da, s, acc[r]);
            }
        }
        for (int r = 0; r < Q8_0x8Format.GroupRows; r++) y[r] = acc[r];
    }
}
