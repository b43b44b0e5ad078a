using System.Text.Json;
using Cria.Evaluation;
using Cria.Model;
using Xunit;

namespace Cria.Tests.Evaluation;

public class PerplexityTests
{
    [SkippableFact]
    public void AgreesWithLlamaPerplexityOnStories260K()
    {
        string text = File.ReadAllText(RefData.Require("corpus/tinystories/tinystories-valid-head.txt"));
        using var doc = JsonDocument.Parse(File.ReadAllBytes(RefData.Require("perplexity/stories260K-tinystories-valid.json")));
        var expected = doc.RootElement.GetProperty("results").EnumerateArray()
            .Single(e => e.GetProperty("model").GetString() == "stories260K/stories260K-f32.gguf");
        double ppl = expected.GetProperty("ppl").GetDouble(), stderr = expected.GetProperty("stderr").GetDouble();

        using var model = LlamaModel.Load(RefData.Require("stories260K/stories260K-f32.gguf"), new ModelOptions { Threads = 2 });
        // Same settings as recorded: -c 256 -b 256, F16 KV cache, every chunk.
        var result = Perplexity.Compute(model, text, contextSize: 256, batchSize: 256, kvType: KvCacheType.F16);
        Assert.Equal(doc.RootElement.GetProperty("settings").GetProperty("chunks").GetInt32(), result.Chunks);
        Assert.True(Math.Abs(result.Perplexity - ppl) / ppl < 0.005, $"PPL {result.Perplexity} vs llama.cpp {ppl}");
        Assert.True(Math.Abs(result.StandardError - stderr) / stderr < 0.05, $"stderr {result.StandardError} vs llama.cpp {stderr}");
    }

    [SkippableFact]
    public void ChunkLimitAndProgressAreHonoured()
    {
        string text = File.ReadAllText(RefData.Require("corpus/tinystories/tinystories-valid-head.txt"))[..20000];
        using var model = LlamaModel.Load(RefData.Require("stories260K/stories260K-q8_0.gguf"), new ModelOptions { Threads = 2 });
        var seen = new List<int>();
        var result = Perplexity.Compute(model, text, contextSize: 128, maxChunks: 3, progress: p => seen.Add(p.Chunk));
        Assert.Equal(3, result.Chunks);
        Assert.Equal(new[] { 1, 2, 3 }, seen);
        Assert.Equal(3 * 63, result.TokensScored); // the second half of each chunk, less its last position
        Assert.InRange(result.Perplexity, 1.5, 50);
        Assert.Throws<ArgumentException>(() => Perplexity.Compute(model, "too short", contextSize: 128));
    }
}
