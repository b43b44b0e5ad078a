using System.Collections.Concurrent;
using System.Text;
using LLama;
using LLama.Common;
using LLama.Native;

namespace Cria.Tests.Differential;

/// <summary>
/// llama.cpp itself (the native binaries of LLamaSharp.Backend.Cpu 0.30.0, driven through LLamaSharp),
/// used as a test oracle: the logits it computes for a model file and a token sequence. Tests call
/// <see cref="SkipIfUnavailable"/> first, so they skip with a reason on machines where the native
/// library cannot be loaded instead of failing.
/// </summary>
public static class LlamaCppOracle
{
    // The native log (warnings and errors only), kept for failure messages: when llama.cpp refuses a
    // file, the reason is in its log, not in the exception LLamaSharp throws.
    private static readonly ConcurrentQueue<string> Log = new();
    private const int LogLines = 40;

    private static readonly Lazy<string?> Unavailable = new(Probe, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>Null when llama.cpp is usable, else why not.</summary>
    public static string? UnavailableReason => Unavailable.Value;

    public static void SkipIfUnavailable() =>
        Xunit.Skip.If(Unavailable.Value is not null, $"native llama.cpp (LLamaSharp.Backend.Cpu) cannot be loaded here: {Unavailable.Value}");

    private static string? Probe()
    {
        try
        {
            NativeLogConfig.llama_log_set((level, message) =>
            {
                if (level is LLamaLogLevel.Warning or LLamaLogLevel.Error)
                {
                    Log.Enqueue(message.TrimEnd());
                    while (Log.Count > LogLines) Log.TryDequeue(out _);
                }
            });
            NativeApi.llama_empty_call(); // loads the native library (or throws)
            return null;
        }
        catch (Exception e)
        {
            var inner = e;
            while (inner.InnerException is not null) inner = inner.InnerException;
            return $"{inner.GetType().Name}: {inner.Message}";
        }
    }

    /// <summary>The last warnings and errors llama.cpp logged (for assertion messages).</summary>
    public static string RecentLog() => string.Join("\n", Log);

    /// <summary>
    /// Evaluates <paramref name="tokens"/> at positions 0..n-1 in ONE llama_decode call (one
    /// micro-batch) with logits requested for every position, and returns them as [n, vocab], row-major.
    /// The KV cache is F32 and flash attention is off, so llama.cpp takes the same algorithm Cria
    /// implements (see LlamaCppDifferentialTests for why that matters).
    /// </summary>
    public static float[] EvaluateAll(string modelPath, ReadOnlySpan<int> tokens, int threads = 2)
    {
        uint n = (uint)tokens.Length;
        var parameters = new ModelParams(modelPath)
        {
            ContextSize = Math.Max(256u, n),
            GpuLayerCount = 0,
            Threads = threads,
            BatchThreads = threads,
            BatchSize = Math.Max(64u, n),
            UBatchSize = Math.Max(64u, n),
            TypeK = GGMLType.GGML_TYPE_F32,
            TypeV = GGMLType.GGML_TYPE_F32,
            FlashAttention = false,
        };
        LLamaWeights weights;
        try
        {
            weights = LLamaWeights.LoadFromFile(parameters);
        }
        catch (Exception e)
        {
            throw new InvalidOperationException($"llama.cpp refused {Path.GetFileName(modelPath)}: {e.Message}\nllama.cpp log:\n{RecentLog()}", e);
        }
        using (weights)
        using (var context = weights.CreateContext(parameters))
        {
            var batch = new LLamaBatch();
            for (int i = 0; i < tokens.Length; i++)
                batch.Add((LLamaToken)tokens[i], (LLamaPos)i, (LLamaSeqId)0, logits: true);
            var result = context.Decode(batch);
            if (result != DecodeResult.Ok)
                throw new InvalidOperationException($"llama_decode returned {result}\nllama.cpp log:\n{RecentLog()}");
            int vocab = context.NativeHandle.GetLogitsIth(0).Length;
            var logits = new float[(long)tokens.Length * vocab];
            for (int i = 0; i < tokens.Length; i++)
                context.NativeHandle.GetLogitsIth(i).CopyTo(logits.AsSpan(i * vocab, vocab));
            return logits;
        }
    }

    /// <summary>
    /// llama.cpp's sentence embedding of <paramref name="text"/> (BOS added): mean pooling of the final,
    /// normed hidden states (its <c>LLAMA_POOLING_TYPE_MEAN</c>), not normalized; F32 KV cache.
    /// </summary>
    public static float[] MeanEmbedding(string modelPath, string text, int threads = 2)
    {
        var parameters = new ModelParams(modelPath)
        {
            ContextSize = 256,
            GpuLayerCount = 0,
            Threads = threads,
            BatchThreads = threads,
            BatchSize = 256,
            UBatchSize = 256,
            TypeK = GGMLType.GGML_TYPE_F32,
            TypeV = GGMLType.GGML_TYPE_F32,
            FlashAttention = false,
            Embeddings = true,
            PoolingType = LLamaPoolingType.Mean,
        };
        using var weights = LLamaWeights.LoadFromFile(parameters);
        using var embedder = new LLamaEmbedder(weights, parameters);
        var vectors = embedder.GetEmbeddings(text).GetAwaiter().GetResult();
        if (vectors.Count != 1) throw new InvalidOperationException($"expected one pooled vector, got {vectors.Count}");
        return vectors[0];
    }

    /// <summary>llama.cpp's tokenization of <paramref name="text"/> with the file's vocabulary.</summary>
    public static int[] Tokenize(string modelPath, string text, bool addSpecial, bool parseSpecial)
    {
        using var weights = LLamaWeights.LoadFromFile(new ModelParams(modelPath) { VocabOnly = true, GpuLayerCount = 0 });
        return weights.Tokenize(text, addSpecial, parseSpecial, Encoding.UTF8).Select(t => (int)t).ToArray();
    }
}

/// <summary>How two [positions, vocab] logit matrices differ.</summary>
public sealed class LogitComparison
{
    private LogitComparison() { }

