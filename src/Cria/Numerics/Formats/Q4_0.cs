using System.Runtime.CompilerServices;

namespace Cria.Numerics.Formats;

/// <summary>
/// Q4_0: symmetric 4-bit quantization in blocks of 32 values.
/// <para>Block layout (18 bytes): bytes 0-1 hold the scale d as an IEEE half (little-endian);
/// bytes 2-17 hold 16 bytes of packed 4-bit codes. Byte 2+j carries element j in its low nibble
/// and element j+16 in its high nibble (so the first half of the block sits in the low nibbles,
/// the second half in the high ones). A code c in 0..15 decodes to (c - 8) * d.</para>
/// <para>The reference encoder picks the element of largest magnitude, keeps its sign, and sets
/// d = max / -8, so that element maps to code 0 (value -8·d = max) and the opposite extreme is
/// clamped to code 15.</para>
/// </summary>
public static unsafe class Q4_0Format
{
    /// <summary>Elements per block.</summary>
    public const int BlockSize = 32;

    /// <summary>Bytes per block.</summary>
    public const int BlockBytes = 18;

    /// <summary>Reference quantizer (ggml's quantize_row_q4_0_ref), byte-identical to ggml_quantize_chunk.</summary>
    /// <param name="src">values; the length must be a multiple of 32.</param>
    /// <param name="dst">at least src.Length / 32 * 18 bytes.</param>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loops: compile fully optimized at once (see KQuantMath)
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int blocks = BlockArgs.ForQuantize(src.Length, dst.Length, BlockSize, BlockBytes);
        fixed (float* s = src)
        fixed (byte* d = dst)
        {
            for (int b = 0; b < blocks; b++)
            {
                float* x = s + b * BlockSize;
                byte* y = d + b * BlockBytes;
                float amax = 0, max = 0;
                for (int j = 0; j < BlockSize; j++)
                {
                    float a = MathF.Abs(x[j]);
                    if (amax < a) { amax = a; max = x[j]; }
                }
                float scale = max / -8;
                float inv = scale != 0 ? 1.0f / scale : 0.0f;
                *(ushort*)y = Fp16Format.FromSingle(scale);
                for (int j = 0; j < BlockSize / 2; j++)
                    y[2 + j] = (byte)(Code(x[j], inv) | (Code(x[j + BlockSize / 2], inv) << 4));
            }
        }
    }

    /// <summary>
    /// One 4-bit code: x·inv + 8.5 (two roundings: ggml-quants.c is part of ggml-base, which is
    /// built without -march flags, so the compiler has no FMA to contract into), truncated toward
    /// zero (ggml's int8 cast) and clamped to 15.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Code(float x, float inv)
    {
        float v = x * inv + 8.5f;
        return Math.Min(15, (int)(sbyte)(int)v);
    }

    /// <summary>Decodes <c>dst.Length</c> values (a multiple of 32) from Q4_0 blocks.</summary>
    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int blocks = BlockArgs.ForDequantize(src.Length, dst.Length, BlockSize, BlockBytes);
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
            float* y = dst + b * BlockSize;
            for (int j = 0; j < BlockSize / 2; j++)
            {
                int q = blk[2 + j];
                y[j] = ((q & 0x0F) - 8) * scale;
                y[j + BlockSize / 2] = ((q >> 4) - 8) * scale;
            }
        }
    }
}
