using System.Runtime.CompilerServices;
namespace Cria.Numerics.Formats;

/// <summary>
/// Q2_K: asymmetric 2-bit quantization in super-blocks of 256 values, 16 sub-blocks of 16 with
/// 4-bit scales and mins.
/// <para>Block layout (84 bytes): bytes 0-15 one byte per sub-block (low nibble scale, high nibble
/// min), bytes 16-79 the codes, bytes 80-81 d, bytes 82-83 dmin (IEEE halves). Element
/// 128h + 32t + l (h = 0, 1; t = 0..3; l &lt; 32) has code (qs[32h + l] &gt;&gt; 2t) &amp; 3. A code c of
/// sub-block j decodes to (d·scale_j)·c - dmin·min_j.</para>
/// </summary>
public static unsafe class Q2_KFormat
{
    /// <summary>Elements per block.</summary>
    public const int BlockSize = 256;

    /// <summary>Bytes per block.</summary>
    public const int BlockBytes = 84;

    /// <summary>Reference quantizer (quantize_row_q2_K_ref), byte-identical to ggml_quantize_chunk without an importance matrix.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loops: compile fully optimized at once (see KQuantMath)
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int blocks = KQuantMath.CheckQuantize(src, dst, BlockBytes);
        byte* codes = stackalloc byte[256];
        byte* aux = stackalloc byte[16];
        float* weights = stackalloc float[16];
        float* mins = stackalloc float[16];
        float* scales = stackalloc float[16];
        fixed (float* s = src)
        fixed (byte* d = dst)
        {
            for (int b = 0; b < blocks; b++)
            {
                float* x = s + b * BlockSize;
                byte* y = d + b * BlockBytes;
                float maxScale = 0, maxMin = 0;
                for (int j = 0; j < 16; j++)
                {
                    for (int l = 0; l < 16; l++) weights[l] = MathF.Abs(x[16 * j + l]);
                    scales[j] = KQuantMath.MakeQkx2Quants(16, 3, x + 16 * j, weights, codes + 16 * j, out mins[j], aux, -0.5f, 0.1f, 15, true);
                    if (scales[j] > maxScale) maxScale = scales[j];
                    if (mins[j] > maxMin) maxMin = mins[j];
                }
                if (maxScale > 0)
                {
                    float iscale = 15f / maxScale;
                    for (int j = 0; j < 16; j++) y[j] = (byte)KQuantMath.NearestInt(iscale * scales[j]);
                    *(ushort*)(y + 80) = Fp16Format.FromSingle(maxScale / 15f);
                }
                else
                {
                    for (int j = 0; j < 16; j++) y[j] = 0;
                    *(ushort*)(y + 80) = Fp16Format.FromSingle(0f);
                }
                if (maxMin > 0)
                {
                    float iscale = 15f / maxMin;
                    for (int j = 0; j < 16; j++) y[j] |= (byte)(KQuantMath.NearestInt(iscale * mins[j]) << 4);
                    *(ushort*)(y + 82) = Fp16Format.FromSingle(maxMin / 15f);
                }
                else
                {
                    *(ushort*)(y + 82) = Fp16Format.FromSingle(0f);
                }
                float dAll = Fp16Format.ToSingle(*(ushort*)(y + 80)), mAll = Fp16Format.ToSingle(*(ushort*)(y + 82));
                for (int j = 0; j < 16; j++)
                {
                    float dj = dAll * (y[j] & 0xF);
                    if (dj == 0) continue;
                    float dm = mAll * (y[j] >> 4);
                    for (int i = 0; i < 16; i++)
                        codes[16 * j + i] = (byte)Math.Clamp(KQuantMath.NearestInt((x[16 * j + i] + dm) / dj), 0, 3);
                }
                for (int h = 0; h < 2; h++)
                    for (int l = 0; l < 32; l++)
                    {
                        byte* c = codes + 128 * h + l;
                        y[16 + 32 * h + l] = (byte)(c[0] | (c[32] << 2) | (c[64] << 4) | (c[96] << 6));
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
            float d = Fp16Format.ToSingle(*(ushort*)(blk + 80));
            float min = Fp16Format.ToSingle(*(ushort*)(blk + 82));
            float* y = dst + b * BlockSize;
            for (int e = 0; e < 256; e++)
            {
                int sc = blk[e / 16];
                float dl = d * (sc & 0xF), ml = min * (sc >> 4);
                y[e] = dl * Code(blk, e) - ml;
            }
        }
    }

    /// <summary>The 2-bit code of element <paramref name="e"/>.</summary>
    internal static int Code(byte* blk, int e) => (blk[16 + 32 * (e / 128) + e % 32] >> (2 * ((e / 32) % 4))) & 3;
}
