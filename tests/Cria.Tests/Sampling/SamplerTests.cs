using Cria.Sampling;
using Xunit;

namespace Cria.Tests.Sampling;

public class SamplerTests
{
    /// <summary>Temperature 1 and every truncation step disabled: the draw is from softmax(logits).</summary>
    private static readonly SamplerOptions Plain = new()
    {
        Temperature = 1f, TopK = 0, TopP = 1f, MinP = 0f, Seed = 1,
    };

    private static float[] RandomLogits(ulong seed, int n, float scale = 4f, bool integer = false)
    {
        var rng = new Xoshiro256StarStar(seed);
        var logits = new float[n];
        for (int i = 0; i < n; i++)
        {
            float v = (float)((rng.NextDouble() * 2 - 1) * scale);
            logits[i] = integer ? MathF.Round(v) : v;
        }
        return logits;
    }

    private static float[] LogitsFromProbabilities(params double[] p) => p.Select(x => (float)Math.Log(x)).ToArray();

    private static int[] KeptIds(Sampler s) => s.Candidates.ToArray().Select(c => c.Id).Order().ToArray();

    private static float LogitOf(Sampler s, int id)
    {
        foreach (var c in s.Candidates)
            if (c.Id == id) return c.Logit;
        throw new InvalidOperationException($"token {id} is not a candidate");
    }

    // ---------------------------------------------------------------- greedy / top-k

    [Fact]
    public void Greedy_PicksArgmax_LowestIdOnTies()
    {
        var s = new Sampler(SamplerOptions.Greedy, 6, 16);
        Assert.Equal(1, s.Sample([1f, 5f, 3f, 5f, -2f, 4.9f]));
        Assert.Equal(3, s.Sample([1f, 5f, 3f, 6f, -2f, 6f]));
        Assert.Equal(0, s.Sample([2f, 2f, 2f, 2f, 2f, 2f]));
        Assert.Equal(4, s.Sample([float.NaN, -1f, -3f, float.NaN, -0.5f, -0.7f]));
        Assert.Equal(2, s.Sample([float.NegativeInfinity, 0f, float.PositiveInfinity, 1f, float.PositiveInfinity, 2f]));

        // Negative temperature is greedy too, and greedy ignores the seed.
        var neg = new Sampler(new SamplerOptions { Temperature = -0.5f }, 6, 16);
        Assert.Equal(1, neg.Sample([1f, 5f, 3f, 5f, -2f, 4.9f]));
    }

    [Fact]
    public void Greedy_OnLargeRandomVocabulary_IsArgmax()
    {
        var s = new Sampler(SamplerOptions.Greedy, 32000, 16);
        for (ulong seed = 1; seed <= 20; seed++)
        {
            float[] logits = RandomLogits(seed, 32000, integer: true); // many ties
            float max = logits.Max();
            Assert.Equal(Array.IndexOf(logits, max), s.Sample(logits));
        }
    }

    [Theory]
    [InlineData(0.05f)]
    [InlineData(0.8f)]
    [InlineData(1f)]
    [InlineData(3f)]
    [InlineData(100f)]
    public void TopK1_EqualsGreedy_AtAnyTemperature(float temperature)
    {
        const int vocab = 500;
        var greedy = new Sampler(SamplerOptions.Greedy, vocab, 64);
        var topK1 = new Sampler(new SamplerOptions { Temperature = temperature, TopK = 1, Seed = 5 }, vocab, 64);
        var topK1NoFilters = new Sampler(
            new SamplerOptions { Temperature = temperature, TopK = 1, TopP = 1f, MinP = 0f }, vocab, 64);
        for (ulong seed = 1; seed <= 50; seed++)
        {
            float[] logits = RandomLogits(seed, vocab, integer: seed % 2 == 0); // even seeds: ties
            int expected = greedy.Sample(logits);
            Assert.Equal(expected, topK1.Sample(logits));
            Assert.Equal(expected, topK1NoFilters.Sample(logits));
        }
    }

