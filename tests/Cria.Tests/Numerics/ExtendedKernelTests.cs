using Cria.Numerics.Formats;
using Cria.Numerics.Kernels;
using Xunit;

namespace Cria.Tests.Numerics;

/// <summary>
/// The Q4_1/Q5_0/Q5_1 and K-quant dot kernels on random bytes (every code, scale and sign
/// pattern, including -128 activations and extreme K-quant scales): the dispatching path must
/// equal the scalar twin bit for bit, and both must be close to a float64 dot of the decoded
/// values. Tolerance: 1e-5 · Σ|w·a| plus, for Q4_1/Q5_1, the effect of the Q8_1 block sum being
/// stored as a half (Σ |m|·|s - d·Σq|), which the kernels use as ggml does.
/// </summary>
public unsafe class ExtendedKernelTests
{
    public static TheoryData<string, int> Cases()
    {
        var d = new TheoryData<string, int>();
        foreach (var t in new[] { "q4_1", "q5_0", "q5_1" })
            foreach (int blocks in new[] { 1, 3, 33 }) d.Add(t, blocks);
        foreach (var t in new[] { "q2_K", "q3_K", "q4_K", "q5_K", "q6_K" })
            foreach (int blocks in new[] { 1, 2, 9 }) d.Add(t, blocks);
        return d;
    }

    private static void RandomHalf(Random rng, byte* p, double lo, double hi)
    {
        ushort h = Fp16Format.FromSingle((float)(lo + rng.NextDouble() * (hi - lo)));
        p[0] = (byte)h; p[1] = (byte)(h >> 8);
    }

    /// <summary>Random weight blocks: random code bytes, plausible half scales.</summary>
    private static byte[] RandomWeights(Random rng, string type, int blocks)
    {
        int bb = type switch { "q4_1" => 20, "q5_0" => 22, "q5_1" => 24, "q2_K" => 84, "q3_K" => 110, "q4_K" => 144, "q5_K" => 176, _ => 210 };
        var w = new byte[blocks * bb];
        rng.NextBytes(w);
        fixed (byte* p = w)
        {
            for (int b = 0; b < blocks; b++)
            {
                byte* blk = p + b * bb;
                switch (type)
                {
                    case "q4_1": case "q5_1": RandomHalf(rng, blk, 0, 0.1); RandomHalf(rng, blk + 2, -1, 0.5); break;
                    case "q5_0": RandomHalf(rng, blk, -0.1, 0.1); break;
                    case "q4_K": case "q5_K": RandomHalf(rng, blk, 0, 0.01); RandomHalf(rng, blk + 2, 0, 0.01); break;
                    case "q2_K": RandomHalf(rng, blk + 80, 0, 0.01); RandomHalf(rng, blk + 82, 0, 0.01); break;
                    case "q3_K": RandomHalf(rng, blk + 108, -0.01, 0.01); break;
                    default: RandomHalf(rng, blk + 208, -0.01, 0.01); break;
                }
            }
        }
        return w;
    }