    public int Positions { get; private init; }
    public int Vocabulary { get; private init; }
    /// <summary>max |reference logit| over the whole matrix: the scale the tolerances are relative to.</summary>
    public double MaxAbsReference { get; private init; }
    public double MaxDifference { get; private init; }
    public int MaxDifferencePosition { get; private init; }
    public int MaxDifferenceToken { get; private init; }
    public double RelativeMaxDifference => MaxAbsReference > 0 ? MaxDifference / MaxAbsReference : MaxDifference;
    /// <summary>Largest difference within each position (row).</summary>
    public double[] PerPosition { get; private init; } = [];

    public static LogitComparison Of(ReadOnlySpan<float> actual, ReadOnlySpan<float> reference, int vocabulary)
    {
        if (actual.Length != reference.Length || reference.Length % vocabulary != 0)
            throw new ArgumentException($"shape mismatch: {actual.Length} vs {reference.Length} logits for a vocabulary of {vocabulary}");
        int positions = reference.Length / vocabulary;
        double maxAbs = 0, maxDiff = -1;
        int at = 0;
        var perPos = new double[positions];
        for (int i = 0; i < reference.Length; i++)
        {
            maxAbs = Math.Max(maxAbs, Math.Abs(reference[i]));
            double d = Math.Abs((double)actual[i] - reference[i]);
            if (!double.IsFinite(d)) d = double.PositiveInfinity;
            if (d > maxDiff) { maxDiff = d; at = i; }
            perPos[i / vocabulary] = Math.Max(perPos[i / vocabulary], d);
        }
        return new LogitComparison
        {
            Positions = positions,
            Vocabulary = vocabulary,
            MaxAbsReference = maxAbs,
            MaxDifference = maxDiff,
            MaxDifferencePosition = at / vocabulary,
            MaxDifferenceToken = at % vocabulary,
            PerPosition = perPos,
        };
    }

    /// <summary>Index of the largest value of row <paramref name="position"/>, and its margin over the runner-up.</summary>
    public static (int Argmax, double Margin) Top(ReadOnlySpan<float> logits, int vocabulary, int position)
    {
        var row = logits.Slice(position * vocabulary, vocabulary);
        int best = 0;
        for (int j = 1; j < row.Length; j++) if (row[j] > row[best]) best = j;
        double second = double.NegativeInfinity;
        for (int j = 0; j < row.Length; j++) if (j != best && row[j] > second) second = row[j];
        return (best, row[best] - second);
    }

    public override string ToString() =>
        $"max|Δ| {MaxDifference:G3} at position {MaxDifferencePosition}, token {MaxDifferenceToken} " +
        $"(max|logit| {MaxAbsReference:G4}, relative {RelativeMaxDifference:G3}); per position: " +
        string.Join(" ", PerPosition.Select(d => d.ToString("G2", System.Globalization.CultureInfo.InvariantCulture)));
}