    [Fact]
    public void TopK_KeepsTheKHighestLogits_LowestIdsOnTies()
    {
        float[] logits = [0f, 3f, 1f, 3f, 2f, -1f, 2f, 5f];
        var s = new Sampler(Plain with { TopK = 4 }, logits.Length, 16);
        s.Sample(logits);
        // 5 (id 7), 3 (ids 1, 3), then the tie at 2 between ids 4 and 6 goes to id 4.
        Assert.Equal([1, 3, 4, 7], KeptIds(s));
        Assert.Equal([7, 1, 3, 4], s.Candidates.ToArray().Select(c => c.Id).ToArray()); // best first
        Assert.Equal(1.0, s.Candidates.ToArray().Sum(c => (double)c.P), 1e-6);
    }

    // ---------------------------------------------------------------- seeds and determinism

    private static int[] Generate(Sampler s, int count, ulong logitsSeed)
    {
        var tokens = new int[count];
        float[] logits = RandomLogits(logitsSeed, s.VocabSize, scale: 1.5f);
        for (int i = 0; i < count; i++)
        {
            tokens[i] = s.SampleAndAccept(logits);
            logits[(i * 7) % logits.Length] += 0.25f; // the "model" drifts a little
        }
        return tokens;
    }

    [Fact]
    public void SameSeed_GivesSameSequence()
    {
        var options = new SamplerOptions { Seed = 1234, RepeatPenalty = 1.1f, FrequencyPenalty = 0.1f };
        int[] a = Generate(new Sampler(options, 200, 512), 500, 9);
        int[] b = Generate(new Sampler(options, 200, 512), 500, 9);
        Assert.Equal(a, b);
        Assert.True(a.Distinct().Count() > 20, "the test distribution should be far from deterministic");
    }

    [Fact]
    public void DifferentSeeds_GiveDifferentSequences()
    {
        var options = new SamplerOptions { RepeatPenalty = 1.1f };
        var sequences = new List<int[]>();
        for (ulong seed = 0; seed < 8; seed++)
            sequences.Add(Generate(new Sampler(options with { Seed = seed }, 200, 512), 500, 9));

        for (int i = 0; i < sequences.Count; i++)
        {
            for (int j = i + 1; j < sequences.Count; j++)
            {
                int differing = sequences[i].Zip(sequences[j]).Count(p => p.First != p.Second);
                Assert.True(differing > 250, $"seeds {i} and {j} differ in only {differing} of 500 draws");
            }
        }
    }

    [Fact]
    public void Seed_IsReported_AndRandomWhenNotGiven()
    {
        Assert.Equal(77UL, new Sampler(new SamplerOptions { Seed = 77 }, 10, 16).Seed);

        var x = new Sampler(new SamplerOptions(), 10, 16);
        var y = new Sampler(new SamplerOptions(), 10, 16);
        Assert.NotEqual(x.Seed, y.Seed); // 2^-64 chance of a false failure

        // The reported seed reproduces the random sampler.
        int[] fromRandom = Generate(x, 100, 3);
        int[] replay = Generate(new Sampler(new SamplerOptions { Seed = x.Seed }, 10, 16), 100, 3);
        Assert.Equal(fromRandom, replay);
    }

    [Fact]
    public void Reset_ReplaysTheSequence_AndForgetsHistory()
    {
        var options = new SamplerOptions { Seed = 99, RepeatPenalty = 1.3f, PresencePenalty = 0.2f };
        var s = new Sampler(options, 300, 256);
        int[] first = Generate(s, 200, 4);
        s.Reset();
        int[] second = Generate(s, 200, 4);
        Assert.Equal(first, second);
        Assert.Equal(99UL, s.Seed);

        // Without a configured seed, Reset draws a fresh one.
        var r = new Sampler(new SamplerOptions(), 10, 16);
        ulong before = r.Seed;
        r.Reset();
        Assert.NotEqual(before, r.Seed);
    }

