using System.Runtime.CompilerServices;
namespace Cria.Numerics.Formats;

/// <summary>
/// Q5_1: asymmetric 5-bit quantization in blocks of 32 values.
/// <para>Block layout (24 bytes): bytes 0-1 hold the step d (IEEE half), bytes 2-3 the offset m
/// (IEEE half, the block minimum), bytes 4-7 a little-endian 32-bit word qh whose bit j is the high
/// bit of element j's code, bytes 8-23 the low four bits (byte 8+j: element j low nibble, element
/// j+16 high nibble). A code c in 0..31 decodes to c·d + m.</para>
/// <para>The reference encoder spans [min, max] with d = (max-min)/31 and maps x to
/// trunc((x-min)/d + 0.5), kept to its low byte as GCC's (uint8_t) cast does.</para>
/// </summary>
public static unsafe class Q5_1Format
{
    /// <summary>Elements per block.</summary>
    public const int BlockSize = 32;

    /// <summary>Bytes per block.</summary>
    public const int BlockBytes = 24;

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
                float scale = (max - min) / 31;
                float inv = scale != 0 ? 1.0f / scale : 0.0f;
                *(ushort*)y = Fp16Format.FromSingle(scale);
                *(ushort*)(y + 2) = Fp16Format.FromSingle(min);
                uint qh = 0;
                for (int j = 0; j < 16; j++)
                {
                    int lo = LegacyBlocks.TruncToByte((x[j] - min) * inv + 0.5f);
                    int hi = LegacyBlocks.TruncToByte((x[j + 16] - min) * inv + 0.5f);
                    y[8 + j] = (byte)((lo & 0x0F) | ((hi & 0x0F) << 4));
                    qh |= (uint)((lo & 0x10) >> 4) << j;
                    qh |= (uint)((hi & 0x10) >> 4) << (j + 16);
                }
                *(uint*)(y + 4) = qh;
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
            uint qh = *(uint*)(blk + 4);
            float* y = dst + b * BlockSize;
            for (int j = 0; j < 16; j++)
            {
                int q = blk[8 + j];
                y[j] = ((q & 0x0F) | (int)(((qh >> j) & 1) << 4)) * d + m;
                y[j + 16] = ((q >> 4) | (int)(((qh >> (j + 16)) & 1) << 4)) * d + m;
            }
        }
    }
}
