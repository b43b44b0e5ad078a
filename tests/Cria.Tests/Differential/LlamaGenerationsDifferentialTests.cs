using Cria.Conversion;
using Cria.Gguf;
using Cria.Model;
using Cria.Numerics;
using Xunit;
using Xunit.Abstractions;

namespace Cria.Tests.Differential;

/// <summary>
/// Model files shaped like each Llama generation, with their real vocabularies, against llama.cpp:
/// Llama 3.1/3.2 (the 128K byte-level BPE vocabulary Cria converts from tokenizer.json, RoPE base
/// 500000, Llama 3.1's rope_freqs factors, grouped-query attention, tied embeddings) and Code Llama
/// (the Llama 2 SentencePiece vocabulary, RoPE base 1e6). Tokenization and logits of real text must
/// agree.
/// </summary>
[Collection(LlamaCppCollection.Name)]
public sealed class LlamaGenerationsDifferentialTests : IDisposable
{
    private readonly ITestOutputHelper _out;
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("cria-generations-");

    public LlamaGenerationsDifferentialTests(ITestOutputHelper output) => _out = output;

    public void Dispose()
    {
        try { _dir.Delete(recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    private const string Text = "<|begin_of_text|>The quick brown fox jumps over the lazy dog. 1234567 + 89 = ?\n\tIt's 🦙 time — don't panic!";

    /// <summary>Checks tokenization and logits; returns llama.cpp's logits, the tokens and the tolerance.</summary>
    private (float[] Expected, int[] Tokens, double Tolerance) CompareWithLlamaCpp(string path, string text, bool parseSpecial)
    {
        int[] tokens = LlamaCppOracle.Tokenize(path, text, addSpecial: true, parseSpecial);
        using var model = LlamaModel.Load(path, new ModelOptions { Threads = 2 });
        Assert.Equal(tokens, model.Tokenizer.Encode(text, addSpecial: true, parseSpecial));

        float[] expected = LlamaCppOracle.EvaluateAll(path, tokens, threads: 2);
        float[] actual = Evaluate(model, tokens);
        var cmp = LogitComparison.Of(actual, expected, model.Config.VocabularySize);
        _out.WriteLine($"{Path.GetFileName(path)}: {tokens.Length} tokens; max|Δ| {cmp.MaxDifference:G3} (relative {cmp.RelativeMaxDifference:G3})");
        // F32 weights and cache: the same bound as the F32 cases of LlamaCppDifferentialTests.
        double tolerance = 1e-4 * cmp.MaxAbsReference + 1e-5;
        Assert.True(cmp.MaxDifference <= tolerance, $"logits differ from llama.cpp beyond {tolerance:G3}: {cmp}");
        CompareGreedyContinuations(path, model, tokens.Take(16).ToArray(), steps: 10, tolerance);
        return (expected, tokens, tolerance);
    }

    /// <summary>
    /// Greedy continuation of the prompt: Cria's (LlamaSession, greedy sampler) against llama.cpp's argmax
    /// step by step, up to the first step where llama.cpp's top two logits are closer than the tolerance.
    /// </summary>
    private void CompareGreedyContinuations(string path, LlamaModel model, int[] prompt, int steps, double tolerance)
    {
        using var session = new Cria.Generation.LlamaSession(model, new ContextOptions { ContextSize = 64, KvCacheType = KvCacheType.F32 });
        var options = new Cria.Generation.GenerationOptions { MaxTokens = steps, Sampling = Cria.Sampling.SamplerOptions.Greedy };
        int[] ours = session.GenerateTokens(prompt, options).ToArray();
        var sequence = new List<int>(prompt);
        int vocab = model.Config.VocabularySize, compared = 0;
        for (int step = 0; step < ours.Length; step++)
        {
            float[] all = LlamaCppOracle.EvaluateAll(path, sequence.ToArray(), threads: 2);
            var (theirs, margin) = LogitComparison.Top(all, vocab, sequence.Count - 1);
            if (margin <= 2 * tolerance) break; // a near-tie: either choice is right
            Assert.True(theirs == ours[step], $"greedy step {step}: llama.cpp chose {theirs}, Cria {ours[step]}");
            compared++;
            sequence.Add(theirs);
        }
        _out.WriteLine($"greedy continuation: {compared} of {ours.Length} steps compared, all equal");
        Assert.True(compared >= steps / 2, $"only {compared} greedy steps could be compared");
    }

    private static float[] Evaluate(LlamaModel model, int[] tokens)
    {
        using var ctx = model.CreateContext(new ContextOptions { ContextSize = 1024, KvCacheType = KvCacheType.F32 });
        return ctx.EvaluateAll(tokens);
    }

    [SkippableFact]
    public void Llama31ShapedModelWithTheRealVocabularyMatchesLlamaCpp()
    {
        string tokenizerJson = RefData.Require("llama3-tokenizer/tokenizer.json");
        LlamaCppOracle.SkipIfUnavailable();
        string vocabPath = Path.Combine(_dir.FullName, "llama3-vocab.gguf");
        HfTokenizerConverter.WriteVocabularyGguf(tokenizerJson, RefData.File("llama3-tokenizer/tokenizer_config.json"), vocabPath);

        // Llama 3.1's scaling (factor 8, low/high frequency factors 1 and 4, original context 8192).
        const int heads = 4, embd = 128;
        float[] factors = HfModelConverter.Llama3RopeFactors(embd / heads, 500000, 8, 1, 4, 8192);
        Assert.Contains(factors, f => f != 1f);
        string path = Path.Combine(_dir.FullName, "llama31-shaped.gguf");
        string unscaledPath = Path.Combine(_dir.FullName, "llama3-shaped-unscaled.gguf");
        var spec = new SyntheticModel.SyntheticModelSpec
        {
            EmbeddingLength = embd, FeedForwardLength = 320, BlockCount = 2, HeadCount = heads, KvHeadCount = 1,
            ContextLength = 131072, RopeFreqBase = 500000, RopeFrequencyFactors = factors, TiedEmbeddings = true,
            Type = GgmlType.F32, Seed = 31,
        };
        using (var vocab = GgufFile.Open(vocabPath))
        {
            SyntheticModel.Write(spec, path, vocab);
            SyntheticModel.Write(spec with { RopeFrequencyFactors = null }, unscaledPath, vocab);
        }

        using (var model = LlamaModel.Load(path, new ModelOptions { Threads = 1 }))
        {
            Assert.Equal(128256, model.Config.VocabularySize);
            Assert.NotNull(model.Weights.RopeFrequencyFactors);
            Assert.True(model.Weights.OutputIsTied);
        }
        // Long enough (about 500 positions) for the scaled low frequencies to turn by a visible angle.
        string text = Text + string.Concat(Enumerable.Repeat(Text[17..], 16));
        var (expected, tokens, tolerance) = CompareWithLlamaCpp(path, text, parseSpecial: true);
        Assert.True(tokens.Length > 400, $"{tokens.Length} tokens");

        // The test can see the factors: the same weights without them are far from llama.cpp's logits.
        using var unscaled = LlamaModel.Load(unscaledPath, new ModelOptions { Threads = 2 });
        Assert.Null(unscaled.Weights.RopeFrequencyFactors);
        var without = LogitComparison.Of(Evaluate(unscaled, tokens), expected, unscaled.Config.VocabularySize);
        _out.WriteLine($"without rope_freqs: max|Δ| {without.MaxDifference:G3}");
        Assert.True(without.MaxDifference > 10 * tolerance, $"dropping the RoPE factors changed the logits by only {without.MaxDifference:G3}");
    }

    [SkippableFact]
    public void CodeLlamaShapedModelWithTheLlama2VocabularyMatchesLlamaCpp()
    {
        string vocabPath = RefData.Require("vocab/ggml-vocab-llama-spm.gguf");
        LlamaCppOracle.SkipIfUnavailable();
        string path = Path.Combine(_dir.FullName, "codellama-shaped.gguf");
        using (var vocab = GgufFile.Open(vocabPath))
            SyntheticModel.Write(new SyntheticModel.SyntheticModelSpec
            {
                EmbeddingLength = 128, FeedForwardLength = 352, BlockCount = 2, HeadCount = 4, KvHeadCount = 4,
                ContextLength = 16384, RopeFreqBase = 1_000_000, Type = GgmlType.F32, Seed = 34,
            }, path, vocab);
        using (var model = LlamaModel.Load(path, new ModelOptions { Threads = 1 }))
        {
            Assert.Equal(32000, model.Config.VocabularySize);
            Assert.Equal(1_000_000f, model.Config.RopeFrequencyBase);
        }
        CompareWithLlamaCpp(path, "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)  # 🦙 Ünïcode", parseSpecial: false);
    }
}