    [Fact]
    public void FixedSeed_GivesPinnedTokens()
    {
        // Guards the cross-platform/cross-version promise: xoshiro256** + the draw procedure must not change.
        float[] logits = [0.1f, 1.2f, -0.3f, 0.8f, 0.0f, 1.0f, -1.0f, 0.5f];
        var s = new Sampler(Plain with { Seed = 2024 }, logits.Length, 16);
        var tokens = new int[24];
        for (int i = 0; i < tokens.Length; i++)
            tokens[i] = s.Sample(logits);
        Assert.Equal(PinnedTokens, tokens);
    }

    // Reproduced independently by a Python transcription of SplitMix64 + xoshiro256** + the draw rule.
    private static readonly int[] PinnedTokens = [0, 5, 0, 1, 5, 1, 3, 1, 3, 0, 5, 7, 7, 2, 5, 1, 0, 5, 5, 3, 5, 1, 1, 3];

    // ---------------------------------------------------------------- distribution

    private static void AssertEmpiricalMatches(Sampler s, float[] logits, double[] expected, int draws)
    {
        var counts = new int[logits.Length];
        for (int i = 0; i < draws; i++)
            counts[s.Sample(logits)]++;

        for (int i = 0; i < logits.Length; i++)
        {
            // Each count is Binomial(draws, p): mean draws*p, sd sqrt(draws*p*(1-p)). Allow 5 sd
            // (two-sided false-failure rate ≈ 6e-7 per token; the seed is fixed anyway).
            double mean = draws * expected[i];
            double sd = Math.Sqrt(draws * expected[i] * (1 - expected[i]));
            Assert.True(Math.Abs(counts[i] - mean) <= 5 * sd,
                $"token {i}: {counts[i]} draws, expected {mean:F1} ± {5 * sd:F1}");
        }
    }

    [Fact]
    public void Distribution_AtTemperature1_WithoutTruncation_MatchesSoftmax()
    {
        float[] logits = [2.0f, 1.0f, 0.5f, 0.0f, -0.5f, -1.0f, 1.5f, -3.0f, 0.25f, 3.0f];
        double max = logits.Max();
        double z = logits.Sum(l => Math.Exp(l - max));
        double[] expected = logits.Select(l => Math.Exp(l - max) / z).ToArray();

        AssertEmpiricalMatches(new Sampler(Plain with { Seed = 42 }, logits.Length, 16), logits, expected, 20000);
    }

    [Fact]
    public void Distribution_WithTopKAndTemperature_MatchesRenormalizedSoftmax()
    {
        float[] logits = [2.0f, 1.0f, 0.5f, 0.0f, -0.5f, -1.0f, 1.5f, -3.0f, 0.25f, 3.0f];
        const float temperature = 0.7f;
        int[] top4 = [9, 0, 6, 1];
        double z = top4.Sum(i => Math.Exp(logits[i] / temperature));
        double[] expected = new double[logits.Length];
        foreach (int i in top4) expected[i] = Math.Exp(logits[i] / temperature) / z;

        var s = new Sampler(Plain with { Seed = 43, TopK = 4, Temperature = temperature }, logits.Length, 16);
        AssertEmpiricalMatches(s, logits, expected, 20000);
    }

    // ---------------------------------------------------------------- top-p

    [Theory]
    [InlineData(0.40f, new[] { 1 })]          // 0.5 >= 0.4
    [InlineData(0.70f, new[] { 1, 3 })]       // 0.5 + 0.25 = 0.75 >= 0.7
    [InlineData(0.80f, new[] { 0, 1, 3 })]    // + 0.1: tie between ids 0 and 4 goes to the lower id
    [InlineData(0.90f, new[] { 0, 1, 3, 4 })] // 0.95
    [InlineData(0.99f, new[] { 0, 1, 2, 3, 4 })]
    [InlineData(1.00f, new[] { 0, 1, 2, 3, 4 })]
    public void TopP_KeepsMinimalSetReachingP(float topP, int[] expectedKept)
    {
        float[] logits = LogitsFromProbabilities(0.1, 0.5, 0.05, 0.25, 0.1);
        var s = new Sampler(Plain with { TopP = topP }, logits.Length, 16);
        s.Sample(logits);
        Assert.Equal(expectedKept, KeptIds(s));
        Assert.Equal(1.0, s.Candidates.ToArray().Sum(c => (double)c.P), 1e-6);

        // Sampling never leaves the kept set.
        for (int i = 0; i < 2000; i++)
            Assert.Contains(s.Sample(logits), expectedKept);
    }

