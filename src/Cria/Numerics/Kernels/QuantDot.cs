using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Cria.Numerics.Formats;

namespace Cria.Numerics.Kernels;

/// <summary>
/// Dot products of a quantized weight row (Q8_0 or Q4_0) with an activation row quantized to Q8_0,
/// computed exactly like ggml's AVX2 <c>ggml_vec_dot_q8_0_q8_0</c> / <c>ggml_vec_dot_q4_0_q8_0</c>
/// (and llamafile's tinyBLAS_Q0_AVX, which is the same arithmetic):
/// <list type="number">
/// <item>per block, the 32 integer products are summed in eight int32 lanes, lane k holding
/// elements 4k..4k+3 (vpmaddubsw, then vpmaddwd with ones — or one vpdpbusd where AVX-VNNI
/// exists; the integers are identical since nothing saturates);</item>
/// <item>the lanes are converted to float and accumulated with one fused multiply-add by the
/// block's scale product d_w·d_a (a float product of the two half scales) into a single
/// eight-lane float accumulator, block after block;</item>
/// <item>at the end the lanes are summed as ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)).</item>
/// </list>
/// Q8_0 weights use ggml's sign trick |w|·(a·sign w). For Q4_0 the codes c = q+8 (0..15) are
/// already unsigned, so the lanes are computed as Σc·a - 8·Σa with -8·Σa formed once per
/// activation block: the same integers with fewer instructions per weight row.
/// The float accumulation order is part of the result, so the kernels never split one dot over
/// several accumulators; speed comes from working on several rows (and activation rows) at once,
/// each output with its own accumulator. The scalar twins reproduce the lanes exactly; all paths
/// return identical bits.
/// </summary>
public static unsafe class QuantDot
{
    /// <summary>Q8_0 weights · Q8_0 activations over <paramref name="n"/> elements (a multiple of 32).</summary>
    public static float Q8_0Q8_0(ReadOnlySpan<byte> weights, ReadOnlySpan<byte> activations, int n)
    {
        int blocks = CheckArgs(weights, Q8_0Format.BlockBytes, activations, n);
        fixed (byte* w = weights)
        fixed (byte* a = activations)
            return Q8_0Q8_0(w, a, blocks);
    }

    /// <summary>Q4_0 weights · Q8_0 activations over <paramref name="n"/> elements (a multiple of 32).</summary>
    public static float Q4_0Q8_0(ReadOnlySpan<byte> weights, ReadOnlySpan<byte> activations, int n)
    {
        int blocks = CheckArgs(weights, Q4_0Format.BlockBytes, activations, n);
        fixed (byte* w = weights)
        fixed (byte* a = activations)
            return Q4_0Q8_0(w, a, blocks);
    }

    /// <summary>Q8_0 · Q8_0 over <paramref name="blocks"/> blocks.</summary>
    public static float Q8_0Q8_0(byte* w, byte* a, int blocks) =>
        CpuFeatures.Avx2Fma ? Dot1Avx2<Q8Weights>(w, a, blocks) : Dot1Scalar<Q8Weights>(w, a, blocks);

    /// <summary>Q4_0 · Q8_0 over <paramref name="blocks"/> blocks.</summary>
    public static float Q4_0Q8_0(byte* w, byte* a, int blocks) =>
        CpuFeatures.Avx2Fma ? Dot1Avx2<Q4Weights>(w, a, blocks) : Dot1Scalar<Q4Weights>(w, a, blocks);

    internal static float Q8_0Q8_0Scalar(byte* w, byte* a, int blocks) => Dot1Scalar<Q8Weights>(w, a, blocks);
    internal static float Q4_0Q8_0Scalar(byte* w, byte* a, int blocks) => Dot1Scalar<Q4Weights>(w, a, blocks);
    internal static float Q8_0Q8_0Avx2(byte* w, byte* a, int blocks) => Dot1Avx2<Q8Weights>(w, a, blocks);
    internal static float Q4_0Q8_0Avx2(byte* w, byte* a, int blocks) => Dot1Avx2<Q4Weights>(w, a, blocks);

