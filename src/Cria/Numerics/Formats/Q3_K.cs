using System.Runtime.CompilerServices;
namespace Cria.Numerics.Formats;

/// <summary>
/// Q3_K: symmetric 3-bit quantization in super-blocks of 256 values, 16 sub-blocks of 16 with
/// signed 6-bit scales.
/// <para>Block layout (110 bytes): bytes 0-31 hmask, bytes 32-95 the low two bits of the codes
/// (laid out as Q2_K's), bytes 96-107 the sixteen 6-bit scales (scale j: low four bits in the
/// low nibble of byte j for j &lt; 8, else the high nibble of byte j-8; top two bits at
/// (byte[8 + j%4] &gt;&gt; 2·(j/4)) &amp; 3; stored with +32 bias), bytes 108-109 d (IEEE half). Element
/// e has high bit (hmask[e%32] &gt;&gt; e/32) &amp; 1; its value is low - (high ? 0 : 4), in -4..3, and
/// decodes to (d·(scale_j - 32))·value.</para>
/// </summary>
public static unsafe class Q3_KFormat
{
    /// <summary>Elements per block.</summary>
    public const int BlockSize = 256;

    /// <summary>Bytes per block.</summary>
    public const int BlockBytes = 110;

    /// <summary>Reference quantizer (quantize_row_q3_K_ref), byte-identical to ggml_quantize_chunk without an importance matrix.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loops: compile fully optimized at once (see KQuantMath)
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int blocks = KQuantMath.CheckQuantize(src, dst, BlockBytes);
        sbyte* codes = stackalloc sbyte[256];
        float* scales = stackalloc float[16];
        fixed (float* s = src)
        fixed (byte* d = dst)
        {
            for (int b = 0; b < blocks; b++)
            {
                float* x = s + b * BlockSize;
                byte* y = d + b * BlockBytes;
                byte* sc = y + 96;
                float maxScale = 0, amax = 0;
                for (int j = 0; j < 16; j++)
                {
                    scales[j] = KQuantMath.MakeQ3Quants(16, 4, x + 16 * j, codes + 16 * j);
                    float a = MathF.Abs(scales[j]);
                    if (a > amax) { amax = a; maxScale = scales[j]; }
                }
                for (int j = 0; j < 12; j++) sc[j] = 0;
                if (maxScale != 0)
                {
                    float iscale = -32f / maxScale;
                    for (int j = 0; j < 16; j++)
                    {
                        int l = (sbyte)KQuantMath.NearestInt(iscale * scales[j]);
                        l = Math.Clamp(l, -32, 31) + 32;
                        if (j < 8) sc[j] = (byte)(l & 0xF);
                        else sc[j - 8] |= (byte)((l & 0xF) << 4);
                        sc[j % 4 + 8] |= (byte)((l >> 4) << (2 * (j / 4)));
                    }
                    *(ushort*)(y + 108) = Fp16Format.FromSingle(1 / iscale);
                }
                else
                {
                    *(ushort*)(y + 108) = Fp16Format.FromSingle(0f);
                }
                float dAll = Fp16Format.ToSingle(*(ushort*)(y + 108));
                for (int j = 0; j < 16; j++)
                {
                    float dj = dAll * Scale(sc, j);
                    if (dj == 0) continue;
                    for (int i = 0; i < 16; i++)
                        codes[16 * j + i] = (sbyte)(Math.Clamp(KQuantMath.NearestInt(x[16 * j + i] / dj), -4, 3) + 4);
                }
                byte* hmask = y;
                for (int j = 0; j < 32; j++) hmask[j] = 0;
                for (int e = 0; e < 256; e++)
                {
                    if (codes[e] > 3)
                    {
                        hmask[e % 32] |= (byte)(1 << (e / 32));
                        codes[e] -= 4;
                    }
                }
                for (int h = 0; h < 2; h++)
                    for (int l = 0; l < 32; l++)
                    {
                        sbyte* c = codes + 128 * h + l;
                        y[32 + 32 * h + l] = (byte)((byte)c[0] | ((byte)c[32] << 2) | ((byte)c[64] << 4) | ((byte)c[96] << 6));
                    }
            }
        }
    }

    /// <summary>The signed scale (stored value - 32) of sub-block <paramref name="j"/> from the 12 packed bytes.</summary>
    internal static int Scale(byte* sc, int j)
    {
        int low = j < 8 ? sc[j] & 0xF : sc[j - 8] >> 4;
        return (low | (((sc[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
    }

    /// <summary>The value (-4..3) of element <paramref name="e"/>.</summary>
    internal static int Value(byte* blk, int e)
    {
        int low = (blk[32 + 32 * (e / 128) + e % 32] >> (2 * ((e / 32) % 4))) & 3;
        int high = (blk[e % 32] >> (e / 32)) & 1;
        return low - (high != 0 ? 0 : 4);
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
            float d = Fp16Format.ToSingle(*(ushort*)(blk + 108));
            float* y = dst + b * BlockSize;
            for (int e = 0; e < 256; e++)
            {
                float dl = d * Scale(blk + 96, e / 16);
                y[e] = dl * Value(blk, e);
            }
        }
    }
}