    [Theory]
    [InlineData(0.3f)]
    [InlineData(0.9f)]
    [InlineData(0.999f)]
    public void TopP_OnLargeUnsortedVocabulary_MatchesBruteForce(float topP)
    {
        // A flat distribution so the kept set is far larger than the first partial sort (256).
        const int vocab = 5000;
        float[] logits = RandomLogits(11, vocab, scale: 1f);
        var probs = new float[vocab];
        Softmax.Compute(logits, probs);

        int[] order = Enumerable.Range(0, vocab).OrderByDescending(i => logits[i]).ThenBy(i => i).ToArray();
        double cumulative = 0;
        int keep = vocab;
        for (int i = 0; i < vocab; i++)
        {
            cumulative += probs[order[i]];
            if (cumulative >= topP) { keep = i + 1; break; }
        }
        int[] expected = order.Take(keep).Order().ToArray();
        Assert.True(keep > 256 || topP < 0.5f);

        var s = new Sampler(Plain with { TopP = topP }, vocab, 16);
        s.Sample(logits);
        Assert.Equal(expected, KeptIds(s));
    }

    // ---------------------------------------------------------------- min-p

    [Theory]
    [InlineData(0)]  // unsorted path
    [InlineData(5)]  // sorted path (after top-k)
    public void MinP_DropsTokensBelowMinPTimesMax(int topK)
    {
        // p_max = 0.4, so min-p 0.05 keeps p >= 0.02: 0.021 stays, 0.019 goes.
        float[] logits = LogitsFromProbabilities(0.4, 0.2, 0.019, 0.021, 0.36);
        var s = new Sampler(Plain with { TopK = topK, MinP = 0.05f }, logits.Length, 16);
        s.Sample(logits);
        Assert.Equal([0, 1, 3, 4], KeptIds(s));

        var strict = new Sampler(Plain with { TopK = topK, MinP = 0.6f }, logits.Length, 16);
        strict.Sample(logits);
        Assert.Equal([0, 4], KeptIds(strict)); // 0.36 / 0.4 = 0.9 >= 0.6; 0.2 / 0.4 = 0.5 < 0.6

        var one = new Sampler(Plain with { TopK = topK, MinP = 1f }, logits.Length, 16);
        one.Sample(logits);
        Assert.Equal([0], KeptIds(one));

        for (int i = 0; i < 3000; i++)
            Assert.NotEqual(2, s.Sample(logits));
    }

    [Fact]
    public void MinP_UsesTemperature1Probabilities()
    {
        // llama.cpp applies min-p before the temperature: a high temperature must not rescue token 2.
        float[] logits = LogitsFromProbabilities(0.4, 0.2, 0.019, 0.021, 0.36);
        var s = new Sampler(Plain with { MinP = 0.05f, Temperature = 5f }, logits.Length, 16);
        s.Sample(logits);
        Assert.Equal([0, 1, 3, 4], KeptIds(s));
        Assert.Equal(logits[0] / 5f, LogitOf(s, 0));
    }

    // ---------------------------------------------------------------- penalties

