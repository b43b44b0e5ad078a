using System.Runtime.CompilerServices;

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
