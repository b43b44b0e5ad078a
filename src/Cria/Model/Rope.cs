using System.Runtime.CompilerServices;
namespace Cria.Model;

/// <summary>
/// Rotary position embedding in the layout llama.cpp's converters produce ("normal" mode): within
/// each head, dimensions (2i, 2i+1) form a pair rotated by the angle pos * base^(-2i/n), for the
/// first <c>n</c> (= RoPE dimension count) dimensions. Angles are built the way ggml builds them,
/// by repeated multiplication in single precision, so results match llama.cpp closely.
/// </summary>
public static class Rope
{
    /// <summary>Fills cos/sin (each ropeDims/2 long) for one position.</summary>
    /// <param name="frequencyFactors">Llama 3.1's per-pair divisors (the <c>rope_freqs.weight</c> tensor, ropeDims/2
    /// long), or empty for none: as in ggml's rope with freq_factors, pair i's angle becomes
    /// freqScale * (theta_i / factor_i).</param>
    public static void Angles(int position, int ropeDims, float freqBase, float freqScale, Span<float> cos, Span<float> sin,
        ReadOnlySpan<float> frequencyFactors = default)
    {
        float thetaScale = MathF.Pow(freqBase, -2.0f / ropeDims);
        float theta = position;
        if (frequencyFactors.IsEmpty)
        {
            for (int i = 0; i < ropeDims / 2; i++)
            {
                float t = freqScale * theta;
                cos[i] = MathF.Cos(t);
                sin[i] = MathF.Sin(t);
                theta *= thetaScale;
            }
            return;
        }
        if (frequencyFactors.Length < ropeDims / 2)
            throw new ArgumentException($"{frequencyFactors.Length} RoPE frequency factors, expected {ropeDims / 2}", nameof(frequencyFactors));
        for (int i = 0; i < ropeDims / 2; i++)
        {
            float t = freqScale * (theta / frequencyFactors[i]);
            cos[i] = MathF.Cos(t);
            sin[i] = MathF.Sin(t);
            theta *= thetaScale;
        }
    }

    /// <summary>Rotates every head of one token's vector in place.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void Apply(float* x, int heads, int headSize, int ropeDims, float* cos, float* sin)
    {
        for (int h = 0; h < heads; h++)
        {
            float* v = x + h * headSize;
            for (int i = 0; i < ropeDims / 2; i++)
            {
                float x0 = v[2 * i], x1 = v[2 * i + 1];
                v[2 * i] = x0 * cos[i] - x1 * sin[i];
                v[2 * i + 1] = x0 * sin[i] + x1 * cos[i];
            }
        }
    }
}