    [Fact]
    public void RepeatPenalty_DividesPositive_MultipliesNegative_OnlyInsideWindow()
    {
        float[] logits = [2f, -2f, 0f, 3f, 1.5f, -0.75f];
        var s = new Sampler(Plain with { RepeatPenalty = 1.5f, PenaltyLastN = 3 }, logits.Length, 64);
        Assert.Equal(3, s.PenaltyWindow);

        s.Accept(0);
        s.Accept(1);
        s.Accept(2);
        s.Accept(3); // the window now holds 1, 2, 3: token 0 has left it
        s.Accept(3); // window 2, 3, 3: token 1 has left too

        s.Sample(logits);
        Assert.Equal(2f, LogitOf(s, 0));          // out of the window: unpenalized
        Assert.Equal(-2f, LogitOf(s, 1));         // out of the window: unpenalized
        Assert.Equal(0f * 1.5f, LogitOf(s, 2));   // zero counts as non-positive: multiplied
        Assert.Equal(3f / 1.5f, LogitOf(s, 3));   // once, although seen twice
        Assert.Equal(1.5f, LogitOf(s, 4));        // never accepted
        Assert.Equal(-0.75f, LogitOf(s, 5));

        s.Accept(1); // window 3, 3, 1
        s.Accept(5); // window 3, 1, 5
        s.Sample(logits);
        Assert.Equal(0f, LogitOf(s, 2));
        Assert.Equal(-2f * 1.5f, LogitOf(s, 1));
        Assert.Equal(-0.75f * 1.5f, LogitOf(s, 5));
        Assert.Equal(3f / 1.5f, LogitOf(s, 3));
    }

    [Fact]
    public void RepeatPenalty_ChangesGreedyChoice_UntilTokenLeavesWindow()
    {
        float[] logits = [5f, 4f, 1f];
        var s = new Sampler(SamplerOptions.Greedy with { RepeatPenalty = 2f, PenaltyLastN = 3 }, 3, 64);
        Assert.Equal(0, s.Sample(logits));
        s.Accept(0);
        Assert.Equal(1, s.Sample(logits));    // 5 / 2 = 2.5 < 4
        s.Accept(2);
        s.Accept(2);
        Assert.Equal(1, s.Sample(logits));    // token 0 is still in the window (0, 2, 2)
        s.Accept(2);
        Assert.Equal(0, s.Sample(logits));    // window (2, 2, 2): token 0 is no longer penalized
    }

    [Fact]
    public void FrequencyAndPresencePenalties_SubtractExactly()
    {
        float[] logits = [1f, -1f, 2.5f, 0.3f, 4f, -2f];
        const float frequency = 0.25f, presence = 0.5f, repeat = 1.25f;
        var s = new Sampler(Plain with { FrequencyPenalty = frequency, PresencePenalty = presence, PenaltyLastN = 8 },
            logits.Length, 64);
        int[] history = [2, 4, 2, 2, 5];
        foreach (int t in history) s.Accept(t);
        s.Sample(logits);

        Assert.Equal(logits[0], LogitOf(s, 0));
        Assert.Equal(logits[1], LogitOf(s, 1));
        Assert.Equal(logits[2] - (3 * frequency + presence), LogitOf(s, 2));
        Assert.Equal(logits[3], LogitOf(s, 3));
        Assert.Equal(logits[4] - (1 * frequency + presence), LogitOf(s, 4));
        Assert.Equal(logits[5] - (1 * frequency + presence), LogitOf(s, 5));

        // Combined with the repetition penalty, which is applied first.
        var c = new Sampler(Plain with
        {
            RepeatPenalty = repeat, FrequencyPenalty = frequency, PresencePenalty = presence, PenaltyLastN = 8,
        }, logits.Length, 64);
        foreach (int t in history) c.Accept(t);
        c.Sample(logits);
        Assert.Equal(logits[2] / repeat - (3 * frequency + presence), LogitOf(c, 2));
        Assert.Equal(logits[4] / repeat - (1 * frequency + presence), LogitOf(c, 4));
        Assert.Equal(logits[5] * repeat - (1 * frequency + presence), LogitOf(c, 5));
        Assert.Equal(logits[0], LogitOf(c, 0));
    }

    [Fact]
    public void FrequencyPenalty_CountsOnlyTokensInsideWindow()
    {
        float[] logits = [1f, 1f, 1f];
        var s = new Sampler(Plain with { FrequencyPenalty = 1f, PenaltyLastN = 4 }, 3, 64);
        foreach (int t in new[] { 0, 0, 0, 0, 0, 1, 1 }) s.Accept(t); // window: 0, 0, 1, 1
        s.Sample(logits);
        Assert.Equal(1f - 2f, LogitOf(s, 0));
        Assert.Equal(1f - 2f, LogitOf(s, 1));
        Assert.Equal(1f, LogitOf(s, 2));
    }

