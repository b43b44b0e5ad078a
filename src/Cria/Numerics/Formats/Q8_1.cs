using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Cria.Numerics.Formats;

/// <summary>
/// Q8_1: 8-bit activation format that also carries a block sum, used opposite Q4_1 and Q5_1 weights.
/// <para>Block layout (36 bytes): bytes 0-1 hold the scale d (IEEE half), bytes 2-3 hold s, a half
/// equal to d · Σq (the block's quantized sum, so the weight's offset term needs no per-element
/// work), bytes 4-35 hold 32 signed bytes q[0..31] in element order. Element j decodes to q[j]·d.</para>
/// <para><see cref="QuantizeActivations"/> is what ggml's CPU backend runs (the AVX2 quantize_row_q8_1):
/// d = amax/127 stored as half, multiplier 127/amax, round half to even, and s = half(d · Σq)
/// with the un-rounded float d.</para>
/// </summary>
public static unsafe class Q8_1Format
{
    /// <summary>Elements per block.</summary>
    public const int BlockSize = 32;

    /// <summary>Bytes per block.</summary>
    public const int BlockBytes = 36;

    /// <summary>Quantizes activations exactly like ggml's CPU backend before a Q4_1/Q5_1 product.</summary>
    public static void QuantizeActivations(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int blocks = CheckQuantizeArgs(src, dst);
        fixed (float* s = src)
        fixed (byte* d = dst)
            QuantizeActivations(s, d, blocks);
    }

    /// <summary>Decodes <c>dst.Length</c> values (a multiple of 32) from Q8_1 blocks (the sum field is not needed).</summary>
    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int blocks = BlockArgs.ForDequantize(src.Length, dst.Length, BlockSize, BlockBytes);
        fixed (byte* s = src)
        fixed (float* d = dst)
        {
            for (int b = 0; b < blocks; b++)
            {
                byte* blk = s + b * BlockBytes;
                float scale = Fp16Format.ToSingle(*(ushort*)blk);
                sbyte* q = (sbyte*)(blk + 4);
                for (int j = 0; j < BlockSize; j++) d[b * BlockSize + j] = q[j] * scale;
            }
        }
    }

    internal static void QuantizeActivations(float* src, byte* dst, int blocks)
    {
        if (Avx2.IsSupported) QuantizeActivationsAvx2(src, dst, blocks);
        else QuantizeActivationsScalar(src, dst, blocks);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void QuantizeActivationsAvx2(float* src, byte* dst, int blocks)
    {
        Vector256<float> absMask = Vector256.Create(0x7FFFFFFF).AsSingle();
        Vector256<int> order = Vector256.Create(0, 4, 1, 5, 2, 6, 3, 7);
        for (int b = 0; b < blocks; b++)
        {
            float* x = src + b * BlockSize;
            byte* y = dst + b * BlockBytes;
            Vector256<float> v0 = Avx.LoadVector256(x), v1 = Avx.LoadVector256(x + 8);
            Vector256<float> v2 = Avx.LoadVector256(x + 16), v3 = Avx.LoadVector256(x + 24);
            Vector256<float> m = Avx.Max(Avx.Max(Avx.And(v0, absMask), Avx.And(v1, absMask)), Avx.Max(Avx.And(v2, absMask), Avx.And(v3, absMask)));
            Vector128<float> m4 = Sse.Max(m.GetUpper(), m.GetLower());
            m4 = Sse.Max(m4, Sse.MoveHighToLow(m4, m4));
            m4 = Sse.MaxScalar(m4, Sse3.MoveHighAndDuplicate(m4));
            float amax = m4.ToScalar();

            float d = amax / 127f;
            *(ushort*)y = Fp16Format.FromSingle(d);
            Vector256<float> mul = Vector256.Create(amax != 0 ? 127f / amax : 0f);
            Vector256<int> i0 = Avx.ConvertToVector256Int32(Avx.Multiply(v0, mul));
            Vector256<int> i1 = Avx.ConvertToVector256Int32(Avx.Multiply(v1, mul));
            Vector256<int> i2 = Avx.ConvertToVector256Int32(Avx.Multiply(v2, mul));
            Vector256<int> i3 = Avx.ConvertToVector256Int32(Avx.Multiply(v3, mul));
            // The sum is taken from the 32-bit integers, before the saturating packs.
            Vector256<int> s = Avx2.Add(Avx2.Add(i0, i1), Avx2.Add(i2, i3));
            Vector128<int> s4 = Sse2.Add(s.GetLower(), s.GetUpper());
            int sum = s4.GetElement(0) + s4.GetElement(1) + s4.GetElement(2) + s4.GetElement(3);
            *(ushort*)(y + 2) = Fp16Format.FromSingle(d * sum);
            Vector256<sbyte> q = Avx2.PackSignedSaturate(Avx2.PackSignedSaturate(i0, i1), Avx2.PackSignedSaturate(i2, i3));
            Avx.Store((int*)(y + 4), Avx2.PermuteVar8x32(q.AsInt32(), order));
        }
    }

    /// <summary>Scalar twin of <see cref="QuantizeActivationsAvx2"/>; identical output.</summary>
    internal static void QuantizeActivationsScalar(float* src, byte* dst, int blocks)
    {
        for (int b = 0; b < blocks; b++)
        {
            float* x = src + b * BlockSize;
            byte* y = dst + b * BlockBytes;
            float amax = 0;
            for (int j = 0; j < BlockSize; j++)
            {
                float a = MathF.Abs(x[j]);
                if (a > amax) amax = a;
            }
            float d = amax / 127f;
            *(ushort*)y = Fp16Format.FromSingle(d);
            float mul = amax != 0 ? 127f / amax : 0f;
            sbyte* q = (sbyte*)(y + 4);
            int sum = 0;
            for (int j = 0; j < BlockSize; j++)
            {
                float v = x[j] * mul;
                float r = MathF.Round(v, MidpointRounding.ToEven);
                int i = r >= -2147483648f && r < 2147483648f ? (int)r : int.MinValue;
                sum += i;
                q[j] = (sbyte)Math.Clamp(i, -128, 127);
            }
            *(ushort*)(y + 2) = Fp16Format.FromSingle(d * sum);
        }
    }

    internal static int CheckQuantizeArgs(ReadOnlySpan<float> src, ReadOnlySpan<byte> dst) =>
        BlockArgs.ForQuantize(src.Length, dst.Length, BlockSize, BlockBytes);
}
