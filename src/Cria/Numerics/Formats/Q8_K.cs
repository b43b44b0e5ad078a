using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Cria.Numerics.Formats;

/// <summary>
/// Q8_K: the 8-bit activation format of the K-quants (and IQ4_XS), in super-blocks of 256 values.
/// <para>Block layout (292 bytes): bytes 0-3 hold the scale d as a float32 (little-endian), bytes
/// 4-259 hold 256 signed bytes q[0..255] in element order, bytes 260-291 hold 16 int16 sums
/// bsums[k] = Σ q[16k .. 16k+15] (the K-quant kernels use them for their offset terms). Element j
/// decodes to q[j]·d.</para>
/// <para>ggml's CPU backend quantizes activations with its reference routine (quantize_row_q8_K_ref),
/// reproduced by <see cref="Quantize"/>: take the element of largest magnitude (first one on ties),
/// keep its sign, multiplier -127/max, round to nearest (ties to even, ggml's nearest_int), cap at
/// 127, and store d = 1/multiplier. An all-zero block stores d = 0 and zero codes.</para>
/// </summary>
public static unsafe class Q8_KFormat
{
    /// <summary>Elements per block.</summary>
    public const int BlockSize = 256;

    /// <summary>Bytes per block.</summary>
    public const int BlockBytes = 292;

