using System.Runtime.CompilerServices;
namespace Cria.Numerics.Formats;

/// <summary>
/// IQ4_XS: IQ4_NL's non-linear 4-bit levels in super-blocks of 256 values with a 6-bit scale per
/// 32-value sub-block.
/// <para>Block layout (136 bytes): bytes 0-1 the super-block scale d (IEEE half); bytes 2-3 a
/// little-endian 16-bit word scales_h holding the top two bits of sub-block j's scale at bits
/// 2j, 2j+1; bytes 4-7 scales_l, the low four bits of sub-block j's scale in the low (even j) or
/// high (odd j) nibble of byte 4 + j/2; bytes 8-135 the codes, sub-block j in bytes 8+16j ..
/// 8+16j+15 (low nibbles elements 0..15 of the sub-block, high nibbles 16..31). An element of
/// sub-block j decodes to (d·(ls_j - 32))·Values[code].</para>
/// </summary>
public static unsafe class IQ4_XSFormat
{
    /// <summary>Elements per block.</summary>
    public const int BlockSize = 256;

    /// <summary>Bytes per block.</summary>
    public const int BlockBytes = 136;

    /// <summary>Reference quantizer, byte-identical to ggml_quantize_chunk without an importance matrix.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loops: compile fully optimized at once (see KQuantMath)
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int blocks = KQuantMath.CheckQuantize(src, dst, BlockBytes);
        float* scales = stackalloc float[8];
        float* weight = stackalloc float[32];
        byte* codes = stackalloc byte[256];
        fixed (float* s = src)
        fixed (byte* d = dst)
        {
            for (int b = 0; b < blocks; b++)
            {
                byte* y = d + b * BlockBytes;
                IQ4Encoder.Encode(256, s + b * BlockSize, (ushort*)y, y + 8, (ushort*)(y + 2), y + 4, scales, weight, codes);
            }
        }
    }

    /// <summary>The 6-bit scale (0..63, stored with a bias of 32) of sub-block <paramref name="j"/>.</summary>
    internal static int SubScale(byte* block, int j) =>
        ((block[4 + j / 2] >> (4 * (j % 2))) & 0xF) | (((*(ushort*)(block + 2) >> (2 * j)) & 3) << 4);

    /// <summary>Decodes <c>dst.Length</c> values (a multiple of 256).</summary>
    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int blocks = KQuantMath.CheckDequantize(src, dst, BlockBytes);
        fixed (byte* s = src)
        fixed (float* d = dst)
            Dequantize(s, d, blocks);
    }

    internal static void Dequantize(byte* src, float* dst, int blocks)
    {
        ReadOnlySpan<sbyte> v = IQ4_NLFormat.Values;
        for (int b = 0; b < blocks; b++)
        {
            byte* blk = src + b * BlockBytes;
            float d = Fp16Format.ToSingle(*(ushort*)blk);
            byte* qs = blk + 8;
            float* y = dst + b * BlockSize;
            for (int ib = 0; ib < 8; ib++)
            {
                float dl = d * (SubScale(blk, ib) - 32);
                for (int j = 0; j < 16; j++)
                {
                    y[j] = dl * v[qs[j] & 0xF];
                    y[j + 16] = dl * v[qs[j] >> 4];
                }
                y += 32;
                qs += 16;
            }
        }
    }
}
