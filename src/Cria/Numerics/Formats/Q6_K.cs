using System.Runtime.CompilerServices;
namespace Cria.Numerics.Formats;

/// <summary>
/// Q6_K: 6-bit quantization in super-blocks of 256 values, 16 sub-blocks of 16 with signed 8-bit scales.
/// <para>Block layout (210 bytes): bytes 0-127 (ql) hold the low four bits of the codes, bytes
/// 128-191 (qh) the high two bits, bytes 192-207 the 16 signed sub-block scales, bytes 208-209 the
/// super-block scale d (IEEE half). Each half of 128 elements (h = 0, 1) uses ql[64h .. 64h+63]
/// and qh[32h .. 32h+31]; for l in 0..31, element 128h + l + 32t (t = 0..3) has low bits
/// ql[64h + l + 32·(t&amp;1)] (low nibble for t &lt; 2, high nibble otherwise) and high bits
/// (qh[32h + l] &gt;&gt; 2t) &amp; 3. A code c in 0..63 decodes to d · scale[element/16] · (c - 32).</para>
/// </summary>
public static unsafe class Q6_KFormat
{
    /// <summary>Elements per block.</summary>
    public const int BlockSize = 256;

    /// <summary>Bytes per block.</summary>
    public const int BlockBytes = 210;

    /// <summary>Reference quantizer (quantize_row_q6_K_ref), byte-identical to ggml_quantize_chunk without an importance matrix.</summary>
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
                float maxScale = 0, maxAbsScale = 0;
                for (int ib = 0; ib < 16; ib++)
                {
                    float scale = KQuantMath.MakeQxQuants(16, 32, x + 16 * ib, codes + 16 * ib);
                    scales[ib] = scale;
                    float abs = MathF.Abs(scale);
                    if (abs > maxAbsScale) { maxAbsScale = abs; maxScale = scale; }
                }
                new Span<byte>(y, BlockBytes).Clear();
                if (maxAbsScale < KQuantMath.GroupMaxEps) continue; // all-zero block (d = +0)

                float iscale = -128f / maxScale;
                *(ushort*)(y + 208) = Fp16Format.FromSingle(1 / iscale);
                sbyte* sc = (sbyte*)(y + 192);
                for (int ib = 0; ib < 16; ib++) sc[ib] = (sbyte)Math.Min(127, KQuantMath.NearestInt(iscale * scales[ib]));

                float dAll = Fp16Format.ToSingle(*(ushort*)(y + 208));
                for (int j = 0; j < 16; j++)
                {
                    float dj = dAll * sc[j];
                    if (dj == 0) continue;
                    for (int i = 0; i < 16; i++)
                        codes[16 * j + i] = (sbyte)(Math.Clamp(KQuantMath.NearestInt(x[16 * j + i] / dj), -32, 31) + 32);
                }

                byte* ql = y;
                byte* qh = y + 128;
                for (int h = 0; h < 2; h++)
                {
                    sbyte* c = codes + 128 * h;
                    for (int l = 0; l < 32; l++)
                    {
                        int q1 = c[l], q2 = c[l + 32], q3 = c[l + 64], q4 = c[l + 96];
                        ql[64 * h + l] = (byte)((q1 & 0xF) | ((q3 & 0xF) << 4));
                        ql[64 * h + l + 32] = (byte)((q2 & 0xF) | ((q4 & 0xF) << 4));
                        qh[32 * h + l] = (byte)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
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
        sbyte* q = stackalloc sbyte[256];
        for (int b = 0; b < blocks; b++)
        {
            byte* blk = src + b * BlockBytes;
            float d = Fp16Format.ToSingle(*(ushort*)(blk + 208));
            sbyte* sc = (sbyte*)(blk + 192);
            Codes(blk, q);
            float* y = dst + b * BlockSize;
            for (int i = 0; i < 256; i++) y[i] = d * sc[i / 16] * q[i]; // (d·scale)·q, as ggml rounds it
        }
    }

    /// <summary>The 256 signed values c - 32 of a block, in element order.</summary>
    internal static void Codes(byte* blk, sbyte* q)
    {
        byte* ql = blk;
        byte* qh = blk + 128;
        for (int h = 0; h < 2; h++)
        {
            for (int l = 0; l < 32; l++)
            {
                int hb = qh[32 * h + l];
                int lo = ql[64 * h + l], hi = ql[64 * h + l + 32];
                q[128 * h + l] = (sbyte)(((lo & 0xF) | ((hb & 3) << 4)) - 32);
                q[128 * h + l + 32] = (sbyte)(((hi & 0xF) | (((hb >> 2) & 3) << 4)) - 32);
                q[128 * h + l + 64] = (sbyte)(((lo >> 4) | (((hb >> 4) & 3) << 4)) - 32);
                q[128 * h + l + 96] = (sbyte)(((hi >> 4) | (((hb >> 6) & 3) << 4)) - 32);
            }
        }
    }
}
