using Cria.Model;

namespace Cria.Evaluation;

/// <summary>Progress of a perplexity run after each chunk.</summary>
public readonly record struct PerplexityProgress(int Chunk, int ChunkCount, double RunningPerplexity);

/// <summary>The result of a perplexity run.</summary>
public sealed record PerplexityResult(double Perplexity, double StandardError, int Chunks, long TokensScored);

/// <summary>
/// Perplexity the way llama.cpp's llama-perplexity measures it: the text is tokenized once (with
/// BOS), cut into chunks of <c>contextSize</c> tokens, each chunk is evaluated from an empty
/// context with its first token replaced by BOS, and the negative log-likelihood of the tokens in
/// the second half of each chunk (each predicted from everything before it in the chunk) is
/// averaged. The error estimate is the standard error of the mean NLL carried through exp.
/// </summary>
public static class Perplexity
{
    public static PerplexityResult Compute(LlamaModel model, string text, int contextSize, int batchSize = 512,
        int maxChunks = -1, KvCacheType kvType = KvCacheType.F16, Action<PerplexityProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        if (contextSize < 2) throw new ArgumentOutOfRangeException(nameof(contextSize), "the context must hold at least 2 tokens");
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), "the batch size must be positive");
        int[] tokens = model.Tokenizer.Encode(text, addSpecial: true);
        int chunkCount = tokens.Length / contextSize;
        if (maxChunks >= 0) chunkCount = Math.Min(chunkCount, maxChunks);
        if (chunkCount == 0)
            throw new ArgumentException($"the text has {tokens.Length} tokens, fewer than one chunk of {contextSize} (use a smaller -c or a longer text)");

        bool addBos = model.Vocabulary.AddBos && model.Vocabulary.Bos >= 0;
        int vocab = model.Config.VocabularySize;
        using var context = model.CreateContext(new ContextOptions { ContextSize = contextSize, BatchSize = Math.Min(batchSize, contextSize), KvCacheType = kvType });
        int first = contextSize / 2;
        double nll = 0, nll2 = 0;
        long count = 0;
        var chunk = new int[contextSize];
        for (int c = 0; c < chunkCount; c++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            Array.Copy(tokens, (long)c * contextSize, chunk, 0, contextSize);
            if (addBos) chunk[0] = model.Vocabulary.Bos;
            context.Reset();
            float[] logits = context.EvaluateAll(chunk);
            // Row j predicts the token at j + 1 (the original text's token, not the BOS substitute).
            for (int j = first; j < contextSize - 1; j++)
            {
                int target = tokens[(long)c * contextSize + j + 1];
                double lp = LogSoftmaxAt(logits.AsSpan(j * vocab, vocab), target);
                nll -= lp;
                nll2 += lp * lp;
                count++;
            }
            progress?.Invoke(new PerplexityProgress(c + 1, chunkCount, Math.Exp(nll / count)));
        }
        double mean = nll / count;
        double ppl = Math.Exp(mean);
        double variance = nll2 / count - mean * mean;
        double stderr = variance > 0 && count > 1 ? Math.Sqrt(variance / (count - 1)) * ppl : 0;
        return new PerplexityResult(ppl, stderr, chunkCount, count);
    }

    /// <summary>log softmax(logits)[target], with the max subtracted and the sum in double as llama.cpp does.</summary>
    private static double LogSoftmaxAt(ReadOnlySpan<float> logits, int target)
    {
        float max = float.NegativeInfinity;
        foreach (float l in logits) max = MathF.Max(max, l);
        double sum = 0;
        foreach (float l in logits) sum += Math.Exp(l - max);
        return logits[target] - max - Math.Log(sum);
    }
}
