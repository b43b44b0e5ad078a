using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Cria.Numerics.Formats;

namespace Cria.Numerics.Kernels;

/// <summary>
/// Dot products of IQ4_NL weights with Q8_0 activations and of IQ4_XS weights with Q8_K
/// activations, bit-identical to ggml's AVX2 kernels.
/// <list type="bullet">
/// <item><b>IQ4_NL, vec_dot</b> (ggml_vec_dot_iq4_nl_q8_0, what ggml uses for one activation row):
/// per block the eight int32 lane sums (lane k: elements 4k..4k+3, the table levels times the
/// activations) are converted to float and accumulated with a fused multiply-add by d_a·d_w into
/// <i>two</i> accumulators, even blocks into the first and odd blocks into the second; the two
/// are added lane by lane and reduced with ggml's hsum order. A last odd block is added as a
/// scalar: sum += d·Σ (fused, as GCC contracts it with -march=native).</item>
/// <item><b>IQ4_NL, tinyBLAS</b> (llamafile's tinyBLAS_Q0_AVX, what ggml uses for two or more
/// activation rows): the same lanes into a single accumulator, like Q4_0
/// (<see cref="IQ4NLWeights"/> plugs into <see cref="QuantDot"/>'s tiles).</item>
/// <item><b>IQ4_XS</b> (ggml_vec_dot_iq4_xs_q8_K): per super-block the integer lanes are
/// Σ_sub-blocks (ls - 32)·Σ w·a (exact int32), converted once and accumulated with one fused
/// multiply-add by d_w·d_a into one accumulator; hsum at the end.</item>
/// </list>
/// The scalar twins build the same integer lanes and repeat the float steps.
/// </summary>
public static unsafe class IQ4Dot
{
    /// <summary>IQ4_NL weights · Q8_0 activations over <paramref name="blocks"/> blocks, in ggml's vec_dot order.</summary>
    public static float IQ4_NLQ8_0(byte* w, byte* a, int blocks) =>
        CpuFeatures.Avx2Fma ? NlVecDotAvx2(w, a, blocks) : NlVecDotScalar(w, a, blocks);

    /// <summary>IQ4_NL weights · Q8_0 activations in llamafile tinyBLAS's order (one accumulator).</summary>
    public static float IQ4_NLQ8_0Tiny(byte* w, byte* a, int blocks) => QuantDot.Dot1<IQ4NLWeights>(w, a, blocks);

    /// <summary>IQ4_XS weights · Q8_K activations over <paramref name="blocks"/> super-blocks.</summary>
    public static float IQ4_XSQ8_K(byte* w, byte* a, int blocks) =>
        CpuFeatures.Avx2Fma ? XsAvx2(w, a, blocks) : IQ4_XSQ8_KScalar(w, a, blocks);

    internal static float IQ4_NLQ8_0TinyScalar(byte* w, byte* a, int blocks) => QuantDot.Dot1Scalar<IQ4NLWeights>(w, a, blocks);

    // ------------------------------------------------------------------ IQ4_NL vec_dot

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float NlVecDotAvx2(byte* w, byte* a, int blocks)
    {
        float* half = Fp16Format.Table;
        Vector256<float> acc1 = Vector256<float>.Zero, acc2 = Vector256<float>.Zero;
        int ib = 0;
        for (; ib + 1 < blocks; ib += 2)
        {
            byte* w0 = w + ib * IQ4_NLFormat.BlockBytes, w1 = w0 + IQ4_NLFormat.BlockBytes;
            byte* a0 = a + ib * Q8_0Format.BlockBytes, a1 = a0 + Q8_0Format.BlockBytes;
            Vector256<sbyte> x0 = Avx.LoadVector256((sbyte*)(a0 + 2)), x1 = Avx.LoadVector256((sbyte*)(a1 + 2));
            Vector256<float> p0 = IQ4NLWeights.Products(w0, x0, default);
            Vector256<float> p1 = IQ4NLWeights.Products(w1, x1, default);
            acc1 = Fma.MultiplyAdd(Vector256.Create(half[*(ushort*)a0] * half[*(ushort*)w0]), p0, acc1);
            acc2 = Fma.MultiplyAdd(Vector256.Create(half[*(ushort*)a1] * half[*(ushort*)w1]), p1, acc2);
        }
        float sum = QuantDot.HorizontalSum(Avx.Add(acc1, acc2));
        for (; ib < blocks; ib++) sum = Tail(w + ib * IQ4_NLFormat.BlockBytes, a + ib * Q8_0Format.BlockBytes, sum);
        return sum;
    }

