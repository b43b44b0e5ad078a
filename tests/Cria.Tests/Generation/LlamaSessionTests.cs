using Cria.Generation;
using Cria.Model;
using Cria.Sampling;
using Cria.Tests.Model;
using Xunit;

namespace Cria.Tests.Generation;

public class LlamaSessionTests
{
    private static LlamaModel Stories() =>
        LlamaModel.Load(RefData.Require("stories260K/stories260K-f32.gguf"), new ModelOptions { Threads = 2 });

    private static GenerationOptions Greedy(int n) => new() { MaxTokens = n, Sampling = SamplerOptions.Greedy };

    [SkippableFact]
    public async Task GenerateAsyncStreamsLlamaCppsGreedyText()
    {
        var golden = GoldenData.Load(RefData.Require("stories260K/golden-f32-kvf32.json")).Single(c => c.Name == "once_upon_a_time");
        using var model = Stories();
        using var session = new LlamaSession(model, new ContextOptions { ContextSize = 512, KvCacheType = KvCacheType.F32 });
        var pieces = new List<string>();
        await foreach (string piece in session.GenerateAsync("Once upon a time", Greedy(64)))
            pieces.Add(piece);
        string expected = model.Tokenizer.Decode(golden.GeneratedTokens);
        Assert.Equal(expected, string.Concat(pieces));
        Assert.True(pieces.Count > 10, "text should arrive in many pieces, not at the end");
        Assert.Equal(64, session.LastStats!.GeneratedTokens);
        Assert.Equal(StopReason.MaxTokens, session.LastStats.StopReason);
        Assert.Equal(5, session.LastStats.PromptTokens);
    }

    [SkippableFact]
    public async Task CancellationStopsTheStream()
    {
        using var model = Stories();
        using var session = new LlamaSession(model, new ContextOptions { ContextSize = 512 });
        using var cts = new CancellationTokenSource();
        int count = 0;
        await foreach (string _ in session.GenerateAsync("Once upon a time", Greedy(200), cts.Token))
        {
            if (++count == 5) cts.Cancel();
        }
        Assert.Equal(StopReason.Cancelled, session.LastStats!.StopReason);
        Assert.True(session.LastStats.GeneratedTokens <= 6);
    }

    [SkippableFact]
    public void StopSequenceEndsGenerationBeforeItIsEmitted()
    {
        using var model = Stories();
        using var session = new LlamaSession(model, new ContextOptions { ContextSize = 512 });
        var options = Greedy(64) with { StopSequences = new[] { "Lily" } };
        string text = string.Concat(session.GenerateText(session.Tokenize("Once upon a time"), options));
        Assert.Equal(", there was a little girl named ", text);
        Assert.Equal(StopReason.StopSequence, session.LastStats!.StopReason);
    }

    [SkippableFact]
    public void ASharedPromptPrefixIsReusedFromTheCache()
    {
        using var model = Stories();
        using var session = new LlamaSession(model, new ContextOptions { ContextSize = 512, KvCacheType = KvCacheType.F32 });
        string first = string.Concat(session.GenerateText(session.Tokenize("Once upon a time"), Greedy(8)));
        int[] longer = session.Tokenize("Once upon a time, there was");
        string second = string.Concat(session.GenerateText(longer, Greedy(8)));
        Assert.True(session.LastStats!.PromptTokensEvaluated < longer.Length, "the cached prefix should not be evaluated again");

        using var fresh = new LlamaSession(model, new ContextOptions { ContextSize = 512, KvCacheType = KvCacheType.F32 });
        string reference = string.Concat(fresh.GenerateText(longer, Greedy(8)));
        Assert.Equal(reference, second);
        Assert.Equal(longer.Length, fresh.LastStats!.PromptTokensEvaluated);
        Assert.NotEmpty(first);
    }