    private static byte[] RandomActivations(Random rng, string type, int n, out float[] decoded)
    {
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)((rng.NextDouble() * 2 - 1) * (rng.Next(8) == 0 ? 10 : 1));
        decoded = new float[n];
        byte[] a;
        if (type is "q4_1" or "q5_1") { a = new byte[n / 32 * 36]; Q8_1Format.QuantizeActivations(x, a); Q8_1Format.Dequantize(a, decoded); }
        else if (type == "q5_0") { a = new byte[n / 32 * 34]; Q8_0Format.QuantizeActivations(x, a); Q8_0Format.Dequantize(a, decoded); }
        else { a = new byte[n / 256 * 292]; Q8_KFormat.Quantize(x, a); Q8_KFormat.Dequantize(a, decoded); }
        return a;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void VectorEqualsScalar_AndMatchesFloat64(string type, int blocks)
    {
        var rng = new Random(type.GetHashCode(StringComparison.Ordinal) ^ blocks);
        bool k = type.EndsWith("_K", StringComparison.Ordinal);
        int n = blocks * (k ? 256 : 32);
        for (int trial = 0; trial < 10; trial++)
        {
            var w = RandomWeights(rng, type, blocks);
            var a = RandomActivations(rng, type, n, out var ad);
            if (trial == 0 && !k)
            {
                // extreme activation bytes (-128 cannot come from the quantizer but the kernels must not care)
                int off = type == "q5_0" ? 2 : 4;
                for (int j = 0; j < 32; j++) a[off + j] = (byte)(j % 2 == 0 ? 0x80 : 0x7F);
                for (int j = 0; j < 32; j++) ad[j] = (sbyte)a[off + j] * Fp16Format.ToSingle(BitConverter.ToUInt16(a, 0));
            }
            var wd = new float[n];
            switch (type)
            {
                case "q4_1": Q4_1Format.Dequantize(w, wd); break;
                case "q5_0": Q5_0Format.Dequantize(w, wd); break;
                case "q5_1": Q5_1Format.Dequantize(w, wd); break;
                case "q2_K": Q2_KFormat.Dequantize(w, wd); break;
                case "q3_K": Q3_KFormat.Dequantize(w, wd); break;
                case "q4_K": Q4_KFormat.Dequantize(w, wd); break;
                case "q5_K": Q5_KFormat.Dequantize(w, wd); break;
                default: Q6_KFormat.Dequantize(w, wd); break;
            }
            fixed (byte* pw = w)
            fixed (byte* pa = a)
            {
                float scalar = type switch
                {
                    "q4_1" => LegacyDot.Q4_1Q8_1Scalar(pw, pa, blocks),
                    "q5_0" => QuantDot.Dot1Scalar<Q5Weights>(pw, pa, blocks),
                    "q5_1" => LegacyDot.Q5_1Q8_1Scalar(pw, pa, blocks),
                    "q2_K" => KQuantDot.Q2_KQ8_KScalar(pw, pa, blocks),
                    "q3_K" => KQuantDot.Q3_KQ8_KScalar(pw, pa, blocks),
                    "q4_K" => KQuantDot.Q4_KQ8_KScalar(pw, pa, blocks),
                    "q5_K" => KQuantDot.Q5_KQ8_KScalar(pw, pa, blocks),
                    _ => KQuantDot.Q6_KQ8_KScalar(pw, pa, blocks),
                };
                float dispatch = type switch
                {
                    "q4_1" => LegacyDot.Q4_1Q8_1(pw, pa, blocks),
                    "q5_0" => LegacyDot.Q5_0Q8_0(pw, pa, blocks),
                    "q5_1" => LegacyDot.Q5_1Q8_1(pw, pa, blocks),
                    "q2_K" => KQuantDot.Q2_KQ8_K(pw, pa, blocks),
                    "q3_K" => KQuantDot.Q3_KQ8_K(pw, pa, blocks),
                    "q4_K" => KQuantDot.Q4_KQ8_K(pw, pa, blocks),
                    "q5_K" => KQuantDot.Q5_KQ8_K(pw, pa, blocks),
                    _ => KQuantDot.Q6_KQ8_K(pw, pa, blocks),
                };
                Assert.True(BitConverter.SingleToInt32Bits(scalar) == BitConverter.SingleToInt32Bits(dispatch),
                    $"{type} x{blocks} trial {trial}: scalar {scalar:R}, {CpuFeatures.Describe()} {dispatch:R}");

                double dot = 0, abs = 0, slack = 0;
                for (int i = 0; i < n; i++) { dot += (double)wd[i] * ad[i]; abs += Math.Abs((double)wd[i] * ad[i]); }
                if (type is "q4_1" or "q5_1")
                {
                    int bb = type == "q4_1" ? 20 : 24;
                    for (int b = 0; b < blocks; b++)
                    {
                        double da = Fp16Format.ToSingle(BitConverter.ToUInt16(a, b * 36));
                        double s = Fp16Format.ToSingle(BitConverter.ToUInt16(a, b * 36 + 2));
                        double sum = 0;
                        for (int j = 0; j < 32; j++) sum += (sbyte)a[b * 36 + 4 + j];
                        slack += Math.Abs(Fp16Format.ToSingle(BitConverter.ToUInt16(w, b * bb + 2))) * Math.Abs(s - da * sum);
                    }
                }
                Assert.True(Math.Abs(scalar - dot) <= 1e-5 * abs + slack + 1e-30, $"{type} x{blocks} trial {trial}: {scalar} vs {dot} (abs {abs}, slack {slack})");
            }
        }
    }

    [Fact]
    public void Q8_1ActivationQuantizer_AvxEqualsScalar()
    {
        var rng = new Random(77);
        var x = new float[32 * 64];
        for (int i = 0; i < x.Length; i++) x[i] = (float)((rng.NextDouble() * 2 - 1) * Math.Pow(10, rng.Next(-3, 3)));
        for (int i = 0; i < 32; i++) x[i] = 0; // an all-zero block
        var avx = new byte[64 * 36];
        var scalar = new byte[64 * 36];
        Q8_1Format.QuantizeActivations(x, avx);
        fixed (float* px = x)
        fixed (byte* ps = scalar)
            Q8_1Format.QuantizeActivationsScalar(px, ps, 64);
        Assert.Equal(Convert.ToHexString(scalar), Convert.ToHexString(avx));
    }

