using System.Runtime.CompilerServices;
namespace Cria.Numerics.Formats;

/// <summary>
/// Q5_K: asymmetric 5-bit quantization in super-blocks of 256 values, 8 sub-blocks of 32 with 6-bit
/// scales and mins (Q4_K plus one high bit per element).
/// <para>Block layout (176 bytes): bytes 0-1 d, bytes 2-3 dmin (IEEE halves), bytes 4-15 the
/// packed scales and mins (as Q4_K), bytes 16-47 qh, bytes 48-175 the low four bits laid out as
/// Q4_K's codes. Element 64g + l (l &lt; 32) takes its high bit from bit 2g of qh[l], element
/// 64g + 32 + l from bit 2g+1. A code c of sub-block j decodes to (d·scale_j)·c - dmin·min_j.</para>
/// </summary>
public static unsafe class Q5_KFormat
{
    /// <summary>Elements per block.</summary>
    public const int BlockSize = 256;

    /// <summary>Bytes per block.</summary>
    public const int BlockBytes = 176;

    /// <summary>Reference quantizer (quantize_row_q5_K_ref), byte-identical to ggml_quantize_chunk without an importance matrix.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loops: compile fully optimized at once (see KQuantMath)
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int blocks = KQuantMath.CheckQuantize(src, dst, BlockBytes);
        byte* codes = stackalloc byte[256];
        fixed (float* s = src)
        fixed (byte* d = dst)
        {
            for (int b = 0; b < blocks; b++)
            {
                byte* y = d + b * BlockBytes;
                KQuantEncoders.EncodeScaleMinBlock(s + b * BlockSize, y, codes, 31, -0.5f, 0.1f, 15);
                byte* qh = y + 16;
                byte* ql = y + 48;
                new Span<byte>(qh, 32).Clear();
                for (int g = 0; g < 4; g++)
                {
                    for (int l = 0; l < 32; l++)
                    {
                        int l1 = codes[64 * g + l], l2 = codes[64 * g + l + 32];
                        if (l1 > 15) { l1 -= 16; qh[l] |= (byte)(1 << (2 * g)); }
                        if (l2 > 15) { l2 -= 16; qh[l] |= (byte)(2 << (2 * g)); }
                        ql[32 * g + l] = (byte)(l1 | (l2 << 4));
                    }
                }
            }
        }
    }

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
        for (int b = 0; b < blocks; b++)
        {
            byte* blk = src + b * BlockBytes;
            float d = Fp16Format.ToSingle(*(ushort*)blk);
            float dmin = Fp16Format.ToSingle(*(ushort*)(blk + 2));
            byte* qh = blk + 16;
            byte* ql = blk + 48;
            float* y = dst + b * BlockSize;
            for (int g = 0; g < 4; g++)
            {
                KQuantMath.ScaleMinK4(2 * g, blk + 4, out int sc1, out int m1);
                KQuantMath.ScaleMinK4(2 * g + 1, blk + 4, out int sc2, out int m2);
                float d1 = d * sc1, mm1 = dmin * m1, d2 = d * sc2, mm2 = dmin * m2;
                for (int l = 0; l < 32; l++)
                    y[64 * g + l] = d1 * ((ql[32 * g + l] & 0xF) + (((qh[l] >> (2 * g)) & 1) << 4)) - mm1;
                for (int l = 0; l < 32; l++)
                    y[64 * g + 32 + l] = d2 * ((ql[32 * g + l] >> 4) + (((qh[l] >> (2 * g + 1)) & 1) << 4)) - mm2;
            }
        }
    }

    /// <summary>The 256 codes (0..31) of a block in element order.</summary>
    internal static void Codes(byte* blk, byte* q)
    {
        byte* qh = blk + 16;
        byte* ql = blk + 48;
        for (int g = 0; g < 4; g++)
            for (int l = 0; l < 32; l++)
            {
                q[64 * g + l] = (byte)((ql[32 * g + l] & 0xF) | (((qh[l] >> (2 * g)) & 1) << 4));
                q[64 * g + 32 + l] = (byte)((ql[32 * g + l] >> 4) | (((qh[l] >> (2 * g + 1)) & 1) << 4));
            }
    }
}
