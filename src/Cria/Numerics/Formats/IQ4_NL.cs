using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
namespace Cria.Numerics.Formats;

/// <summary>
/// IQ4_NL: 4-bit non-linear quantization in blocks of 32 values. Each 4-bit code indexes a fixed
/// table of 16 signed levels (<see cref="Values"/>, ggml's kvalues_iq4nl), scaled by the block's d.
/// <para>Block layout (18 bytes, like Q4_0): bytes 0-1 the scale d (IEEE half); bytes 2-17 the
/// codes, byte 2+j holding element j in its low nibble and element j+16 in its high nibble.
/// Element decodes to d·Values[code].</para>
/// <para>The reference encoder (ggml's quantize_row_iq4_nl_impl with block = super-block = 32,
/// ntry 7, no importance matrix, so weights x²) starts from d = max/127, picks the nearest table
/// level for each value, then tries 15 candidate scales (itry - 127)/max and keeps the weighted
/// least-squares scale with the best fit; the codes are re-derived from the stored (unrounded)
/// scale.</para>
/// </summary>
public static unsafe class IQ4_NLFormat
{
    /// <summary>Elements per block.</summary>
    public const int BlockSize = 32;

    /// <summary>Bytes per block.</summary>
    public const int BlockBytes = 18;

    /// <summary>The 16 non-linear levels (ggml's kvalues_iq4nl).</summary>
    public static ReadOnlySpan<sbyte> Values => [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

    /// <summary>Reference quantizer, byte-identical to ggml_quantize_chunk without an importance matrix.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loops: compile fully optimized at once (see KQuantMath)
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int blocks = LegacyBlocks.CheckQuantize(src, dst, BlockBytes);
        float* scales = stackalloc float[1];
        float* weight = stackalloc float[32];
        byte* codes = stackalloc byte[32];
        fixed (float* s = src)
        fixed (byte* d = dst)
        {
            for (int b = 0; b < blocks; b++)
            {
                byte* y = d + b * BlockBytes;
                IQ4Encoder.Encode(32, s + b * BlockSize, (ushort*)y, y + 2, null, null, scales, weight, codes);
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
        ReadOnlySpan<sbyte> v = Values;
        for (int b = 0; b < blocks; b++)
        {
            byte* blk = src + b * BlockBytes;
            float d = Fp16Format.ToSingle(*(ushort*)blk);
            float* y = dst + b * BlockSize;
            for (int j = 0; j < 16; j++)
            {
                int q = blk[2 + j];
                y[j] = d * v[q & 0xF];
                y[j + 16] = d * v[q >> 4];
            }
        }
    }
}

/// <summary>
/// ggml's quantize_row_iq4_nl_impl (shared by IQ4_NL and IQ4_XS), without importance weights, with
/// the float operations in ggml's order (no fused multiply-adds: ggml-base is built without -march).
/// </summary>
internal static unsafe class IQ4Encoder
{
    private const int NTry = 7;

    private static ReadOnlySpan<float> Levels => [-127f, -104f, -83f, -65f, -49f, -35f, -22f, -10f, 1f, 13f, 25f, 38f, 53f, 69f, 89f, 113f];

    /// <summary>
    /// Index of the table level nearest to x (ggml's best_index_int8; a tie goes to the upper
    /// level). ggml's binary search ends with val[mu-1] ≤ x &lt; val[mu]; that mu is the number of
    /// levels ≤ x, counted here with two vector compares (NaN ends at the top, as in ggml).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int BestIndex(float x)
    {
        if (x <= -127f) return 0;
        if (x >= 113f || float.IsNaN(x)) return 15;
        var xv = Vector256.Create(x);
        uint lo = Vector256.LessThanOrEqual(Vector256.Create(-127f, -104f, -83f, -65f, -49f, -35f, -22f, -10f), xv).ExtractMostSignificantBits();
        uint hi = Vector256.LessThanOrEqual(Vector256.Create(1f, 13f, 25f, 38f, 53f, 69f, 89f, 113f), xv).ExtractMostSignificantBits();
        int mu = BitOperations.PopCount(lo | (hi << 8));
        ReadOnlySpan<float> val = Levels;
        return x - val[mu - 1] < val[mu] - x ? mu - 1 : mu;
    }

    /// <summary>ggml's best_index_int8 as written (binary search); the reference for <see cref="BestIndex"/>.</summary>
    internal static int BestIndexSearch(float x)
    {
        ReadOnlySpan<sbyte> val = IQ4_NLFormat.Values;
        if (x <= val[0]) return 0;
        if (x >= val[15]) return 15;
        int ml = 0, mu = 15;
        while (mu - ml > 1)
        {
            int mav = (ml + mu) / 2;
            if (x < val[mav]) mu = mav; else ml = mav;
        }
        return x - val[mu - 1] < val[mu] - x ? mu - 1 : mu;
    }

    /// <summary>
    /// Encodes one super-block of <paramref name="superBlock"/> values (32 for IQ4_NL, 256 for IQ4_XS)
    /// in sub-blocks of 32. Writes the half scale to <paramref name="dh"/>, the packed nibbles to
    /// <paramref name="q4"/> and, with several sub-blocks, the 6-bit sub-block scales to
    /// <paramref name="scalesH"/>/<paramref name="scalesL"/>. The remaining pointers are scratch
    /// (scales: superBlock/32 floats, weight: 32 floats, codes: superBlock bytes).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loops: compile fully optimized at once (see KQuantMath)
    public static void Encode(int superBlock, float* x, ushort* dh, byte* q4, ushort* scalesH, byte* scalesL,
        float* scales, float* weight, byte* codes)
    {
        ReadOnlySpan<sbyte> values = IQ4_NLFormat.Values;
        const int blockSize = 32;
        new Span<byte>(q4, superBlock / 2).Clear();
        *dh = Fp16Format.FromSingle(0f);
        float maxScale = 0, amaxScale = 0;
        int nb = superBlock / blockSize;
        for (int ib = 0; ib < nb; ib++)
        {
            float* xb = x + ib * blockSize;
            byte* lb = codes + ib * blockSize;
            for (int j = 0; j < blockSize; j++) weight[j] = xb[j] * xb[j];
            float amax = 0, max = 0;
            for (int j = 0; j < blockSize; j++)
            {
                float ax = MathF.Abs(xb[j]);
                if (ax > amax) { amax = ax; max = xb[j]; }
            }
            if (amax < KQuantMath.GroupMaxEps)
            {
                scales[ib] = 0;
                continue;
            }
            float d = -max / values[0];
            float id = 1 / d;
            float sumqx = 0, sumq2 = 0;
            for (int j = 0; j < blockSize; j++)
            {
                float al = id * xb[j];
                int l = BestIndex(al);
                lb[j] = (byte)l;
                float q = values[l];
                float w = weight[j];
                sumqx += w * q * xb[j];
                sumq2 += w * q * q;
            }
            d = sumqx / sumq2;
            float best = d * sumqx;
            for (int itry = -NTry; itry <= NTry; itry++)
            {
                id = (itry + values[0]) / max;
                sumqx = sumq2 = 0;
                for (int j = 0; j < blockSize; j++)
                {
                    float al = id * xb[j];
                    int l = BestIndex(al);
                    float q = values[l];
                    float w = weight[j];
                    sumqx += w * q * xb[j];
                    sumq2 += w * q * q;
                }
                if (sumq2 > 0 && sumqx * sumqx > best * sumq2)
                {
                    d = sumqx / sumq2;
                    best = d * sumqx;
                }
            }
            scales[ib] = d;
            float absD = MathF.Abs(d);
            if (absD > amaxScale) { amaxScale = absD; maxScale = d; }
        }

        if (nb > 1)
        {
            *scalesH = 0;
            float d = -maxScale / 32;
            *dh = Fp16Format.FromSingle(d);
            float id = d != 0 ? 1 / d : 0f;
            for (int ib = 0; ib < nb; ib++)
            {
                int l = Math.Clamp(KQuantMath.NearestInt(id * scales[ib]), -32, 31);
                float dl = d * l;
                float idl = dl != 0 ? 1 / dl : 0f;
                byte* lb = codes + ib * blockSize;
                float* xb = x + ib * blockSize;
                for (int j = 0; j < blockSize; j++) lb[j] = (byte)BestIndex(idl * xb[j]);
                l += 32;
                byte lLow = (byte)(l & 0xF);
                int lHigh = l >> 4;
                if (ib % 2 == 0) scalesL[ib / 2] = lLow;
                else scalesL[ib / 2] |= (byte)(lLow << 4);
                *scalesH |= (ushort)(lHigh << (2 * (ib % 8)));
            }
        }
        else
        {
            *dh = Fp16Format.FromSingle(scales[0]);
            float id = scales[0] != 0 ? 1 / scales[0] : 0f;
            for (int j = 0; j < superBlock; j++) codes[j] = (byte)BestIndex(id * x[j]);
        }

        for (int i = 0; i < superBlock / 32; i++)
            for (int j = 0; j < 16; j++)
                q4[16 * i + j] = (byte)(codes[32 * i + j] | (codes[32 * i + 16 + j] << 4));
    }
}
