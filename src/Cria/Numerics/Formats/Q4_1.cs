using System.Runtime.CompilerServices;
namespace Cria.Numerics.Formats;

/// <summary>
/// Q4_1: asymmetric 4-bit quantization in blocks of 32 values.
/// <para>Block layout (20 bytes): bytes 0-1 hold the step d (IEEE half), bytes 2-3 the offset m
/// (IEEE half, the block minimum), bytes 4-19 hold the packed 4-bit codes: byte 4+j carries element
/// j in its low nibble and element j+16 in its high nibble. A code c decodes to c·d + m.</para>
/// <para>The reference encoder (quantize_row_q4_1_ref) spans [min, max] with d = (max-min)/15 and
/// rounds (x-min)/d by adding 0.5 and truncating, capped at 15.</para>
/// </summary>
public static unsafe class Q4_1Format
{
    /// <summary>Elements per block.</summary>
    public const int BlockSize = 32;

    /// <summary>Bytes per block.</summary>
    public const int BlockBytes = 20;

    /// <summary>Reference quantizer, byte-identical to ggml_quantize_chunk (no importance matrix).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loops: compile fully optimized at once (see KQuantMath)
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int blocks = LegacyBlocks.CheckQuantize(src, dst, BlockBytes);
        fixed (float* s = src)
        fixed (byte* d = dst)
        {
            for (int b = 0; b < blocks; b++)
            {
                float* x = s + b * BlockSize;
                byte* y = d + b * BlockBytes;
                LegacyBlocks.MinMax(x, out float min, out float max);
                float scale = (max - min) / 15;
                float inv = scale != 0 ? 1.0f / scale : 0.0f;
                *(ushort*)y = Fp16Format.FromSingle(scale);
                *(ushort*)(y + 2) = Fp16Format.FromSingle(min);
                for (int j = 0; j < 16; j++)
                {
                    int lo = Math.Min(15, LegacyBlocks.TruncToSByte((x[j] - min) * inv + 0.5f));
                    int hi = Math.Min(15, LegacyBlocks.TruncToSByte((x[j + 16] - min) * inv + 0.5f));
                    y[4 + j] = (byte)(lo | (hi << 4));
                }
            }
        }
    }

    /// <summary>Decodes <c>dst.Length</c> values (a multiple of 32).</summary>
    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int blocks = LegacyBlocks.CheckDequantize(src, dst, BlockBytes);
        fixed (byte* s = src)
        fixed (float* d = dst)
            Dequantize(s, d, blocks);
    }

    internal static void Dequantize(byte* src, float* dst, int blocks)
    {
        for (int b = 0; b < blocks; b++)
        {
            byte* blk = src + b * BlockBytes;
            float d = Fp16Format.ToSingle(*(ushort*)blk);
            float m = Fp16Format.ToSingle(*(ushort*)(blk + 2));
            float* y = dst + b * BlockSize;
            for (int j = 0; j < 16; j++)
            {
                int q = blk[4 + j];
                y[j] = (q & 0x0F) * d + m;        // two roundings, as in ggml (no FMA in ggml-base)
                y[j + 16] = (q >> 4) * d + m;
            }
        }
    }
}

/// <summary>Shared helpers of the 32-element legacy formats.</summary>
internal static unsafe class LegacyBlocks
{
    public static int CheckQuantize(ReadOnlySpan<float> src, ReadOnlySpan<byte> dst, int blockBytes) =>
        BlockArgs.ForQuantize(src.Length, dst.Length, 32, blockBytes);

    public static int CheckDequantize(ReadOnlySpan<byte> src, ReadOnlySpan<float> dst, int blockBytes) =>
        BlockArgs.ForDequantize(src.Length, dst.Length, 32, blockBytes);

    /// <summary>Minimum and maximum of 32 values, starting from ±FLT_MAX like ggml.</summary>
    public static void MinMax(float* x, out float min, out float max)
    {
        min = float.MaxValue;
        max = -float.MaxValue;
        for (int j = 0; j < 32; j++)
        {
            float v = x[j];
            if (v < min) min = v;
            if (v > max) max = v;
        }
    }

    /// <summary>C's (int8_t) cast of a float as GCC compiles it: truncate toward zero to int32, keep the low byte (sign-extended).</summary>
    public static int TruncToSByte(float v) => (sbyte)(int)v;

    /// <summary>C's (uint8_t) cast of a float as GCC compiles it: truncate toward zero to int32, keep the low byte.</summary>
    public static int TruncToByte(float v) => (byte)(int)v;
}
