using System.Runtime.CompilerServices;
namespace Cria.Numerics.Formats;

/// <summary>
/// Q4_K: asymmetric 4-bit quantization in super-blocks of 256 values, 8 sub-blocks of 32 with 6-bit
/// scales and mins.
/// <para>Block layout (144 bytes): bytes 0-1 the super-block scale d, bytes 2-3 the super-block
/// min scale dmin (IEEE halves), bytes 4-15 the eight 6-bit scales and eight 6-bit mins packed as
/// described at <see cref="KQuantMath.ScaleMinK4"/>, bytes 16-143 the codes: each 64-element group
/// g uses bytes 16+32g .. 16+32g+31, low nibbles for elements 64g..64g+31, high nibbles for
/// 64g+32..64g+63. A code c of sub-block j decodes to (d·scale_j)·c - dmin·min_j.</para>
/// </summary>
public static unsafe class Q4_KFormat
{
    /// <summary>Elements per block.</summary>
    public const int BlockSize = 256;

    /// <summary>Bytes per block.</summary>
    public const int BlockBytes = 144;

    /// <summary>Reference quantizer (quantize_row_q4_K_ref), byte-identical to ggml_quantize_chunk without an importance matrix.</summary>
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
                KQuantEncoders.EncodeScaleMinBlock(s + b * BlockSize, y, codes, 15, -1f, 0.1f, 20);
                byte* q = y + 16;
                for (int g = 0; g < 4; g++)
                    for (int l = 0; l < 32; l++)
                        q[32 * g + l] = (byte)(codes[64 * g + l] | (codes[64 * g + l + 32] << 4));
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
            byte* q = blk + 16;
            float* y = dst + b * BlockSize;
            for (int g = 0; g < 4; g++)
            {
                KQuantMath.ScaleMinK4(2 * g, blk + 4, out int sc1, out int m1);
                KQuantMath.ScaleMinK4(2 * g + 1, blk + 4, out int sc2, out int m2);
                float d1 = d * sc1, mm1 = dmin * m1, d2 = d * sc2, mm2 = dmin * m2;
                for (int l = 0; l < 32; l++) y[64 * g + l] = d1 * (q[32 * g + l] & 0xF) - mm1;
                for (int l = 0; l < 32; l++) y[64 * g + 32 + l] = d2 * (q[32 * g + l] >> 4) - mm2;
            }
        }
    }
}

/// <summary>The scale/min part shared by the Q4_K and Q5_K reference encoders.</summary>
internal static unsafe class KQuantEncoders
{
    /// <summary>
    /// Chooses the eight sub-block scales and mins of one 256-value super-block (make_qkx2_quants
    /// with weights sqrt(mean x²) + |x|), quantizes them to 6 bits against the largest of each,
    /// writes d, dmin and the 12 packed scale bytes to <paramref name="y"/> (bytes 0-15), and
    /// leaves the final codes (re-derived from the stored scales) in <paramref name="codes"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loops: compile fully optimized at once (see KQuantMath)
    public static void EncodeScaleMinBlock(float* x, byte* y, byte* codes, int nmax, float rmin, float rdelta, int nstep)
    {
        float* weights = stackalloc float[32];
        byte* aux = stackalloc byte[32];
        float* mins = stackalloc float[8];
        float* scales = stackalloc float[8];
        byte* ls = stackalloc byte[8];
        byte* lm = stackalloc byte[8];
        float maxScale = 0, maxMin = 0;
        for (int j = 0; j < 8; j++)
        {
            float* xj = x + 32 * j;
            float sumX2 = 0;
            for (int l = 0; l < 32; l++) sumX2 += xj[l] * xj[l];
            float avX = MathF.Sqrt(sumX2 / 32);
            for (int l = 0; l < 32; l++) weights[l] = avX + MathF.Abs(xj[l]);
            scales[j] = KQuantMath.MakeQkx2Quants(32, nmax, xj, weights, codes + 32 * j, out mins[j], aux, rmin, rdelta, nstep, false);
            if (scales[j] > maxScale) maxScale = scales[j];
            if (mins[j] > maxMin) maxMin = mins[j];
        }
        float invScale = maxScale > 0 ? 63f / maxScale : 0f;
        float invMin = maxMin > 0 ? 63f / maxMin : 0f;
        for (int j = 0; j < 8; j++)
        {
            ls[j] = Math.Min((byte)63, (byte)KQuantMath.NearestInt(invScale * scales[j]));
            lm[j] = Math.Min((byte)63, (byte)KQuantMath.NearestInt(invMin * mins[j]));
        }
        new Span<byte>(y + 4, 12).Clear();
        KQuantMath.PackScaleMinK4(y + 4, ls, lm);
        *(ushort*)y = Fp16Format.FromSingle(maxScale / 63f);
        *(ushort*)(y + 2) = Fp16Format.FromSingle(maxMin / 63f);

        float dAll = Fp16Format.ToSingle(*(ushort*)y);
        float mAll = Fp16Format.ToSingle(*(ushort*)(y + 2));
        for (int j = 0; j < 8; j++)
        {
            KQuantMath.ScaleMinK4(j, y + 4, out int sc, out int m);
            float d = dAll * sc;
            if (d == 0) continue;
            float dm = mAll * m;
            for (int i = 0; i < 32; i++)
                codes[32 * j + i] = (byte)Math.Clamp(KQuantMath.NearestInt((x[32 * j + i] + dm) / d), 0, nmax);
        }
    }
}
