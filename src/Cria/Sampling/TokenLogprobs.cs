namespace Cria.Sampling;

/// <summary>The log-probability of one token and of the most likely alternatives at that step.</summary>
/// <param name="Token">the chosen token</param>
/// <param name="Logprob">ln p(token) under the model's distribution (softmax of the raw logits)</param>
/// <param name="Top">the <c>k</c> most likely tokens with their log-probabilities, most likely first</param>
public sealed record TokenLogprob(int Token, float Logprob, IReadOnlyList<(int Token, float Logprob)> Top);

/// <summary>
/// Log-probabilities of the model's next-token distribution: log-softmax of the raw logits, before
/// any penalty, truncation or temperature (what OpenAI's <c>logprobs</c> reports).
/// </summary>
public static class TokenLogprobs
{
    /// <summary>Most alternatives OpenAI's API allows per token.</summary>
    public const int MaxTop = 20;

    /// <param name="logits">the raw logits of one step</param>
    /// <param name="token">the token that was chosen</param>
    /// <param name="top">how many of the most likely tokens to list (0..<see cref="MaxTop"/>)</param>
    public static TokenLogprob Compute(ReadOnlySpan<float> logits, int token, int top)
    {
        if ((uint)token >= (uint)logits.Length) throw new ArgumentOutOfRangeException(nameof(token));
        if (top < 0 || top > MaxTop) throw new ArgumentOutOfRangeException(nameof(top), $"top must be in 0..{MaxTop}");
        float max = float.NegativeInfinity;
        foreach (float l in logits) if (l > max) max = l;
        double sum = 0;
        foreach (float l in logits) sum += Math.Exp(l - max);
        float logZ = max + (float)Math.Log(sum);

        // The top k by a running insertion into a small sorted list (k <= 20, one pass over the vocabulary).
        top = Math.Min(top, logits.Length);
        var ids = new int[top];
        var values = new float[top];
        int filled = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            float l = logits[i];
            if (filled == top && (top == 0 || l <= values[top - 1])) continue;
            int at = filled < top ? filled++ : top - 1;
            while (at > 0 && values[at - 1] < l)
            {
                values[at] = values[at - 1];
                ids[at] = ids[at - 1];
                at--;
            }
            values[at] = l;
            ids[at] = i;
        }
        var list = new (int, float)[top];
        for (int i = 0; i < top; i++) list[i] = (ids[i], values[i] - logZ);
        return new TokenLogprob(token, logits[token] - logZ, list);
    }
}
