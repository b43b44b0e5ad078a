namespace Cria.Model;

/// <summary>
/// Sentence embeddings from a causal Llama: the mean of the final (normed) hidden states over the
/// tokens, scaled to unit length — llama.cpp's mean pooling followed by L2 normalisation.
/// </summary>
public static class SentenceEmbedding
{
    /// <summary>Embeds <paramref name="tokens"/> from an empty cache (the context's cache is overwritten).</summary>
    public static float[] MeanPooledNormalized(LlamaContext context, ReadOnlySpan<int> tokens)
    {
        ArgumentNullException.ThrowIfNull(context);
        float[] hidden = context.EmbedAll(tokens);
        int d = context.Model.Config.EmbeddingLength;
        var mean = new double[d];
        for (int t = 0; t < tokens.Length; t++)
            for (int j = 0; j < d; j++) mean[j] += hidden[(long)t * d + j];
        double norm = 0;
        for (int j = 0; j < d; j++) norm += mean[j] * mean[j];
        norm = Math.Sqrt(norm);
        var result = new float[d];
        if (norm > 0)
            for (int j = 0; j < d; j++) result[j] = (float)(mean[j] / norm);
        return result;
    }
}
