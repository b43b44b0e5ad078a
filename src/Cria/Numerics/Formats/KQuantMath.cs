using System.Runtime.CompilerServices;

namespace Cria.Numerics.Formats;

/// <summary>
/// The scale searches behind ggml's reference K-quant encoders (ggml-quants.c), re-expressed in C#.
/// Every float operation is done in the same order and precision as ggml's build of that file
/// (plain SSE2 single precision, no fused multiply-adds: ggml-base is compiled without -march),
/// since the encoders' choices depend on the last bit of these sums.
/// <para>The encoders are marked AggressiveOptimization: under tiered compilation these long
/// loops were observed to keep running unoptimized code for seconds (10x slower) when a model is
/// quantized; the JIT never contracts to fused multiply-adds at any tier, so the bits are the
/// same either way.</para>
/// </summary>
internal static unsafe class KQuantMath
{
    /// <summary>ggml's GROUP_MAX_EPS: below this a group counts as all zero.</summary>
    public const float GroupMaxEps = 1e-15f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int NearestInt(float v) => Q8_KFormat.NearestInt(v);

    /// <summary>
    /// Symmetric codes in [0, 2·nmax) for n values (make_qx_quants with rmse_type 1 and no
    /// importance weights, i.e. weights x²). Starts from the scale that maps the largest-magnitude
    /// value to -nmax, tries 18 nearby scales and keeps the one with the best weighted fit; returns
    /// the least-squares scale of the kept codes.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loops: compile fully optimized at once (see KQuantMath)
    public static float MakeQxQuants(int n, int nmax, float* x, sbyte* codes)
    {
        float max = 0, amax = 0;
        for (int i = 0; i < n; i++)
        {
            float ax = MathF.Abs(x[i]);
            if (ax > amax) { amax = ax; max = x[i]; }
        }
        if (amax < GroupMaxEps)
        {
            for (int i = 0; i < n; i++) codes[i] = 0;
            return 0f;
        }
        float iscale = -nmax / max;
        float sumlx = 0, suml2 = 0;
        for (int i = 0; i < n; i++)
        {
            int l = Math.Clamp(NearestInt(iscale * x[i]), -nmax, nmax - 1);
            codes[i] = (sbyte)(l + nmax);
            float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
        float best = scale * sumlx;
        for (int step = -9; step <= 9; step++)
        {
            if (step == 0) continue;
            iscale = -(nmax + 0.1f * step) / max;
            sumlx = suml2 = 0;
            for (int i = 0; i < n; i++)
            {
                int l = Math.Clamp(NearestInt(iscale * x[i]), -nmax, nmax - 1);
                float w = x[i] * x[i];
                sumlx += w * x[i] * l;
                suml2 += w * l * l;
            }
            if (suml2 > 0 && sumlx * sumlx > best * suml2)
            {
                for (int i = 0; i < n; i++)
                    codes[i] = (sbyte)(nmax + Math.Clamp(NearestInt(iscale * x[i]), -nmax, nmax - 1));
                scale = sumlx / suml2;
                best = scale * sumlx;
            }
        }
        return scale;
    }

    /// <summary>
    /// Asymmetric codes in [0, nmax] with a non-positive offset (make_qkx2_quants): value ≈ scale·code
    /// - theMin. Starts from the min/max span, then tries nstep+1 scales around it, each refined by a
    /// weighted least-squares fit of scale and offset, keeping the one with the smallest weighted
    /// error (absolute when <paramref name="useMad"/>, squared otherwise).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loops: compile fully optimized at once (see KQuantMath)
    public static float MakeQkx2Quants(int n, int nmax, float* x, float* weights, byte* codes, out float theMin, byte* aux,
        float rmin, float rdelta, int nstep, bool useMad)
    {
        float min = x[0], max = x[0];
        float sumW = weights[0];
        float sumX = sumW * x[0];
        for (int i = 1; i < n; i++)
        {
            if (x[i] < min) min = x[i];
            if (x[i] > max) max = x[i];
            float w = weights[i];
            sumW += w;
            sumX += w * x[i];
        }
        if (min > 0) min = 0;
        if (max == min)
        {
            for (int i = 0; i < n; i++) codes[i] = 0;
            theMin = -min;
            return 0f;
        }
        float iscale = nmax / (max - min);
        float scale = 1 / iscale;
        float bestError = 0;
        for (int i = 0; i < n; i++)
        {
            int l = NearestInt(iscale * (x[i] - min));
            codes[i] = (byte)Math.Clamp(l, 0, nmax);
            float diff = scale * codes[i] + min - x[i];
            diff = useMad ? MathF.Abs(diff) : diff * diff;
            bestError += weights[i] * diff;
        }
        if (nstep < 1)
        {
            theMin = -min;
            return scale;
        }
        for (int step = 0; step <= nstep; step++)
        {
            iscale = (rmin + rdelta * step + nmax) / (max - min);
            float sumL = 0, sumL2 = 0, sumXL = 0;
            for (int i = 0; i < n; i++)
            {
                int l = Math.Clamp(NearestInt(iscale * (x[i] - min)), 0, nmax);
                aux[i] = (byte)l;
                float w = weights[i];
                sumL += w * l;
                sumL2 += w * l * l;
                sumXL += w * l * x[i];
            }
            float det = sumW * sumL2 - sumL * sumL;
            if (det > 0)
            {
                float thisScale = (sumW * sumXL - sumX * sumL) / det;
                float thisMin = (sumL2 * sumX - sumL * sumXL) / det;
                if (thisMin > 0)
                {
                    thisMin = 0;
                    thisScale = sumXL / sumL2;
                }
                float error = 0;
                for (int i = 0; i < n; i++)
                {
                    float diff = thisScale * aux[i] + thisMin - x[i];
                    diff = useMad ? MathF.Abs(diff) : diff * diff;
                    error += weights[i] * diff;
                }
                if (error < bestError)
                {
                    for (int i = 0; i < n; i++) codes[i] = aux[i];
                    bestError = error;
                    scale = thisScale;
                    min = thisMin;
                }
            }
        }
        theMin = -min;
        return scale;
    }

    /// <summary>
    /// Symmetric codes in [0, 2·nmax) with weights x² refined one element at a time
    /// (make_q3_quants with do_rmse): up to five passes, each moving single codes when that
    /// improves the weighted least-squares fit. Returns the fitted scale.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loops: compile fully optimized at once (see KQuantMath)
    public static float MakeQ3Quants(int n, int nmax, float* x, sbyte* codes)
    {
        float max = 0, amax = 0;
        for (int i = 0; i < n; i++)
        {
            float ax = MathF.Abs(x[i]);
            if (ax > amax) { amax = ax; max = x[i]; }
        }
        if (amax < GroupMaxEps)
        {
            for (int i = 0; i < n; i++) codes[i] = 0;
            return 0f;
        }
        float iscale = -nmax / max;
        float sumlx = 0, suml2 = 0;
        for (int i = 0; i < n; i++)
        {
            int l = Math.Clamp(NearestInt(iscale * x[i]), -nmax, nmax - 1);
            codes[i] = (sbyte)l;
            float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        for (int pass = 0; pass < 5; pass++)
        {
            int changed = 0;
            for (int i = 0; i < n; i++)
            {
                float w = x[i] * x[i];
                float slx = sumlx - w * x[i] * codes[i];
                if (slx > 0)
                {
                    float sl2 = suml2 - w * codes[i] * codes[i];
                    int newL = Math.Clamp(NearestInt(x[i] * sl2 / slx), -nmax, nmax - 1);
                    if (newL != codes[i])
                    {
                        slx += w * x[i] * newL;
                        sl2 += w * newL * newL;
                        if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2)
                        {
                            codes[i] = (sbyte)newL;
                            sumlx = slx;
                            suml2 = sl2;
                            changed++;
                        }
                    }
                }
            }
            if (changed == 0) break;
        }
        for (int i = 0; i < n; i++) codes[i] = (sbyte)(codes[i] + nmax);
        return sumlx / suml2;
    }

    /// <summary>
    /// The 6-bit scale and min of sub-block <paramref name="j"/> (0..7) from the 12 packed bytes of
    /// Q4_K/Q5_K: sub-blocks 0-3 keep theirs in the low 6 bits of bytes j and j+4; sub-blocks 4-7 in
    /// the nibbles of byte j+4, with the top two bits in the spare high bits of bytes j-4 and j.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ScaleMinK4(int j, byte* q, out int scale, out int min)
    {
        if (j < 4)
        {
            scale = q[j] & 63;
            min = q[j + 4] & 63;
        }
        else
        {
            scale = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
            min = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
        }
    }

    /// <summary>Packs eight 6-bit scales and mins into the 12-byte Q4_K/Q5_K layout (inverse of <see cref="ScaleMinK4"/>).</summary>
    public static void PackScaleMinK4(byte* dst, byte* ls, byte* lm)
    {
        for (int j = 0; j < 8; j++)
        {
            if (j < 4)
            {
                dst[j] = ls[j];
                dst[j + 4] = lm[j];
            }
            else
            {
                dst[j + 4] = (byte)((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
                dst[j - 4] |= (byte)((ls[j] >> 4) << 6);
                dst[j] |= (byte)((lm[j] >> 4) << 6);
            }
        }
    }

    public static int CheckQuantize(ReadOnlySpan<float> src, ReadOnlySpan<byte> dst, int blockBytes) =>
        BlockArgs.ForQuantize(src.Length, dst.Length, 256, blockBytes);

    public static int CheckDequantize(ReadOnlySpan<byte> src, ReadOnlySpan<float> dst, int blockBytes) =>
        BlockArgs.ForDequantize(src.Length, dst.Length, 256, blockBytes);
}
