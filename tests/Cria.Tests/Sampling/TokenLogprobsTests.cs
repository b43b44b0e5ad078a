using Cria.Sampling;
using Xunit;

namespace Cria.Tests.Sampling;

public class TokenLogprobsTests
{
    [Fact]
    public void LogprobsAreTheLogSoftmaxAndTopIsSortedBestFirst()
    {
        var rng = new Random(3);
        var logits = new float[1000];
        for (int i = 0; i < logits.Length; i++) logits[i] = (float)(rng.NextDouble() * 20 - 10);
        logits[123] = logits[456] = 15f; // a tie at the top keeps the lower id first

        var result = TokenLogprobs.Compute(logits, 77, 5);

        // Reference in double precision.
        double max = logits.Max(), z = logits.Sum(l => Math.Exp(l - max));
        double Expected(int id) => logits[id] - max - Math.Log(z);
        Assert.Equal(77, result.Token);
        Assert.Equal(Expected(77), result.Logprob, 4);
        var expectedTop = Enumerable.Range(0, logits.Length).OrderByDescending(i => logits[i]).ThenBy(i => i).Take(5).ToArray();
        Assert.Equal(expectedTop, result.Top.Select(t => t.Token).ToArray());
        foreach (var (id, lp) in result.Top) Assert.Equal(Expected(id), lp, 4);
        // Probabilities of all tokens sum to one.
        double total = Enumerable.Range(0, logits.Length).Sum(i => Math.Exp(TokenLogprobs.Compute(logits, i, 0).Logprob));
        Assert.Equal(1.0, total, 3);
    }

    [Fact]
    public void ArgumentsAreChecked()
    {
        var logits = new float[] { 1, 2, 3 };
        Assert.Throws<ArgumentOutOfRangeException>(() => TokenLogprobs.Compute(logits, 3, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => TokenLogprobs.Compute(logits, 0, 21));
        Assert.Equal(3, TokenLogprobs.Compute(logits, 0, 20).Top.Count);
    }
}
