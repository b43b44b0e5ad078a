using System.Runtime.CompilerServices;
namespace Cria.Numerics.Formats;

/// <summary>
/// Q5_0: symmetric 5-bit quantization in blocks of 32 values.
/// <para>Block layout (22 bytes): bytes 0-1 hold the scale d (IEEE half); bytes 2-5 hold a
/// little-endian 32-bit word qh whose bit j is the fifth (high) bit of element j's code; bytes
/// 6-21 hold the low four bits, byte 6+j carrying element j (low nibble) and element j+16 (high
/// nibble). A code c in 0..31 decodes to (c - 16)·d.</para>
/// <para>The reference encoder takes the element of largest magnitude with its sign, sets
/// d = max / -16 and maps x to trunc(x/d + 16.5) capped at 31 (like Q4_0 with 5 bits).</para>
/// </summary>
public static unsafe class Q5_0Format
{
    /// <summary>Elements per block.</summary>
    public const int BlockSize = 32;

    /// <summary>Bytes per block.</summary>
    public const int BlockBytes = 22;

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
                float amax = 0, max = 0;
                for (int j = 0; j < BlockSize; j++)
                {
                    float a = MathF.Abs(x[j]);
                    if (amax < a) { amax = a; max = x[j]; }
                }
                float scale = max / -16;
                float inv = scale != 0 ? 1.0f / scale : 0.0f;
                *(ushort*)y = Fp16Format.FromSingle(scale);
                uint qh = 0;
                for (int j = 0; j < 16; j++)
                {
                    int lo = Math.Min(31, LegacyBlocks.TruncToSByte(x[j] * inv + 16.5f)) & 0xFF;
                    int hi = Math.Min(31, LegacyBlocks.TruncToSByte(x[j + 16] * inv + 16.5f)) & 0xFF;
                    y[6 + j] = (byte)((lo & 0x0F) | ((hi & 0x0F) << 4));
                    qh |= (uint)((lo & 0x10) >> 4) << j;
                    qh |= (uint)((hi & 0x10) >> 4) << (j + 16);
                }
                *(uint*)(y + 2) = qh;
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
            uint qh = *(uint*)(blk + 2);
            float* y = dst + b * BlockSize;
            for (int j = 0; j < 16; j++)
            {
                int q = blk[6 + j];
                y[j] = (((q & 0x0F) | (int)(((qh >> j) & 1) << 4)) - 16) * d;
                y[j + 16] = (((q >> 4) | (int)(((qh >> (j + 16)) & 1) << 4)) - 16) * d;
            }
        }
    }
}
