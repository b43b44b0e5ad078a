using Cria.Model;

namespace Cria.Server;

/// <summary>Sentence embeddings from a causal Llama: mean of the final hidden states, scaled to unit length.</summary>
internal static class Embedding
{
    public static float[] MeanPooledNormalized(LlamaContext context, int[] tokens)
    {
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
