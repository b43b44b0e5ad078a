using Cria.Model;
using Xunit;
using Xunit.Abstractions;

namespace Cria.Tests.Model;

/// <summary>
/// Cria's forward pass against llama.cpp's golden logits for stories260K (refdata/README.md,
/// "Golden outputs"). The prompt goes through in one batch, then the golden generated tokens are
/// fed back one at a time (teacher forcing), so every recorded row can be compared even past a
/// near-tie where free-running greedy decoding might legitimately diverge.
/// </summary>
public class GoldenLogitsTests
{
    private readonly ITestOutputHelper _out;
    public GoldenLogitsTests(ITestOutputHelper output) => _out = output;

    private sealed record Result(float MaxPromptDiff, float MaxGenDiff, double MeanPromptDiff, int GreedyAgree, int Compared);

    /// <summary>
    /// Evaluates every golden prompt in one batch and compares all rows; feeds the golden tokens
    /// back (teacher forcing) and compares every generation row; and separately runs free greedy
    /// decoding, whose tokens must equal llama.cpp's up to the first step whose golden top-2 margin
    /// is below <paramref name="nearTie"/>(largest measured difference) — there a difference of that
    /// size may pick the other token. One model load, one pass over the logits.
    /// </summary>
    private static Result Compare(string model, string golden, KvCacheType kv, Func<float, float> nearTie)
    {
        var cases = GoldenData.Load(RefData.Require(golden));
        using var llama = LlamaModel.Load(RefData.Require(model), new ModelOptions { Threads = 2 });
        float maxPrompt = 0, maxGen = 0;
        double sumPrompt = 0;
        long countPrompt = 0;
        int agree = 0, compared = 0;
        foreach (var c in cases)
        {
            Assert.Equal(c.Tokens, llama.Tokenizer.Encode(c.Prompt, addSpecial: true));
            int V = llama.Config.VocabularySize;
            using (var ctx = llama.CreateContext(new ContextOptions { ContextSize = 512, BatchSize = 512, KvCacheType = kv }))
            {
                float[] prompt = ctx.EvaluateAll(c.Tokens);
                for (int i = 0; i < c.Tokens.Length; i++)
                    for (int j = 0; j < V; j++)
                    {
                        float d = Math.Abs(prompt[i * V + j] - c.PromptLogits[i][j]);
                        maxPrompt = Math.Max(maxPrompt, d);
                        sumPrompt += d;
                        countPrompt++;
                    }
                float[] row = prompt[((c.Tokens.Length - 1) * V)..(c.Tokens.Length * V)];
                for (int k = 0; k < c.GeneratedTokens.Length; k++)
                {
                    if (k > 0) row = ctx.Evaluate(new[] { c.GeneratedTokens[k - 1] }).ToArray();
                    if (c.GenerationLogits != null)
                        for (int j = 0; j < V; j++) maxGen = Math.Max(maxGen, Math.Abs(row[j] - c.GenerationLogits[k][j]));
                    else
                    {
                        var (ids, logits) = c.GenerationTop![k];
                        for (int t = 0; t < ids.Length; t++) maxGen = Math.Max(maxGen, Math.Abs(row[ids[t]] - logits[t]));
                    }
                }
            }
        }

        // Free-running greedy decoding, as llama.cpp generated the golden tokens.
        float margin = nearTie(Math.Max(maxPrompt, maxGen));
        foreach (var c in cases)
        {
            int V = llama.Config.VocabularySize;
            int tie = GoldenData.FirstNearTie(c, margin);
            using (var ctx = llama.CreateContext(new ContextOptions { ContextSize = 512, BatchSize = 512, KvCacheType = kv }))
            {
                var logitsRow = ctx.Evaluate(c.Tokens).ToArray();
                for (int k = 0; k < tie; k++)
                {
                    int argmax = 0;
                    for (int j = 1; j < V; j++) if (logitsRow[j] > logitsRow[argmax]) argmax = j;
                    compared++;
                    if (argmax != c.GeneratedTokens[k]) break;
                    agree++;
                    logitsRow = ctx.Evaluate(new[] { argmax }).ToArray();
                }
            }
        }
        return new Result(maxPrompt, maxGen, sumPrompt / countPrompt, agree, compared);
    }