    private static int CheckArgs(ReadOnlySpan<byte> w, int wBlockBytes, ReadOnlySpan<byte> a, int n)
    {
        if (n < 0 || n % 32 != 0) throw new ArgumentException($"length {n} is not a multiple of 32", nameof(n));
        int blocks = n / 32;
        if (w.Length < (long)blocks * wBlockBytes) throw new ArgumentException("weight row too short", "weights");
        if (a.Length < (long)blocks * Q8_0Format.BlockBytes) throw new ArgumentException("activation row too short", "activations");
        return blocks;
    }

    // ---------------------------------------------------------------- shared pieces

    /// <summary>Half-precision scale stored in the first two bytes of a block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Scale(byte* block) => Fp16Format.ToSingle(*(ushort*)block);

    /// <summary>
    /// The eight per-lane sums of w[j]·a[j] (lane k: j = 4k..4k+3) as floats. <paramref name="absW"/>
    /// is |w| (pass Avx2.Abs(w); callers hoist it when one weight block meets several activations).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> LaneSums(Vector256<byte> absW, Vector256<sbyte> w, Vector256<sbyte> a)
    {
        Vector256<sbyte> signedA = Avx2.Sign(a, w);
        Vector256<int> sums;
        if (AvxVnni.IsSupported)
            sums = AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, absW, signedA);
        else
            sums = Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(absW, signedA), Vector256.Create((short)1));
        return Avx.ConvertToVector256Single(sums);
    }

    /// <summary>Lane sums of int32 products → floats; <paramref name="addend"/> is added to each lane first.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> UnsignedLaneSums(Vector256<byte> u, Vector256<sbyte> a, Vector256<int> addend)
    {
        Vector256<int> sums = AvxVnni.IsSupported
            ? AvxVnni.MultiplyWideningAndAdd(addend, u, a)
            : Avx2.Add(Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u, a), Vector256.Create((short)1)), addend);
        return Avx.ConvertToVector256Single(sums);
    }

    /// <summary>Integer lane sums of u·a (lane k: elements 4k..4k+3).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<int> UnsignedLaneSumsInt(Vector256<byte> u, Vector256<sbyte> a) =>
        AvxVnni.IsSupported
            ? AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, u, a)
            : Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u, a), Vector256.Create((short)1));

    /// <summary>ggml's hsum_float_8: ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float HorizontalSum(Vector256<float> v)
    {
        Vector128<float> r = v.GetLower() + v.GetUpper();
        return (r.GetElement(0) + r.GetElement(2)) + (r.GetElement(1) + r.GetElement(3));
    }

    /// <summary>Scalar form of <see cref="HorizontalSum(Vector256{float})"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float HorizontalSum(float* l) => ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));

    // ---------------------------------------------------------------- single dot

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float Dot1Avx2<TW>(byte* w, byte* a, int blocks) where TW : struct, IQ8Weights
    {
        float* half = Fp16Format.Table;
        Vector256<float> acc = Vector256<float>.Zero;
        for (int i = 0; i < blocks; i++, w += TW.BlockBytes, a += Q8_0Format.BlockBytes)
        {
            Vector256<sbyte> av = Avx.LoadVector256((sbyte*)(a + 2));
            Vector256<float> p = TW.Products(w, av, TW.Bias(av));
            acc = Fma.MultiplyAdd(Vector256.Create(half[*(ushort*)w] * half[*(ushort*)a]), p, acc);
        }
        return HorizontalSum(acc);
    }

    /// <summary>Scalar twin: the same eight lane accumulators, updated with fused multiply-adds.</summary>
    internal static float Dot1Scalar<TW>(byte* w, byte* a, int blocks) where TW : struct, IQ8Weights
    {
        float* acc = stackalloc float[8];
        sbyte* wv = stackalloc sbyte[32];
        for (int k = 0; k < 8; k++) acc[k] = 0;
        for (int i = 0; i < blocks; i++)
        {
            byte* wb = w + (nint)i * TW.BlockBytes;
            byte* ab = a + (nint)i * Q8_0Format.BlockBytes;
            TW.LoadScalar(wb, wv);
            sbyte* av = (sbyte*)(ab + 2);
            float d = Scale(wb) * Scale(ab);
            for (int k = 0; k < 8; k++)
            {
                int j = 4 * k;
                int s = wv[j] * av[j] + wv[j + 1] * av[j + 1] + wv[j + 2] * av[j + 2] + wv[j + 3] * av[j + 3];
                acc[k] = MathF.FusedMultiplyAdd(d, s, acc[k]);
            }
        }
        return HorizontalSum(acc);
    }

    // ---------------------------------------------------------------- tiles for MatMul (AVX2 only)
    // Each output keeps its own accumulator and sees the blocks in the same order as the single
    // dot, so tiling changes speed, never results.

    /// <summary>Four weight rows (stride <paramref name="wStride"/> bytes) · one activation row → y[0..3].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Rows4Avx2<TW>(byte* w, nint wStride, byte* a, int blocks, float* y) where TW : struct, IQ8Weights
    {
        float* half = Fp16Format.Table;
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        byte* w0 = w, w1 = w + wStride, w2 = w + 2 * wStride, w3 = w + 3 * wStride;
        // Decode streams the weights once from memory: prefetch the same block of the next four rows
        // (the next call's), so the reads run ahead across row and page boundaries.
        nint ahead = 4 * wStride;
        for (int i = 0; i < blocks; i++)
        {
            Sse.Prefetch0(w0 + ahead); Sse.Prefetch0(w1 + ahead);
            Sse.Prefetch0(w2 + ahead); Sse.Prefetch0(w3 + ahead);
            Vector256<sbyte> av = Avx.LoadVector256((sbyte*)(a + 2));
            Vector256<int> bias = TW.Bias(av);
            // Broadcast loads and a vector product: the same float product as d_w·d_a in scalar.
            Vector256<float> da = Vector256.Create(half[*(ushort*)a]);
            acc0 = Fma.MultiplyAdd(Avx.Multiply(Vector256.Create(half[*(ushort*)w0]), da), TW.Products(w0, av, bias), acc0);
            acc1 = Fma.MultiplyAdd(Avx.Multiply(Vector256.Create(half[*(ushort*)w1]), da), TW.Products(w1, av, bias), acc1);
            acc2 = Fma.MultiplyAdd(Avx.Multiply(Vector256.Create(half[*(ushort*)w2]), da), TW.Products(w2, av, bias), acc2);
            acc3 = Fma.MultiplyAdd(Avx.Multiply(Vector256.Create(half[*(ushort*)w3]), da), TW.Products(w3, av, bias), acc3);
            a += Q8_0Format.BlockBytes;
            w0 += TW.BlockBytes; w1 += TW.BlockBytes; w2 += TW.BlockBytes; w3 += TW.BlockBytes;
        }
        y[0] = HorizontalSum(acc0);
        y[1] = HorizontalSum(acc1);
        y[2] = HorizontalSum(acc2);
        y[3] = HorizontalSum(acc3);
    }

    /// <summary>
    /// Two weight rows · two activation rows. Results go to y[c*yStride + r] (r, c in {0, 1}), i.e.
    /// the batch-major layout of MatMul's output.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Tile2x2Avx2<TW>(byte* w, nint wStride, byte* a, nint aStride, int blocks, float* y, nint yStride) where TW : struct, IQ8Weights
    {
        float* half = Fp16Format.Table;
        Vector256<float> acc00 = default, acc01 = default, acc10 = default, acc11 = default;
        byte* w0 = w, w1 = w + wStride, a0 = a, a1 = a + aStride;
        for (int i = 0; i < blocks; i++)
        {
            Vector256<sbyte> x0 = Avx.LoadVector256((sbyte*)(a0 + 2));
            Vector256<sbyte> x1 = Avx.LoadVector256((sbyte*)(a1 + 2));
            Vector256<int> b0 = TW.Bias(x0), b1 = TW.Bias(x1);
            float da0 = half[*(ushort*)a0], da1 = half[*(ushort*)a1];
            var u0 = TW.Unpack(w0);
            float dw0 = half[*(ushort*)w0];
            acc00 = Fma.MultiplyAdd(Vector256.Create(dw0 * da0), TW.Products(u0, x0, b0), acc00);
            acc01 = Fma.MultiplyAdd(Vector256.Create(dw0 * da1), TW.Products(u0, x1, b1), acc01);
            var u1 = TW.Unpack(w1);
            float dw1 = half[*(ushort*)w1];
            acc10 = Fma.MultiplyAdd(Vector256.Create(dw1 * da0), TW.Products(u1, x0, b0), acc10);
            acc11 = Fma.MultiplyAdd(Vector256.Create(dw1 * da1), TW.Products(u1, x1, b1), acc11);
            a0 += Q8_0Format.BlockBytes; a1 += Q8_0Format.BlockBytes;
            w0 += TW.BlockBytes; w1 += TW.BlockBytes;
        }
        y[0] = HorizontalSum(acc00);
        y[1] = HorizontalSum(acc10);
        y[yStride] = HorizontalSum(acc01);
        y[yStride + 1] = HorizontalSum(acc11);
    }

    /// <summary>
    /// Four weight rows (stride <paramref name="wStride"/> bytes) · three activation rows (stride
    /// <paramref name="aStride"/>): results to y[c*yStride + r]. Each weight block is unpacked once
    /// per block step and meets all three activation blocks; every output still has its own
    /// accumulator and sees the blocks in ascending order, so the bits equal the single dot's.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Tile4x3Avx2<TW>(byte* w, nint wStride, byte* a, nint aStride, int blocks, float* y, nint yStride) where TW : struct, IQ8Weights
    {
        float* half = Fp16Format.Table;
        // The twelve scale products d_w·d_a of a block step, formed four at a time (one 128-bit
        // multiply per activation row, the same float products as scalar d_w·d_a) and read back as
        // broadcast loads: that moves eight of the twelve multiplies off the vector ALU ports,
        // which the integer dot, the conversion and the fused multiply-add keep busy.
        float* d = stackalloc float[12];
        Vector256<float> c00 = default, c10 = default, c20 = default, c30 = default;
        Vector256<float> c01 = default, c11 = default, c21 = default, c31 = default;
        Vector256<float> c02 = default, c12 = default, c22 = default, c32 = default;
        byte* w0 = w, w1 = w + wStride, w2 = w + 2 * wStride, w3 = w + 3 * wStride;
        byte* a0 = a, a1 = a + aStride, a2 = a + 2 * aStride;
        for (int i = 0; i < blocks; i++)
        {
            Vector128<float> dw = Vector128.Create(half[*(ushort*)w0], half[*(ushort*)w1], half[*(ushort*)w2], half[*(ushort*)w3]);
            Sse.Store(d, Sse.Multiply(dw, Vector128.Create(half[*(ushort*)a0])));
            Sse.Store(d + 4, Sse.Multiply(dw, Vector128.Create(half[*(ushort*)a1])));
            Sse.Store(d + 8, Sse.Multiply(dw, Vector128.Create(half[*(ushort*)a2])));
            Vector256<byte> u0 = TW.Unpack(w0), u1 = TW.Unpack(w1), u2 = TW.Unpack(w2), u3 = TW.Unpack(w3);

            Vector256<sbyte> x = Avx.LoadVector256((sbyte*)(a0 + 2));
            Vector256<int> b = TW.Bias(x);
            c00 = Fma.MultiplyAdd(Vector256.Create(d[0]), TW.Products(u0, x, b), c00);
            c10 = Fma.MultiplyAdd(Vector256.Create(d[1]), TW.Products(u1, x, b), c10);
            c20 = Fma.MultiplyAdd(Vector256.Create(d[2]), TW.Products(u2, x, b), c20);
            c30 = Fma.MultiplyAdd(Vector256.Create(d[3]), TW.Products(u3, x, b), c30);

            x = Avx.LoadVector256((sbyte*)(a1 + 2));
            b = TW.Bias(x);
            c01 = Fma.MultiplyAdd(Vector256.Create(d[4]), TW.Products(u0, x, b), c01);
            c11 = Fma.MultiplyAdd(Vector256.Create(d[5]), TW.Products(u1, x, b), c11);
            c21 = Fma.MultiplyAdd(Vector256.Create(d[6]), TW.Products(u2, x, b), c21);
            c31 = Fma.MultiplyAdd(Vector256.Create(d[7]), TW.Products(u3, x, b), c31);

            x = Avx.LoadVector256((sbyte*)(a2 + 2));
            b = TW.Bias(x);
            c02 = Fma.MultiplyAdd(Vector256.Create(d[8]), TW.Products(u0, x, b), c02);
            c12 = Fma.MultiplyAdd(Vector256.Create(d[9]), TW.Products(u1, x, b), c12);
            c22 = Fma.MultiplyAdd(Vector256.Create(d[10]), TW.Products(u2, x, b), c22);
            c32 = Fma.MultiplyAdd(Vector256.Create(d[11]), TW.Products(u3, x, b), c32);

            w0 += TW.BlockBytes; w1 += TW.BlockBytes; w2 += TW.BlockBytes; w3 += TW.BlockBytes;
            a0 += Q8_0Format.BlockBytes; a1 += Q8_0Format.BlockBytes; a2 += Q8_0Format.BlockBytes;
        }
        y[0] = HorizontalSum(c00); y[1] = HorizontalSum(c10); y[2] = HorizontalSum(c20); y[3] = HorizontalSum(c30);
        y += yStride;
        y[0] = HorizontalSum(c01); y[1] = HorizontalSum(c11); y[2] = HorizontalSum(c21); y[3] = HorizontalSum(c31);
        y += yStride;
        y[0] = HorizontalSum(c02); y[1] = HorizontalSum(c12); y[2] = HorizontalSum(c22); y[3] = HorizontalSum(c32);
    }

    /// <summary>One weight row · two activation rows → y[0], y[yStride].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Tile1x2Avx2<TW>(byte* w, byte* a, nint aStride, int blocks, float* y, nint yStride) where TW : struct, IQ8Weights
    {
        float* half = Fp16Format.Table;
        Vector256<float> acc0 = default, acc1 = default;
        byte* a0 = a, a1 = a + aStride;
        for (int i = 0; i < blocks; i++)
        {
            var u = TW.Unpack(w);
            float dw = half[*(ushort*)w];
            Vector256<sbyte> x0 = Avx.LoadVector256((sbyte*)(a0 + 2)), x1 = Avx.LoadVector256((sbyte*)(a1 + 2));
            acc0 = Fma.MultiplyAdd(Vector256.Create(dw * half[*(ushort*)a0]), TW.Products(u, x0, TW.Bias(x0)), acc0);
            acc1 = Fma.MultiplyAdd(Vector256.Create(dw * half[*(ushort*)a1]), TW.Products(u, x1, TW.Bias(x1)), acc1);
            w += TW.BlockBytes; a0 += Q8_0Format.BlockBytes; a1 += Q8_0Format.BlockBytes;
        }
        y[0] = HorizontalSum(acc0);
        y[yStride] = HorizontalSum(acc1);
    }

    internal static float Dot1<TW>(byte* w, byte* a, int blocks) where TW : struct, IQ8Weights =>
        CpuFeatures.Avx2Fma ? Dot1Avx2<TW>(w, a, blocks) : Dot1Scalar<TW>(w, a, blocks);
}