    [Fact]
    public void PenaltyLastN_MinusOne_UsesContextSize_AndZeroDisables()
    {
        float[] logits = [2f, 2f, 2f, 2f, 2f];
        var whole = new Sampler(Plain with { RepeatPenalty = 2f, PenaltyLastN = -1 }, 5, 3);
        Assert.Equal(3, whole.PenaltyWindow);
        foreach (int t in new[] { 0, 1, 2, 3 }) whole.Accept(t); // window of 3: 1, 2, 3
        whole.Sample(logits);
        Assert.Equal(2f, LogitOf(whole, 0));
        Assert.Equal(1f, LogitOf(whole, 1));
        Assert.Equal(1f, LogitOf(whole, 3));

        var off = new Sampler(Plain with { RepeatPenalty = 2f, PresencePenalty = 1f, PenaltyLastN = 0 }, 5, 3);
        Assert.Equal(0, off.PenaltyWindow);
        foreach (int t in new[] { 0, 1, 2, 3 }) off.Accept(t);
        off.Sample(logits);
        Assert.All(off.Candidates.ToArray(), c => Assert.Equal(2f, c.Logit));
    }

    [Fact]
    public void Reset_ClearsPenaltyHistory()
    {
        float[] logits = [2f, 2f];
        var s = new Sampler(Plain with { RepeatPenalty = 2f }, 2, 16);
        s.Accept(0);
        s.Sample(logits);
        Assert.Equal(1f, LogitOf(s, 0));
        s.Reset();
        s.Sample(logits);
        Assert.Equal(2f, LogitOf(s, 0));
    }

    // ---------------------------------------------------------------- argument checks

    [Fact]
    public void Sample_And_Accept_ValidateArguments()
    {
        var s = new Sampler(new SamplerOptions(), 10, 16);
        Assert.Throws<ArgumentException>(() => s.Sample(new float[9]));
        Assert.Throws<ArgumentException>(() => s.Sample(new float[11]));
        Assert.Throws<ArgumentOutOfRangeException>(() => s.Accept(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => s.Accept(10));
        s.Accept(9);
    }

    [Fact]
    public void InfiniteLogits_AreHandled()
    {
        var s = new Sampler(Plain, 4, 16);
        for (int i = 0; i < 200; i++)
        {
            int t = s.Sample([float.PositiveInfinity, 5f, float.PositiveInfinity, float.NaN]);
            Assert.True(t is 0 or 2);
            Assert.InRange(s.Sample([float.NegativeInfinity, float.NegativeInfinity, float.NegativeInfinity, float.NegativeInfinity]), 0, 3);
            Assert.Equal(1, s.Sample([float.NegativeInfinity, 0f, float.NegativeInfinity, float.NaN]));
        }
    }

    // ---------------------------------------------------------------- allocations

    public static TheoryData<string> AllocationCases => new() { "default", "greedy", "no-top-k", "plain" };

    [Theory]
    [MemberData(nameof(AllocationCases))]
    public void Sample_AllocatesNothing_InSteadyState(string name)
    {
        SamplerOptions options = name switch
        {
            "default" => new SamplerOptions { Seed = 1, RepeatPenalty = 1.1f, FrequencyPenalty = 0.1f, PresencePenalty = 0.1f },
            "greedy" => SamplerOptions.Greedy with { RepeatPenalty = 1.1f },
            "no-top-k" => new SamplerOptions { Seed = 2, TopK = 0, MinP = 0f, RepeatPenalty = 1.1f },
            _ => Plain,
        };
        int vocab = name == "no-top-k" ? 4096 : 32000;
        float[] logits = RandomLogits(17, vocab, scale: name == "no-top-k" ? 1f : 8f);
        var s = new Sampler(options, vocab, 4096);

        SteadyState.AllocatesNothing(() =>
        {
            for (int i = 0; i < 1000; i++)
            {
                int t = s.Sample(logits);
                s.Accept(t);
                logits[t] -= 0.01f;
            }
        });
    }
}