    /// <summary>
    /// How much llama.cpp's own logits move when it computes at this precision instead of F32
    /// weights with an F32 cache: the largest and the mean |Δ| over all golden prompt rows.
    /// </summary>
    private static (float Max, double Mean) PrecisionEffect(string golden)
    {
        var exact = GoldenData.Load(RefData.Require("stories260K/golden-f32-kvf32.json"));
        var other = GoldenData.Load(RefData.Require(golden));
        float max = 0;
        double sum = 0;
        long n = 0;
        for (int c = 0; c < exact.Length; c++)
            for (int i = 0; i < exact[c].PromptLogits.Length; i++)
                for (int j = 0; j < exact[c].PromptLogits[i].Length; j++)
                {
                    float d = Math.Abs(exact[c].PromptLogits[i][j] - other[c].PromptLogits[i][j]);
                    max = Math.Max(max, d);
                    sum += d;
                    n++;
                }
        return (max, sum / n);
    }

    private void Report(string what, Result r) =>
        _out.WriteLine($"{what}: max |Δlogit| prompt {r.MaxPromptDiff:G3} (mean {r.MeanPromptDiff:G3}), generation {r.MaxGenDiff:G3}; free greedy {r.GreedyAgree}/{r.Compared} before the first near-tie");

    [SkippableFact]
    public void F32ModelWithF32CacheMatchesWithin1e3()
    {
        // F32 weights and cache: the same float operations as llama.cpp (the kernels follow ggml's
        // summation order), so the logits agree to a few float ulps; the issue asks for 1e-3.
        // Near-tie: refdata reports a 0.0023 margin where rounding alone flips the choice.
        var r = Compare("stories260K/stories260K-f32.gguf", "stories260K/golden-f32-kvf32.json", KvCacheType.F32, nearTie: _ => 0.01f);
        Report("f32/kv f32", r);
        Assert.True(r.MaxPromptDiff < 1e-3f, $"prompt logits differ by {r.MaxPromptDiff}");
        Assert.True(r.MaxGenDiff < 1e-3f, $"generation logits differ by {r.MaxGenDiff}");
        Assert.Equal(r.Compared, r.GreedyAgree);
        Assert.True(r.Compared > 300, $"only {r.Compared} greedy steps compared");
    }

    /// <summary>
    /// The lossy formats are compared against llama.cpp at the same precision. Cria's kernels
    /// reproduce ggml's arithmetic (same activation quantization, same rounding to F16, same block
    /// dot products and summation orders where we know them), so rows agree to a few float ulps
    /// until a single rounding decision goes the other way: a value lands on the other side of an
    /// F16 or 8-bit quantization step because an input differed in its last bit (or, for Q4_0,
    /// because llama.cpp's repacked q4_0_8x8 kernels sum in another order). From that row on the
    /// step propagates. A flip is one of the many roundings whose total effect is llama.cpp's own
    /// change between this precision and F32 (<see cref="PrecisionEffect"/>), so we require every
    /// difference to stay below that effect. This is an argument, not a proof, and it is not tight:
    /// the F16 file uses 86% of it (0.0215 of 0.025), Q8_0 24%, Q4_0 7%. It bounds Cria's error by
    /// the precision's own noise and cannot see errors smaller than that, which is why the F32 test
    /// above and the bit-exact kernel tests carry the tight checks. (The mean difference is
    /// reported but not asserted: no bound for it follows from the arithmetic.)
    /// Free greedy tokens must agree until the golden margin is below twice the largest difference
    /// measured for this file (only there can a difference of that size change the argmax).
    /// </summary>
    [SkippableTheory]
    [InlineData("f32", "f32-kvf16")]
    [InlineData("f16", "f16-kvf16")]
    [InlineData("q8_0", "q8_0-kvf16")]
    [InlineData("q4_0", "q4_0-kvf16")]
    public void LowerPrecisionMatchesLlamaCppAtTheSamePrecision(string model, string golden)
    {
        var effect = PrecisionEffect($"stories260K/golden-{golden}.json");
        float tolerance = effect.Max;
        string modelPath = $"stories260K/stories260K-{model}.gguf", goldenPath = $"stories260K/golden-{golden}.json";
        var r = Compare(modelPath, goldenPath, KvCacheType.F16, nearTie: measured => 2 * measured);
        Report($"{model} ({golden}); llama.cpp's own precision effect max {effect.Max:G3}, mean {effect.Mean:G3}", r);
        Assert.True(r.MaxPromptDiff < tolerance, $"prompt logits differ by {r.MaxPromptDiff} (tolerance {tolerance})");
        Assert.True(r.MaxGenDiff < tolerance, $"generation logits differ by {r.MaxGenDiff} (tolerance {tolerance})");
        Assert.Equal(r.Compared, r.GreedyAgree);
        Assert.True(r.Compared > 0, "no greedy step before the first near-tie");
    }
}