    [Fact]
    public void Q8_KQuantizer_AvxEqualsScalar()
    {
        var rng = new Random(78);
        const int blocks = 40;
        var x = new float[256 * blocks];
        for (int i = 0; i < x.Length; i++) x[i] = (float)((rng.NextDouble() * 2 - 1) * Math.Pow(10, rng.Next(-3, 3)));
        for (int i = 0; i < 256; i++) x[i] = 0;                        // block 0: all zero
        x[256 + 17] = 5f; x[256 + 200] = -5f;                             // block 1: equal magnitudes, the first (positive) wins
        x[512 + 3] = -7f; x[512 + 100] = 7f;                              // block 2: the same, the first negative
        x[768 + 9] = float.NaN;                                           // block 3: a NaN (scalar rules)
        x[1024 + 30] = float.PositiveInfinity;                            // block 4: an infinity
        for (int i = 1280; i < 1536; i++) x[i] = (i % 7 - 3) * 0.5f;      // block 5: many ties, exact halves
        for (int i = 1536; i < 1792; i++) x[i] = 1e-30f * (i % 5 - 2);    // block 6: tiny values
        var avx = new byte[blocks * 292];
        var scalar = new byte[blocks * 292];
        fixed (float* px = x)
        fixed (byte* pv = avx)
        fixed (byte* ps = scalar)
        {
            if (System.Runtime.Intrinsics.X86.Avx2.IsSupported) Q8_KFormat.QuantizeAvx2(px, pv, blocks);
            else Q8_KFormat.QuantizeScalar(px, pv, blocks);
            Q8_KFormat.QuantizeScalar(px, ps, blocks);
        }
        for (int b = 0; b < blocks; b++)
            Assert.True(avx.AsSpan(b * 292, 292).SequenceEqual(scalar.AsSpan(b * 292, 292)), $"block {b} differs");
    }

    [Fact]
    public void Q8_K_AllZeroBlock_HasZeroScaleAndSums()
    {
        var x = new float[512];
        for (int i = 256; i < 512; i++) x[i] = i - 400;
        var q = new byte[2 * 292];
        Q8_KFormat.Quantize(x, q);
        Assert.All(q.Take(292), b => Assert.Equal(0, b));
        var back = new float[512];
        Q8_KFormat.Dequantize(q, back);
        Assert.Equal(-144f, back[256], 0.6f);
        short bsum0 = BitConverter.ToInt16(q, 292 + 260);
        int expect = 0;
        for (int j = 0; j < 16; j++) expect += (sbyte)q[292 + 4 + j];
        Assert.Equal(expect, bsum0);
    }

    [Theory]
    [InlineData("q2_K")]
    [InlineData("q3_K")]
    [InlineData("q4_K")]
    [InlineData("q5_K")]
    [InlineData("q6_K")]
    [InlineData("q4_1")]
    [InlineData("q5_0")]
    [InlineData("q5_1")]
    public void Quantize_RoundTripsWithinTheFormatsResolution(string type)
    {
        // Sanity of the encoders on data unlike the reference rows: the error stays a small fraction of the range.
        var rng = new Random(5);
        var x = new float[1024];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 3 - 1);
        var back = new float[1024];
        switch (type)
        {
            case "q2_K": { var b = new byte[4 * 84]; Q2_KFormat.Quantize(x, b); Q2_KFormat.Dequantize(b, back); break; }
            case "q3_K": { var b = new byte[4 * 110]; Q3_KFormat.Quantize(x, b); Q3_KFormat.Dequantize(b, back); break; }
            case "q4_K": { var b = new byte[4 * 144]; Q4_KFormat.Quantize(x, b); Q4_KFormat.Dequantize(b, back); break; }
            case "q5_K": { var b = new byte[4 * 176]; Q5_KFormat.Quantize(x, b); Q5_KFormat.Dequantize(b, back); break; }
            case "q6_K": { var b = new byte[4 * 210]; Q6_KFormat.Quantize(x, b); Q6_KFormat.Dequantize(b, back); break; }
            case "q4_1": { var b = new byte[32 * 20]; Q4_1Format.Quantize(x, b); Q4_1Format.Dequantize(b, back); break; }
            case "q5_0": { var b = new byte[32 * 22]; Q5_0Format.Quantize(x, b); Q5_0Format.Dequantize(b, back); break; }
            default: { var b = new byte[32 * 24]; Q5_1Format.Quantize(x, b); Q5_1Format.Dequantize(b, back); break; }
        }
        double bits = type switch { "q2_K" => 2, "q3_K" => 3, "q4_K" or "q4_1" => 4, "q6_K" => 6, _ => 5 };
        double maxErr = 0;
        for (int i = 0; i < x.Length; i++) maxErr = Math.Max(maxErr, Math.Abs(x[i] - back[i]));
        Assert.True(maxErr <= 3.0 / Math.Pow(2, bits) * 1.5, $"{type}: max error {maxErr}");
    }
}
