using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Cria.Numerics.Formats;

/// <summary>
/// Q8_0: symmetric 8-bit quantization in blocks of 32 values.
/// <para>Block layout (34 bytes): bytes 0-1 hold the scale d as an IEEE half (little-endian); bytes
/// 2-33 hold 32 signed bytes q[0..31], in element order. Element j of the block decodes to
/// q[j] * d.</para>
/// <para>Two encoders exist, and they differ in the last bit now and then:
/// <see cref="Quantize"/> is ggml's reference (used when a model file is written): d = amax/127,
/// inverse 1/d, and q = round-half-away-from-zero(x/d). <see cref="QuantizeActivations"/> is what
/// ggml's CPU backend runs on activations before a matrix product (the AVX2 quantize_row_q8_0):
/// inverse 127/amax and round-half-to-even.</para>
/// </summary>
public static unsafe class Q8_0Format
{
    /// <summary>Elements per block.</summary>
    public const int BlockSize = 32;

    /// <summary>Bytes per block.</summary>
    public const int BlockBytes = 34;

    /// <summary>Reference quantizer (ggml's quantize_row_q8_0_ref), byte-identical to ggml_quantize_chunk.</summary>
    /// <param name="src">values; the length must be a multiple of 32.</param>
    /// <param name="dst">at least src.Length / 32 * 34 bytes.</param>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loops: compile fully optimized at once (see KQuantMath)
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int blocks = CheckQuantizeArgs(src, dst);
        fixed (float* s = src)
        fixed (byte* d = dst)
        {
            for (int b = 0; b < blocks; b++)
            {
                float* x = s + b * BlockSize;
                byte* y = d + b * BlockBytes;
                float amax = 0;
                for (int j = 0; j < BlockSize; j++)
                {
                    float a = MathF.Abs(x[j]);
                    if (a > amax) amax = a;
                }
                float scale = amax / 127;
                float inv = scale != 0 ? 1.0f / scale : 0.0f;
                *(ushort*)y = Fp16Format.FromSingle(scale);
                sbyte* q = (sbyte*)(y + 2);
                for (int j = 0; j < BlockSize; j++) q[j] = (sbyte)MathF.Round(x[j] * inv, MidpointRounding.AwayFromZero);
            }
        }
    }

    /// <summary>Decodes <c>dst.Length</c> values (a multiple of 32) from Q8_0 blocks.</summary>
    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int blocks = CheckDequantizeArgs(src, dst);
        fixed (byte* s = src)
        fixed (float* d = dst)
            Dequantize(s, d, blocks);
    }

    internal static void Dequantize(byte* src, float* dst, int blocks)
    {
        for (int b = 0; b < blocks; b++)
        {
            byte* blk = src + b * BlockBytes;
            float scale = Fp16Format.ToSingle(*(ushort*)blk);
            sbyte* q = (sbyte*)(blk + 2);
            float* y = dst + b * BlockSize;
            for (int j = 0; j < BlockSize; j++) y[j] = q[j] * scale;
        }
    }

    /// <summary>
    /// Quantizes activations the way ggml's CPU backend does before a Q8_0/Q4_0 matrix product
    /// (the AVX2 quantize_row_q8_0), byte for byte: d = amax/127 stored as half, multiplier
    /// 127/amax (0 when amax is 0), products rounded half-to-even and saturated to [-128, 127].
    /// </summary>
    public static void QuantizeActivations(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int blocks = CheckQuantizeArgs(src, dst);
        fixed (float* s = src)
        fixed (byte* d = dst)
            QuantizeActivations(s, d, blocks);
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

            *(ushort*)y = Fp16Format.FromSingle(amax / 127f);
            Vector256<float> mul = Vector256.Create(amax != 0 ? 127f / amax : 0f);
            // cvtps2dq rounds with the current mode (nearest-even); the saturating packs clamp.
            Vector256<int> i0 = Avx.ConvertToVector256Int32(Avx.Multiply(v0, mul));
            Vector256<int> i1 = Avx.ConvertToVector256Int32(Avx.Multiply(v1, mul));
            Vector256<int> i2 = Avx.ConvertToVector256Int32(Avx.Multiply(v2, mul));
            Vector256<int> i3 = Avx.ConvertToVector256Int32(Avx.Multiply(v3, mul));
            Vector256<short> s01 = Avx2.PackSignedSaturate(i0, i1);
            Vector256<short> s23 = Avx2.PackSignedSaturate(i2, i3);
            Vector256<sbyte> q = Avx2.PackSignedSaturate(s01, s23);
            // The packs work per 128-bit half; this permutation restores element order.
            Avx.Store((int*)(y + 2), Avx2.PermuteVar8x32(q.AsInt32(), order));
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
            *(ushort*)y = Fp16Format.FromSingle(amax / 127f);
            float mul = amax != 0 ? 127f / amax : 0f;
            sbyte* q = (sbyte*)(y + 2);
            for (int j = 0; j < BlockSize; j++) q[j] = SaturateToSByte(x[j] * mul);
        }
    }

    /// <summary>cvtps2dq (nearest-even, out of range or NaN → int.MinValue) followed by signed saturation to a byte.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static sbyte SaturateToSByte(float v)
    {
        float r = MathF.Round(v, MidpointRounding.ToEven);
        int i = r >= -2147483648f && r < 2147483648f ? (int)r : int.MinValue;
        return (sbyte)Math.Clamp(i, -128, 127);
    }

    internal static int CheckQuantizeArgs(ReadOnlySpan<float> src, ReadOnlySpan<byte> dst) =>
        BlockArgs.ForQuantize(src.Length, dst.Length, BlockSize, BlockBytes);

    internal static int CheckDequantizeArgs(ReadOnlySpan<byte> src, ReadOnlySpan<float> dst) =>
        BlockArgs.ForDequantize(src.Length, dst.Length, BlockSize, BlockBytes);
}
