using System.Runtime.CompilerServices;
namespace Cria.Sampling;

/// <summary>Numerically stable softmax over logits.</summary>
public static class Softmax
{
    /// <summary>
    /// Writes <c>softmax(logits / temperature)</c> into <paramref name="probabilities"/>. The maximum is
    /// subtracted before exponentiation. Infinite logits are handled: if the maximum is +inf the mass is
    /// split evenly between the +inf entries; if every logit is -inf the result is uniform. NaN logits
    /// are treated as -inf.
    /// </summary>
    /// <exception cref="ArgumentException">Lengths differ, the span is empty, or the temperature is not finite and positive.</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Compute(ReadOnlySpan<float> logits, Span<float> probabilities, float temperature = 1f)
    {
        if (logits.Length == 0)
            throw new ArgumentException("Softmax needs at least one logit.", nameof(logits));
        if (probabilities.Length != logits.Length)
            throw new ArgumentException(
                $"Output length {probabilities.Length} differs from input length {logits.Length}.",
                nameof(probabilities));
        if (!(temperature > 0f) || !float.IsFinite(temperature))
            throw new ArgumentException($"Temperature must be finite and > 0, got {temperature}.", nameof(temperature));

        float max = float.NegativeInfinity;
        for (int i = 0; i < logits.Length; i++)
        {
            float l = Scale(logits[i], temperature);
            if (l > max) max = l;
        }

        double sum = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            float w = Weight(Scale(logits[i], temperature), max);
            probabilities[i] = w;
            sum += w;
        }

        for (int i = 0; i < probabilities.Length; i++)
            probabilities[i] = (float)(probabilities[i] / sum);
    }

    private static float Scale(float logit, float temperature)
    {
        if (float.IsNaN(logit)) return float.NegativeInfinity;
        return temperature == 1f ? logit : logit / temperature;
    }

    /// <summary>
    /// Unnormalized softmax weight <c>exp(logit - max)</c>, exactly 1 when <paramref name="logit"/> equals
    /// <paramref name="max"/> (which also covers max = ±inf, where the subtraction would give NaN).
    /// </summary>
    internal static float Weight(float logit, float max) => logit == max ? 1f : MathF.Exp(logit - max);
}