/// <summary>
/// A weight block format that multiplies against Q8_0 activation blocks (32 values, scale in bytes
/// 0-1). The AVX2 members produce the eight lane sums of ggml's kernels; how they get there may
/// differ (integer arithmetic is exact), the values may not.
/// </summary>
internal unsafe interface IQ8Weights
{
    /// <summary>Bytes per block.</summary>
    static abstract int BlockBytes { get; }

    /// <summary>The block's 32 integer values in element order.</summary>
    static abstract void LoadScalar(byte* block, sbyte* values);

    /// <summary>Per-activation-block term shared by every weight row (AVX2).</summary>
    static abstract Vector256<int> Bias(Vector256<sbyte> a);

    /// <summary>The block's values in the form <see cref="Products(Vector256{byte}, Vector256{sbyte}, Vector256{int})"/> takes (AVX2).</summary>
    static abstract Vector256<byte> Unpack(byte* block);

    /// <summary>Lane sums (lane k: elements 4k..4k+3) of weight·activation as floats (AVX2).</summary>
    static abstract Vector256<float> Products(Vector256<byte> unpacked, Vector256<sbyte> a, Vector256<int> bias);

    /// <summary>Unpack + Products.</summary>
    static abstract Vector256<float> Products(byte* block, Vector256<sbyte> a, Vector256<int> bias);
}

