using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Cria.Numerics.Kernels;
using Xunit;

namespace Cria.Tests.Numerics;

/// <summary>
/// Row operations. The public (vector) paths are compared <b>exactly</b> with the scalar twins
/// (same operations, same order, so any difference is a bug), and with float64 references under
/// the tolerances stated per test.
/// </summary>
public unsafe class VectorOpsTests
{
    public static TheoryData<int> Lengths => new() { 1, 7, 31, 32, 33, 255, 4096 + 5 };

    private static float[] RandomFloats(Random rng, int n, float scale)
    {
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)((rng.NextDouble() * 2 - 1) * scale);
        return a;
    }

    private static void AssertBitEqual(float[] expected, float[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i]),
                $"element {i}: expected {expected[i]:R}, got {actual[i]:R}");
    }

    /// <summary>Tolerance 1e-6 relative: mean, sqrt, division and two products are each rounded once in float (≤ ~5 ulp ≈ 3e-7).</summary>
    [Theory]
    [MemberData(nameof(Lengths))]
    public void RmsNorm_VectorEqualsScalar_AndMatchesFloat64(int n)
    {
        var rng = new Random(n);
        var x = RandomFloats(rng, n, 3f);
        var w = RandomFloats(rng, n, 1.5f);
        var simd = new float[n];
        var scalar = new float[n];
        VectorOps.RmsNorm(x, w, 1e-5f, simd);
        VectorOps.RmsNormScalar(x, w, 1e-5f, scalar);
        AssertBitEqual(scalar, simd);

        double ms = x.Sum(v => (double)v * v) / n;
        double s = 1 / Math.Sqrt(ms + 1e-5);
        for (int i = 0; i < n; i++)
        {
            double r = x[i] * s * w[i];
            Assert.True(Math.Abs(simd[i] - r) <= 1e-6 * Math.Abs(r) + 1e-12, $"{i}: {simd[i]} vs {r}");
        }

        // in place (dst aliases x)
        var copy = (float[])x.Clone();
        VectorOps.RmsNorm(copy, w, 1e-5f, copy);
        AssertBitEqual(simd, copy);
    }

    [Fact]
    public void RmsNorm_UsesFloatSquaresSummedInDouble()
    {
        // 1 + 1e-8 squared is exactly representable only in double; ggml squares in float first.
        var x = new float[] { 3e-4f, 1f, 1e-4f };
        var w = new float[] { 1f, 1f, 1f };
        var d = new float[3];
        VectorOps.RmsNorm(x, w, 0f, d);
        double sum = 0;
        foreach (float v in x) sum += v * v; // float product, double sum
        float scale = 1f / MathF.Sqrt((float)(sum / 3));
        Assert.Equal(x[1] * scale * w[1], d[1]);
    }

    /// <summary>
    /// Tolerance 4e-6 of the largest probability: ggml_v_expf is within ~1.5 ulp, the sum is kept
    /// in double and the final scale is one float multiply (a few ulp in total).
    /// </summary>
    [Theory]
    [MemberData(nameof(Lengths))]
    public void Softmax_VectorEqualsScalar_AndMatchesFloat64(int n)
    {
        var rng = new Random(100 + n);
        var x = RandomFloats(rng, n, 20f);
        var simd = (float[])x.Clone();
        var scalar = (float[])x.Clone();
        VectorOps.Softmax(simd);
        VectorOps.SoftmaxScalar(scalar);
        AssertBitEqual(scalar, simd);

        double max = x.Max();
        double sum = x.Sum(v => Math.Exp(v - max));
        for (int i = 0; i < n; i++)
        {
            double p = Math.Exp(x[i] - max) / sum;
            Assert.True(Math.Abs(simd[i] - p) <= 4e-6 * Math.Max(p, 1e-6) + 1e-12, $"{i}: {simd[i]} vs {p}");
        }
        Assert.Equal(1.0, simd.Sum(v => (double)v), 5);
    }

    [Fact]
    public void Softmax_HandlesMaskedEntries()
    {
        var x = new float[] { 1f, float.NegativeInfinity, 2f, float.NegativeInfinity, 0.5f, 3f, -1f, 0f, 4f, float.NegativeInfinity };
        var s = (float[])x.Clone();
        VectorOps.Softmax(s);
        Assert.Equal(0f, s[1]);
        Assert.Equal(0f, s[3]);
        Assert.Equal(0f, s[9]);
        Assert.True(s[8] > s[5]);
        var t = (float[])x.Clone();
        VectorOps.SoftmaxScalar(t);
        AssertBitEqual(t, s);
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void Softmax_PaddedRow_EqualsSoftmaxOfRowPaddedWithMinusInfinity(int n)
    {
        var rng = new Random(400 + n);
        var x = RandomFloats(rng, n, 10f);
        int padded = (n + 31) / 32 * 32; // llama.cpp pads the KV length to 32
        var withPadding = new float[padded];
        Array.Fill(withPadding, float.NegativeInfinity);
        x.CopyTo(withPadding, 0);
        VectorOps.Softmax(withPadding);

        var simd = (float[])x.Clone();
        VectorOps.Softmax(simd, paddedRow: true);
        AssertBitEqual(withPadding.AsSpan(0, n).ToArray(), simd);
        Assert.All(withPadding.AsSpan(n).ToArray(), v => Assert.Equal(0f, v));

        var scalar = (float[])x.Clone();
        VectorOps.SoftmaxScalar(scalar, paddedRow: true);
        AssertBitEqual(simd, scalar);
    }

    /// <summary>Tolerance 4e-6 relative: the exp approximation (~1.5 ulp) plus an add, a division and a multiply.</summary>
    [Theory]
    [MemberData(nameof(Lengths))]
    public void SiluMul_VectorEqualsScalar_AndMatchesFloat64(int n)
    {
        var rng = new Random(200 + n);
        var g = RandomFloats(rng, n, 12f);
        var u = RandomFloats(rng, n, 2f);
        var simd = new float[n];
        var scalar = new float[n];
        VectorOps.SiluMul(g, u, simd);
        VectorOps.SiluMulScalar(g, u, scalar);
        AssertBitEqual(scalar, simd);
        for (int i = 0; i < n; i++)
        {
            double r = g[i] / (1 + Math.Exp(-(double)g[i])) * u[i];
            Assert.True(Math.Abs(simd[i] - r) <= 4e-6 * Math.Abs(r) + 1e-30, $"{i}: {simd[i]} vs {r}");
        }
        // in place into gate
        var gg = (float[])g.Clone();
        VectorOps.SiluMul(gg, u, gg);
        AssertBitEqual(simd, gg);
    }

    [Fact]
    public void SiluMul_RowLength_RestartsTheEightGroupingPerRow()
    {
        // 172 = 21·8 + 4: ggml's per-row silu handles 4 tail elements per row with expf; a
        // concatenated call would group them with the next row's head instead.
        var rng = new Random(7);
        int ff = 172, rows = 3;
        var g = RandomFloats(rng, ff * rows, 8f);
        var u = RandomFloats(rng, ff * rows, 1f);
        var whole = new float[ff * rows];
        VectorOps.SiluMul(g, u, whole, ff);
        var perRow = new float[ff * rows];
        for (int r = 0; r < rows; r++)
            VectorOps.SiluMul(g.AsSpan(r * ff, ff), u.AsSpan(r * ff, ff), perRow.AsSpan(r * ff, ff));
        AssertBitEqual(perRow, whole);
        var scalar = new float[ff * rows];
        VectorOps.SiluMulScalar(g, u, scalar, ff);
        AssertBitEqual(perRow, scalar);
        Assert.Throws<ArgumentException>(() => VectorOps.SiluMul(g, u, whole, 100));
    }

    [SkippableFact]
    public void Exp8_EqualsExpLane_Everywhere_AndIsAccurate()
    {
        Skip.IfNot(CpuFeatures.Avx2Fma, "AVX2+FMA not available");
        var inputs = new List<float> { 0f, -0f, 1f, -1f, 88.7f, 88.8f, 89f, 100f, -87f, -103f, -104f, -150f, -200f,
            float.PositiveInfinity, float.NegativeInfinity, float.NaN, float.MaxValue, float.MinValue, 1e-30f, -1e-30f };
        for (double v = -200; v <= 120; v += 0.01) inputs.Add((float)v);
        var rng = new Random(3);
        for (int i = 0; i < 100000; i++) inputs.Add((float)(rng.NextDouble() * 40 - 20));
        while (inputs.Count % 8 != 0) inputs.Add(0f);
        var arr = inputs.ToArray();
        fixed (float* p = arr)
        {
            for (int i = 0; i < arr.Length; i += 8)
            {
                Vector256<float> e = VectorOps.Exp8(Avx.LoadVector256(p + i));
                for (int k = 0; k < 8; k++)
                {
                    float lane = VectorOps.ExpLane(arr[i + k]);
                    float vec = e.GetElement(k);
                    Assert.True(BitConverter.SingleToInt32Bits(lane) == BitConverter.SingleToInt32Bits(vec) || (float.IsNaN(lane) && float.IsNaN(vec)),
                        $"x = {arr[i + k]:R}: lane {lane:R}, vector {vec:R}");
                    double r = Math.Exp(arr[i + k]);
                    if (r > 1e-37 && r < 3e38) // normal range: within 2 ulp of the true value
                        Assert.True(Math.Abs(vec - r) <= 2.5e-7 * r, $"x = {arr[i + k]:R}: {vec:R} vs {r:R}");
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void AddMulScale_AreExactElementwise(int n)
    {
        var rng = new Random(300 + n);
        var a = RandomFloats(rng, n, 5f);
        var b = RandomFloats(rng, n, 5f);
        var d = new float[n];
        VectorOps.Add(a, b, d);
        AssertBitEqual(a.Zip(b, (x, y) => x + y).ToArray(), d);
        var acc = (float[])b.Clone();
        VectorOps.Add(a, acc); // acc += a
        AssertBitEqual(a.Zip(b, (x, y) => y + x).ToArray(), acc);
        VectorOps.Mul(a, b, d);
        AssertBitEqual(a.Zip(b, (x, y) => x * y).ToArray(), d);
        var s = (float[])a.Clone();
        VectorOps.Scale(s, 0.37f);
        AssertBitEqual(a.Select(x => x * 0.37f).ToArray(), s);
    }

    [Fact]
    public void Arguments_AreValidated()
    {
        Assert.Throws<ArgumentException>(() => VectorOps.RmsNorm(new float[3], new float[2], 1e-5f, new float[3]));
        Assert.Throws<ArgumentException>(() => VectorOps.Add(new float[3], new float[2]));
        Assert.Throws<ArgumentException>(() => VectorOps.SiluMul(new float[3], new float[3], new float[2]));
        Assert.Throws<ArgumentException>(() => VectorOps.Dot(new float[3], new float[2]));
    }
}