    internal static float NlVecDotScalar(byte* w, byte* a, int blocks)
    {
        float* acc1 = stackalloc float[8];
        float* acc2 = stackalloc float[8];
        sbyte* wv = stackalloc sbyte[32];
        for (int k = 0; k < 8; k++) acc1[k] = acc2[k] = 0;
        int ib = 0;
        for (; ib + 1 < blocks; ib += 2)
        {
            for (int half = 0; half < 2; half++)
            {
                byte* wb = w + (ib + half) * IQ4_NLFormat.BlockBytes;
                byte* ab = a + (ib + half) * Q8_0Format.BlockBytes;
                IQ4NLWeights.LoadScalar(wb, wv);
                sbyte* av = (sbyte*)(ab + 2);
                float d = QuantDot.Scale(ab) * QuantDot.Scale(wb);
                float* acc = half == 0 ? acc1 : acc2;
                for (int k = 0; k < 8; k++)
                {
                    int j = 4 * k;
                    int s = wv[j] * av[j] + wv[j + 1] * av[j + 1] + wv[j + 2] * av[j + 2] + wv[j + 3] * av[j + 3];
                    acc[k] = MathF.FusedMultiplyAdd(d, s, acc[k]);
                }
            }
        }
        for (int k = 0; k < 8; k++) acc1[k] += acc2[k];
        float sum = QuantDot.HorizontalSum(acc1);
        for (; ib < blocks; ib++) sum = Tail(w + ib * IQ4_NLFormat.BlockBytes, a + ib * Q8_0Format.BlockBytes, sum);
        return sum;
    }

    /// <summary>ggml's scalar tail for a last odd block: sumf += d·(sumi1 + sumi2).</summary>
    private static float Tail(byte* wb, byte* ab, float sum)
    {
        ReadOnlySpan<sbyte> v = IQ4_NLFormat.Values;
        float d = QuantDot.Scale(ab) * QuantDot.Scale(wb);
        sbyte* q8 = (sbyte*)(ab + 2);
        int s1 = 0, s2 = 0;
        for (int j = 0; j < 16; j++)
        {
            s1 += q8[j] * v[wb[2 + j] & 0xF];
            s2 += q8[j + 16] * v[wb[2 + j] >> 4];
        }
        return MathF.FusedMultiplyAdd(d, s1 + s2, sum);
    }

    // ------------------------------------------------------------------ IQ4_XS

    private const int XsBytes = IQ4_XSFormat.BlockBytes;
    private const int KBytes = Q8_KFormat.BlockBytes;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float XsAvx2(byte* w, byte* a, int blocks)
    {
        Vector128<sbyte> table = Vector128.Create(IQ4_NLFormat.Values);
        Vector128<byte> m4 = Vector128.Create((byte)0x0F);
        Vector256<float> acc = Vector256<float>.Zero;
        for (int i = 0; i < blocks; i++)
        {
            byte* wb = w + (nint)i * XsBytes;
            byte* ab = a + (nint)i * KBytes;
            byte* qs = wb + 8;
            sbyte* q8 = (sbyte*)(ab + 4);
            Vector256<int> sumi = Vector256<int>.Zero;
            for (int ib = 0; ib < 8; ib++)
            {
                Vector128<byte> bits = Sse2.LoadVector128(qs + 16 * ib);
                Vector128<sbyte> lo = Ssse3.Shuffle(table, Sse2.And(bits, m4).AsSByte());
                Vector128<sbyte> hi = Ssse3.Shuffle(table, Sse2.And(Sse2.ShiftRightLogical(bits.AsUInt16(), 4).AsByte(), m4).AsSByte());
                Vector256<sbyte> wv = Vector256.Create(lo, hi);
                Vector256<sbyte> av = Avx.LoadVector256(q8 + 32 * ib);
                Vector256<short> p16 = Avx2.MultiplyAddAdjacent(Avx2.Abs(wv), Avx2.Sign(av, wv));
                short ls = (short)(IQ4_XSFormat.SubScale(wb, ib) - 32);
                sumi = Avx2.Add(sumi, Avx2.MultiplyAddAdjacent(p16, Vector256.Create(ls)));
            }
            float d = Fp16Format.ToSingle(*(ushort*)wb) * *(float*)ab;
            acc = Fma.MultiplyAdd(Vector256.Create(d), Avx.ConvertToVector256Single(sumi), acc);
        }
        return QuantDot.HorizontalSum(acc);
    }