    [SkippableFact]
    public void SeededSamplingIsReproducibleAndEndsAtTheContext()
    {
        using var model = Stories();
        var options = new GenerationOptions { MaxTokens = -1, Sampling = new SamplerOptions { Temperature = 1.0f, Seed = 7 } };
        string Run()
        {
            using var s = new LlamaSession(model, new ContextOptions { ContextSize = 48 });
            string text = string.Concat(s.GenerateText(s.Tokenize("Once"), options));
            Assert.True(s.LastStats!.StopReason is StopReason.ContextFull or StopReason.EndOfGeneration);
            return text;
        }
        Assert.Equal(Run(), Run());
    }

    [SkippableFact]
    public void PromptLongerThanTheContextThrowsTypedException()
    {
        using var model = Stories();
        using var session = new LlamaSession(model, new ContextOptions { ContextSize = 8 });
        var tokens = session.Tokenize("Once upon a time there was a little girl named Lily");
        Assert.Throws<ContextOverflowException>(() => session.GenerateTokens(tokens, Greedy(4)).ToList());
    }

    [SkippableFact]
    public void DecodeAllocatesNothingPerToken()
    {
        using var model = Stories();
        using var ctx = model.CreateContext(new ContextOptions { ContextSize = 512 });
        var sampler = new Sampler(SamplerOptions.Greedy, model.Config.VocabularySize, 512);
        int[] one = { 1 };
        ctx.Evaluate(one);
        for (int i = 0; i < 20; i++) { one[0] = sampler.Sample(ctx.LastLogits); ctx.Evaluate(one); }
        AssertNothingAllocatedPerStep(() => { one[0] = sampler.Sample(ctx.LastLogits); ctx.Evaluate(one); }, 100, "decode steps");
    }

    /// <summary>
    /// Runs <paramref name="step"/> in two windows of <paramref name="perWindow"/> calls and requires one of
    /// them to allocate nothing on this thread: an allocation per step shows in both windows. Twice, in
    /// full-suite runs with other tests busy on both cores, one window saw a one-off of a few kilobytes
    /// (1896 bytes in the token-stream test on 2026-11-27, 2992 bytes in the decode test on 2026-11-28) that
    /// never reproduced alone, under CPU load, or with the tiering worker made to restart constantly; a
    /// lazily created runtime object is the likely cause, and it is not per token. Both windows are reported.
    /// </summary>
    private static void AssertNothingAllocatedPerStep(Action step, int perWindow, string what)
    {
        long start = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < perWindow; i++) step();
        long middle = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < perWindow; i++) step();
        long end = GC.GetAllocatedBytesForCurrentThread();
        Assert.True(Math.Min(middle - start, end - middle) == 0, $"{what}: allocated {middle - start} and {end - middle} bytes in two windows of {perWindow}");
    }

    [SkippableFact]
    public void TheTokenStreamAllocatesNothingPerToken()
    {
        using var model = Stories();
        using var session = new LlamaSession(model, new ContextOptions { ContextSize = 512 });
        using var tokens = session.GenerateTokens(session.Tokenize("Once upon a time"), Greedy(300)).GetEnumerator();
        for (int i = 0; i < 20; i++) Assert.True(tokens.MoveNext());
        int produced = 0;
        AssertNothingAllocatedPerStep(() => { if (tokens.MoveNext()) produced++; }, 100, "streamed tokens");
        Assert.True(produced == 200, $"only {produced} tokens");
    }

    [SkippableFact]
    public void StatisticsAreRecordedWhenTheConsumerStopsEarly()
    {
        using var model = Stories();
        using var session = new LlamaSession(model, new ContextOptions { ContextSize = 512 });
        foreach (int _ in session.GenerateTokens(session.Tokenize("Once upon a time"), Greedy(100)).Take(7)) { }
        Assert.Equal(7, session.LastStats!.GeneratedTokens);
        Assert.Equal(StopReason.Cancelled, session.LastStats.StopReason);
    }
}
