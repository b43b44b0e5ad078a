using Cria.Sampling;
using Xunit;

namespace Cria.Tests.Sampling;

public class SamplingPrimitivesTests
{
    [Fact]
    public void SplitMix64_MatchesReferenceVector()
    {
        // Outputs of the reference splitmix64.c starting from state 0.
        ulong state = 0;
        Assert.Equal(0xE220A8397B1DCDAFUL, Xoshiro256StarStar.SplitMix64(ref state));
        Assert.Equal(0x6E789E6AA1B965F4UL, Xoshiro256StarStar.SplitMix64(ref state));
        Assert.Equal(0x06C45D188009454FUL, Xoshiro256StarStar.SplitMix64(ref state));
    }

    [Fact]
    public void Xoshiro256StarStar_MatchesReferenceVector()
    {
        // Outputs of the reference xoshiro256starstar.c from state {1, 2, 3, 4}.
        var rng = new Xoshiro256StarStar(1, 2, 3, 4);
        ulong[] expected = [11520UL, 0UL, 1509978240UL, 1215971899390074240UL, 1216172134540287360UL, 607988272756665600UL];
        foreach (ulong e in expected)
            Assert.Equal(e, rng.NextUInt64());
    }

    [Fact]
    public void Xoshiro256StarStar_SeededFromSplitMix64()
    {
        ulong sm = 42;
        var explicitState = new Xoshiro256StarStar(
            Xoshiro256StarStar.SplitMix64(ref sm), Xoshiro256StarStar.SplitMix64(ref sm),
            Xoshiro256StarStar.SplitMix64(ref sm), Xoshiro256StarStar.SplitMix64(ref sm));
        var seeded = new Xoshiro256StarStar(42);
        for (int i = 0; i < 100; i++)
            Assert.Equal(explicitState.NextUInt64(), seeded.NextUInt64());
    }

    [Fact]
    public void NextDouble_IsInUnitInterval()
    {
        var rng = new Xoshiro256StarStar(7);
        double sum = 0;
        const int n = 100_000;
        for (int i = 0; i < n; i++)
        {
            double u = rng.NextDouble();
            Assert.InRange(u, 0.0, 1.0 - 1e-17);
            sum += u;
        }
        // Mean of U[0,1): 1/2 with standard deviation sqrt(1/12/n) ≈ 0.0009; allow 5 sigma.
        Assert.InRange(sum / n, 0.5 - 5 * Math.Sqrt(1.0 / 12 / n), 0.5 + 5 * Math.Sqrt(1.0 / 12 / n));
    }

    [Fact]
    public void SelectTop_MatchesFullSort()
    {
        var rng = new Xoshiro256StarStar(3);
        foreach (int n in new[] { 1, 2, 7, 100, 1000 })
        {
            foreach (int k in new[] { 1, 2, 5, 40, 256, n - 1, n, n + 3 })
            {
                if (k <= 0) continue;
                var items = new TokenCandidate[n];
                for (int i = 0; i < n; i++)
                    items[i] = new TokenCandidate(i, (int)(rng.NextDouble() * 20) - 10, 0f); // many ties

                // Shuffle so ids are not in order.
                for (int i = n - 1; i > 0; i--)
                {
                    int j = (int)(rng.NextDouble() * (i + 1));
                    (items[i], items[j]) = (items[j], items[i]);
                }

                var reference = items.OrderByDescending(c => c.Logit).ThenBy(c => c.Id).ToArray();
                CandidateSelection.SelectTop(items, k);
                int kk = Math.Min(k, n);
                for (int i = 0; i < kk; i++)
                {
                    Assert.Equal(reference[i].Id, items[i].Id);
                    Assert.Equal(reference[i].Logit, items[i].Logit);
                }
                // The rest is a permutation of the remaining entries.
                Assert.Equal(reference.Skip(kk).Select(c => c.Id).Order(), items.Skip(kk).Select(c => c.Id).Order());
            }
        }
    }

    [Fact]
    public void SelectByMass_KeepsSmallestBestSetReachingTarget()
    {
        var rng = new Xoshiro256StarStar(5);
        foreach (int n in new[] { 1, 3, 17, 100, 3000 })
        {
            foreach (double target in new[] { 0.05, 0.3, 0.5, 0.9, 0.99, 1.5 })
            {
                var items = new TokenCandidate[n];
                double total = 0;
                for (int i = 0; i < n; i++)
                {
                    // Integer-valued logits give ties. The float probabilities have 24-bit mantissas of
                    // similar magnitude, so their double sums are exact in any order and the expected
                    // count does not depend on the summation order.
                    int level = (int)(rng.NextDouble() * 8);
                    items[i] = new TokenCandidate(i, level, 0f);
                    total += level + 1;
                }
                for (int i = 0; i < n; i++)
                    items[i].P = (float)((items[i].Logit + 1) / total);
                for (int i = n - 1; i > 0; i--)
                {
                    int j = (int)(rng.NextDouble() * (i + 1));
                    (items[i], items[j]) = (items[j], items[i]);
                }

                var sorted = items.OrderByDescending(c => c.Logit).ThenBy(c => c.Id).ToArray();
                double cum = 0.125;
                int expected = n;
                for (int i = 0; i < n; i++)
                {
                    cum += sorted[i].P;
                    if (cum >= target) { expected = i + 1; break; }
                }

                int m = CandidateSelection.SelectByMass(items, 0.125, target);
                Assert.Equal(expected, m);
                Assert.Equal(sorted.Take(m).Select(c => c.Id).Order(), items.Take(m).Select(c => c.Id).Order());
            }
        }
    }

    [Fact]
    public void Softmax_MatchesDoubleReference()
    {
        float[] logits = [1f, 2f, 3f, -4f, 0.5f, 10f];
        foreach (float t in new[] { 1f, 0.5f, 2f })
        {
            var p = new float[logits.Length];
            Softmax.Compute(logits, p, t);
            double max = logits.Max() / (double)t;
            double z = logits.Sum(l => Math.Exp(l / (double)t - max));
            for (int i = 0; i < logits.Length; i++)
                Assert.Equal(Math.Exp(logits[i] / (double)t - max) / z, p[i], 1e-6);
            Assert.Equal(1.0, p.Sum(x => (double)x), 1e-6);
        }
    }

    [Fact]
    public void Softmax_HandlesInfinitiesAndNaN()
    {
        var p = new float[4];
        Softmax.Compute([float.PositiveInfinity, 1f, float.PositiveInfinity, float.NaN], p);
        Assert.Equal([0.5f, 0f, 0.5f, 0f], p);

        Softmax.Compute([float.NegativeInfinity, float.NegativeInfinity, float.NegativeInfinity, float.NegativeInfinity], p);
        Assert.Equal([0.25f, 0.25f, 0.25f, 0.25f], p);

        Softmax.Compute([float.NegativeInfinity, 3f, float.NegativeInfinity, float.NaN], p);
        Assert.Equal([0f, 1f, 0f, 0f], p);

        Assert.Throws<ArgumentException>(() => Softmax.Compute([1f, 2f], new float[3]));
        Assert.Throws<ArgumentException>(() => Softmax.Compute([1f, 2f], new float[2], 0f));
        Assert.Throws<ArgumentException>(() => Softmax.Compute([], []));
    }
}