    /// <summary>Quantizes (activations) exactly as ggml does; the length must be a multiple of 256.</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int blocks = BlockArgs.ForQuantize(src.Length, dst.Length, BlockSize, BlockBytes);
        fixed (float* s = src)
        fixed (byte* d = dst)
            Quantize(s, d, blocks);
    }

    internal static void Quantize(float* src, byte* dst, int blocks)
    {
        if (Avx2.IsSupported) QuantizeAvx2(src, dst, blocks);
        else QuantizeScalar(src, dst, blocks);
    }

    /// <summary>
    /// <see cref="QuantizeScalar"/> with AVX2, the same bytes: the largest magnitude by vector maxima (NaN
    /// lanes lose, as in the scalar comparison), the first element of that magnitude by a compare mask, the
    /// same float multiply and nearest_int per element, block sums from the integer lanes. Blocks holding a
    /// NaN or an infinity take the scalar path.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void QuantizeAvx2(float* src, byte* dst, int blocks)
    {
        Vector256<float> absMask = Vector256.Create(0x7FFFFFFF).AsSingle();
        Vector256<int> order = Vector256.Create(0, 4, 1, 5, 2, 6, 3, 7);
        for (int b = 0; b < blocks; b++)
        {
            float* x = src + b * BlockSize;
            byte* y = dst + b * BlockBytes;
            Vector256<float> m = Vector256<float>.Zero, nan = Vector256<float>.Zero;
            for (int j = 0; j < BlockSize; j += 8)
            {
                Vector256<float> v = Avx.LoadVector256(x + j);
                m = Avx.Max(Avx.And(v, absMask), m); // maxps returns the second operand when the first is NaN
                nan = Avx.Or(nan, Avx.Compare(v, v, FloatComparisonMode.UnorderedNonSignaling));
            }
            Vector128<float> m4 = Sse.Max(m.GetUpper(), m.GetLower());
            m4 = Sse.Max(m4, Sse.MoveHighToLow(m4, m4));
            m4 = Sse.MaxScalar(m4, Sse3.MoveHighAndDuplicate(m4));
            float amax = m4.ToScalar();
            if (!float.IsFinite(amax) || Avx.MoveMask(nan) != 0)
            {
                QuantizeScalar(x, y, 1);
                continue;
            }
            if (amax == 0)
            {
                new Span<byte>(y, BlockBytes).Clear();
                continue;
            }
            Vector256<float> am = Vector256.Create(amax);
            int first = 0;
            for (int j = 0; j < BlockSize; j += 8)
            {
                int hits = Avx.MoveMask(Avx.CompareEqual(Avx.And(Avx.LoadVector256(x + j), absMask), am));
                if (hits != 0) { first = j + System.Numerics.BitOperations.TrailingZeroCount(hits); break; }
            }
            float iscale = -127f / x[first];
            Vector256<float> vs = Vector256.Create(iscale), magic = Vector256.Create(12582912f);
            Vector256<int> low = Vector256.Create(0x007FFFFF), bias = Vector256.Create(0x00400000), cap = Vector256.Create(127);
            sbyte* q = (sbyte*)(y + 4);
            short* bsums = (short*)(y + 260);
            for (int j = 0; j < BlockSize; j += 32)
            {
                Vector256<int> i0 = Avx2.Min(Avx2.Subtract(Avx2.And(Avx.Add(Avx.Multiply(vs, Avx.LoadVector256(x + j)), magic).AsInt32(), low), bias), cap);
                Vector256<int> i1 = Avx2.Min(Avx2.Subtract(Avx2.And(Avx.Add(Avx.Multiply(vs, Avx.LoadVector256(x + j + 8)), magic).AsInt32(), low), bias), cap);
                Vector256<int> i2 = Avx2.Min(Avx2.Subtract(Avx2.And(Avx.Add(Avx.Multiply(vs, Avx.LoadVector256(x + j + 16)), magic).AsInt32(), low), bias), cap);
                Vector256<int> i3 = Avx2.Min(Avx2.Subtract(Avx2.And(Avx.Add(Avx.Multiply(vs, Avx.LoadVector256(x + j + 24)), magic).AsInt32(), low), bias), cap);
                Vector256<sbyte> packed = Avx2.PackSignedSaturate(Avx2.PackSignedSaturate(i0, i1), Avx2.PackSignedSaturate(i2, i3));
                Avx.Store((int*)(q + j), Avx2.PermuteVar8x32(packed.AsInt32(), order)); // the packs work per 128-bit half
                // Sums of sixteen: (i0 + i1) and (i2 + i3), each reduced to one int.
                Vector256<int> s01 = Avx2.Add(i0, i1), s23 = Avx2.Add(i2, i3);
                Vector256<int> h = Avx2.HorizontalAdd(s01, s23);           // [s01 pairs, s23 pairs] per half
                h = Avx2.HorizontalAdd(h, h);
                Vector128<int> t = Sse2.Add(h.GetLower(), h.GetUpper());   // element 0: Σ s01, element 1: Σ s23
                bsums[j / 16] = (short)t.GetElement(0);
                bsums[j / 16 + 1] = (short)t.GetElement(1);
            }
            *(float*)y = 1 / iscale;
        }
    }

    /// <summary>Scalar reference of <see cref="Quantize(float*, byte*, int)"/> (ggml's quantize_row_q8_K_ref).</summary>
    internal static void QuantizeScalar(float* src, byte* dst, int blocks)
    {
        for (int b = 0; b < blocks; b++)
        {
            float* x = src + b * BlockSize;
            byte* y = dst + b * BlockBytes;
            sbyte* q = (sbyte*)(y + 4);
            short* bsums = (short*)(y + 260);
            float amax = 0, max = 0;
            for (int j = 0; j < BlockSize; j++)
            {
                float a = MathF.Abs(x[j]);
                if (a > amax) { amax = a; max = x[j]; }
            }
            if (amax == 0)
            {
                new Span<byte>(y, BlockBytes).Clear();
                continue;
            }
            float iscale = -127f / max;
            for (int j = 0; j < BlockSize; j++) q[j] = (sbyte)Math.Min(127, NearestInt(iscale * x[j]));
            for (int k = 0; k < 16; k++)
            {
                int sum = 0;
                for (int j = 0; j < 16; j++) sum += q[16 * k + j];
                bsums[k] = (short)sum;
            }
            *(float*)y = 1 / iscale;
        }
    }

    /// <summary>Decodes <c>dst.Length</c> values (a multiple of 256) from Q8_K blocks.</summary>
    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int blocks = BlockArgs.ForDequantize(src.Length, dst.Length, BlockSize, BlockBytes);
        fixed (byte* s = src)
        fixed (float* d = dst)
        {
            for (int b = 0; b < blocks; b++)
            {
                byte* blk = s + b * BlockBytes;
                float scale = *(float*)blk;
                sbyte* q = (sbyte*)(blk + 4);
                for (int j = 0; j < BlockSize; j++) d[b * BlockSize + j] = q[j] * scale;
            }
        }
    }

    /// <summary>
    /// ggml's nearest_int: adds 1.5·2^23 so the float's own rounding (to nearest, ties to even)
    /// leaves the integer in the low mantissa bits. Valid for |v| ≤ 2^22 - 1.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int NearestInt(float v)
    {
        float t = v + 12582912f;
        return (BitConverter.SingleToInt32Bits(t) & 0x007FFFFF) - 0x00400000;
    }
}