    internal static float IQ4_XSQ8_KScalar(byte* w, byte* a, int blocks)
    {
        ReadOnlySpan<sbyte> v = IQ4_NLFormat.Values;
        float* acc = stackalloc float[8];
        int* lanes = stackalloc int[8];
        for (int k = 0; k < 8; k++) acc[k] = 0;
        for (int i = 0; i < blocks; i++)
        {
            byte* wb = w + (nint)i * XsBytes;
            byte* ab = a + (nint)i * KBytes;
            byte* qs = wb + 8;
            sbyte* q8 = (sbyte*)(ab + 4);
            for (int k = 0; k < 8; k++) lanes[k] = 0;
            for (int ib = 0; ib < 8; ib++)
            {
                int ls = IQ4_XSFormat.SubScale(wb, ib) - 32;
                for (int e = 0; e < 32; e++)
                {
                    int q = qs[16 * ib + (e & 15)];
                    int wv = v[e < 16 ? q & 0xF : q >> 4];
                    lanes[e / 4] += ls * (wv * q8[32 * ib + e]);
                }
            }
            float d = Fp16Format.ToSingle(*(ushort*)wb) * *(float*)ab;
            for (int k = 0; k < 8; k++) acc[k] = MathF.FusedMultiplyAdd(d, lanes[k], acc[k]);
        }
        return QuantDot.HorizontalSum(acc);
    }
}

/// <summary>
/// IQ4_NL weights for <see cref="QuantDot"/>'s single-accumulator tiles (tinyBLAS order): the
/// nibbles are looked up in the level table (vpshufb) and multiplied with ggml's sign trick.
/// </summary>
internal unsafe struct IQ4NLWeights : IQ8Weights
{
    public static int BlockBytes => IQ4_NLFormat.BlockBytes;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadScalar(byte* block, sbyte* values)
    {
        ReadOnlySpan<sbyte> v = IQ4_NLFormat.Values;
        for (int j = 0; j < 16; j++)
        {
            int q = block[2 + j];
            values[j] = v[q & 0x0F];
            values[j + 16] = v[q >> 4];
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Bias(Vector256<sbyte> a) => default;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Unpack(byte* block)
    {
        Vector128<sbyte> table = Vector128.Create(IQ4_NLFormat.Values);
        Vector128<byte> m4 = Vector128.Create((byte)0x0F);
        Vector128<byte> bits = Sse2.LoadVector128(block + 2);
        Vector128<sbyte> lo = Ssse3.Shuffle(table, Sse2.And(bits, m4).AsSByte());
        Vector128<sbyte> hi = Ssse3.Shuffle(table, Sse2.And(Sse2.ShiftRightLogical(bits.AsUInt16(), 4).AsByte(), m4).AsSByte());
        return Vector256.Create(lo, hi).AsByte();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Products(Vector256<byte> unpacked, Vector256<sbyte> a, Vector256<int> bias)
    {
        Vector256<sbyte> w = unpacked.AsSByte();
        return QuantDot.LaneSums(Avx2.Abs(w), w, a);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Products(byte* block, Vector256<sbyte> a, Vector256<int> bias) => Products(Unpack(block), a, bias);
}