/// <summary>
/// Q8_0 weights. Without AVX-VNNI: ggml's sign trick, |w| · (a · sign w), keeps the unsigned operand
/// in range even for w = -128. With AVX-VNNI (vpdpbusd accumulates in 32 bits, nothing saturates):
/// the weights are offset to unsigned codes w + 128 and Σ w·a = Σ (w+128)·a - 128·Σa, with -128·Σa
/// formed once per activation block — one instruction per weight row and block instead of three.
/// Either way the integer lane sums are ggml's, so the floats are too.
/// </summary>
internal unsafe struct Q8Weights : IQ8Weights
{
    public static int BlockBytes => Q8_0Format.BlockBytes;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadScalar(byte* block, sbyte* values)
    {
        for (int j = 0; j < 32; j++) values[j] = ((sbyte*)(block + 2))[j];
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Bias(Vector256<sbyte> a) =>
        AvxVnni.IsSupported
            ? Avx2.Subtract(Vector256<int>.Zero, AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, Vector256.Create((byte)128), a))
            : default;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Unpack(byte* block) =>
        AvxVnni.IsSupported
            ? Avx2.Xor(Avx.LoadVector256(block + 2), Vector256.Create((byte)0x80))
            : Avx.LoadVector256(block + 2);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Products(Vector256<byte> unpacked, Vector256<sbyte> a, Vector256<int> bias)
    {
        if (AvxVnni.IsSupported)
            return Avx.ConvertToVector256Single(AvxVnni.MultiplyWideningAndAdd(bias, unpacked, a));
        Vector256<sbyte> w = unpacked.AsSByte();
        return QuantDot.LaneSums(Avx2.Abs(w), w, a);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Products(byte* block, Vector256<sbyte> a, Vector256<int> bias) => Products(Unpack(block), a, bias);
}

/// <summary>
/// Q4_0 weights. Codes c = q + 8 are 0..15, so Σ q·a = Σ c·a - 8·Σ a: the unsigned codes go
/// straight into the unsigned×signed multiply, and -8·Σa (per lane) is computed once per
/// activation block. Same integers as ggml's (c - 8) with the sign trick, so the same floats.
/// </summary>
internal unsafe struct Q4Weights : IQ8Weights
{
    public static int BlockBytes => Q4_0Format.BlockBytes;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadScalar(byte* block, sbyte* values)
    {
        for (int j = 0; j < 16; j++)
        {
            int q = block[2 + j];
            values[j] = (sbyte)((q & 0x0F) - 8);
            values[j + 16] = (sbyte)((q >> 4) - 8);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Bias(Vector256<sbyte> a) =>
        Avx2.Subtract(Vector256<int>.Zero, QuantDot.UnsignedLaneSumsInt(Vector256.Create((byte)8), a));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Unpack(byte* block) => LegacyDot.Nibbles(block + 2);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Products(Vector256<byte> unpacked, Vector256<sbyte> a, Vector256<int> bias) =>
        QuantDot.UnsignedLaneSums(unpacked, a, bias);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Products(byte* block, Vector256<sbyte> a, Vector256<int> bias) => Products(Unpack(block), a, bias);
}
