using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Cria.Numerics.Formats;
using Xunit;

namespace Cria.Tests.Numerics;

/// <summary>
/// The F16/BF16 conversions are checked exhaustively (every 16-bit pattern) or on a dense sample
/// of float bit patterns against independent references: System.Half (IEEE, round to nearest
/// even) and a direct transcription of ggml's bf16 rounding. All comparisons are exact.
/// </summary>
public unsafe class HalfConversionTests
{
    [Fact]
    public void Fp16ToSingle_AllPatterns_MatchSystemHalf()
    {
        for (int h = 0; h < 65536; h++)
        {
            float ours = Fp16Format.ToSingle((ushort)h);
            float expected = (float)BitConverter.UInt16BitsToHalf((ushort)h);
            if (float.IsNaN(expected))
            {
                Assert.True(float.IsNaN(ours), $"0x{h:X4}");
                // payload and sign are kept: widening then narrowing returns the pattern with the quiet bit set
                Assert.Equal(h | 0x0200, Fp16Format.FromSingle(ours));
            }
            else Assert.True(FormatReferenceTests.BitEqual(expected, ours), $"0x{h:X4}: expected {expected:R}, got {ours:R}");
        }
    }

    [SkippableFact]
    public void Fp16ToSingle8_AllPatterns_MatchScalar()
    {
        Skip.IfNot(Avx2.IsSupported, "AVX2 not available");
        var halves = new ushort[65536];
        for (int i = 0; i < halves.Length; i++) halves[i] = (ushort)i;
        ushort* one = stackalloc ushort[8];
        fixed (ushort* p = halves)
        {
            for (int i = 0; i < halves.Length; i += 8)
            {
                Vector256<float> v = Fp16Format.ToSingle8Normalised(p + i);
                bool anySpecial = false;
                for (int k = 0; k < 8; k++)
                {
                    int h = i + k;
                    bool isSpecial = (h & 0x7C00) == 0x7C00;
                    anySpecial |= isSpecial;
                    if (!isSpecial) Assert.True(FormatReferenceTests.BitEqual(Fp16Format.ToSingle((ushort)h), v.GetElement(k)), $"0x{h:X4}");
                }
                Assert.Equal(anySpecial, Fp16Format.AnySpecial8(p + i));
                // this group's first half among finite ones (1.0) is seen in any lane
                for (int k = 0; k < 8; k++) one[k] = 0x3C00;
                one[(i / 8) & 7] = (ushort)i;
                Assert.Equal((i & 0x7C00) == 0x7C00, Fp16Format.AnySpecial8(one));
            }
        }
        // the bulk converter falls back to exact scalar code when it meets infinities/NaNs
        var all = new float[65536];
        fixed (ushort* p = halves)
        fixed (float* d = all)
            Fp16Format.ToSingle(p, d, halves.Length);
        for (int h = 0; h < 65536; h++)
            Assert.Equal(BitConverter.SingleToInt32Bits(Fp16Format.ToSingle((ushort)h)), BitConverter.SingleToInt32Bits(all[h]));
    }

    [Fact]
    public void Fp16FromSingle_DenseSample_MatchesSystemHalf()
    {
        // Every 97th float bit pattern (~44 M values) plus every pattern around the interesting
        // boundaries (denormal edge, overflow edge, tiny values).
        for (long bits = 0; bits <= 0xFFFFFFFFL; bits += 97) Check((uint)bits);
        foreach (uint centre in new uint[] { 0x33000000, 0x33800000, 0x38800000, 0x387FF000, 0x477FE000, 0x477FF000, 0x47800000, 0x7F800000, 0x00000000 })
            for (long d = -70000; d <= 70000; d++)
            {
                long b = centre + d;
                if (b < 0 || b > 0x7FFFFFFF) continue;
                Check((uint)b);
                Check((uint)b | 0x80000000u);
            }

        static void Check(uint bits)
        {
            float f = BitConverter.UInt32BitsToSingle(bits);
            ushort ours = Fp16Format.FromSingle(f);
            Half expected = (Half)f;
            if (Half.IsNaN(expected))
            {
                Assert.True(Half.IsNaN(BitConverter.UInt16BitsToHalf(ours)), $"0x{bits:X8}");
                Assert.Equal(BitConverter.HalfToUInt16Bits(expected) & 0x8000, ours & 0x8000);
            }
            else if (BitConverter.HalfToUInt16Bits(expected) != ours)
                Assert.Fail($"0x{bits:X8} ({f:R}): expected 0x{BitConverter.HalfToUInt16Bits(expected):X4}, got 0x{ours:X4}");
        }
    }

    /// <summary>
    /// The eight-at-a-time rounding (attention's F16 query and softmax weights) against the scalar
    /// Round on every 101st float pattern and every pattern near the edges (half-denormal step,
    /// smallest normal, overflow to infinity, infinity/NaN), both signs, in place and not, with
    /// lengths that leave a scalar tail.
    /// </summary>
    [Fact]
    public void Fp16RoundSpan_DenseSample_MatchesScalarRound()
    {
        var batch = new List<uint>();
        for (long bits = 0; bits <= 0xFFFFFFFFL; bits += 101) batch.Add((uint)bits);
        foreach (uint centre in new uint[] { 0x33000000, 0x33800000, 0x38800000, 0x387FF000, 0x477FE000, 0x477FF000, 0x7F800000, 0x00000000 })
            for (long d = -5000; d <= 5000; d++)
            {
                long b = centre + d;
                if (b < 0 || b > 0x7FFFFFFF) continue;
                batch.Add((uint)b);
                batch.Add((uint)b | 0x80000000u);
            }
        var src = batch.Select(BitConverter.UInt32BitsToSingle).ToArray();
        var dst = new float[src.Length];
        int n = src.Length - 5; // a tail for the scalar loop
        fixed (float* ps = src)
        fixed (float* pd = dst)
        {
            Fp16Format.Round(ps, pd, n);
            for (int i = 0; i < n; i++)
            {
                float expected = Fp16Format.Round(src[i]);
                if (BitConverter.SingleToUInt32Bits(expected) != BitConverter.SingleToUInt32Bits(pd[i]) && !(float.IsNaN(expected) && float.IsNaN(pd[i])))
                    Assert.Fail($"0x{batch[i]:X8}: expected {expected:R}, got {pd[i]:R}");
            }
            Assert.Equal(0f, pd[n]); // nothing written past n
            var copy = (float[])src.Clone();
            fixed (float* pc = copy) Fp16Format.Round(pc, pc, n); // in place
            for (int i = 0; i < n; i++)
                Assert.True(BitConverter.SingleToUInt32Bits(copy[i]) == BitConverter.SingleToUInt32Bits(pd[i]) || (float.IsNaN(copy[i]) && float.IsNaN(pd[i])), $"in place, 0x{batch[i]:X8}");
        }
    }

    [Fact]
    public void Bf16_AllPatternsWiden_AndRoundingMatchesGgmlFormula()
    {
        for (int b = 0; b < 65536; b++)
            Assert.Equal((uint)b << 16, BitConverter.SingleToUInt32Bits(Bf16Format.ToSingle((ushort)b)));

        for (long bits = 0; bits <= 0xFFFFFFFFL; bits += 89)
        {
            uint u = (uint)bits;
            ushort expected = (u & 0x7FFFFFFF) > 0x7F800000
                ? (ushort)((u >> 16) | 64)
                : (ushort)((u + (0x7FFF + ((u >> 16) & 1))) >> 16);
            ushort ours = Bf16Format.FromSingle(BitConverter.UInt32BitsToSingle(u));
            if (ours != expected) Assert.Fail($"0x{u:X8}: expected 0x{expected:X4}, got 0x{ours:X4}");
        }
        // ties go to even, NaN is quieted, large values round to infinity
        Assert.Equal(0x3F80, Bf16Format.FromSingle(BitConverter.UInt32BitsToSingle(0x3F808000)));
        Assert.Equal(0x3F82, Bf16Format.FromSingle(BitConverter.UInt32BitsToSingle(0x3F818000)));
        Assert.Equal(0x7FC1, Bf16Format.FromSingle(BitConverter.UInt32BitsToSingle(0x7F810000)));
        Assert.Equal(0x7F80, Bf16Format.FromSingle(float.MaxValue));
    }

    [Fact]
    public void SpanApis_RoundTripAndValidateLengths()
    {
        var x = new float[] { 1f, -2.5f, 65504f, 1e-8f, 0.1f };
        var bytes = new byte[10];
        var back = new float[5];
        Fp16Format.Quantize(x, bytes);
        Fp16Format.Dequantize(bytes, back);
        for (int i = 0; i < x.Length; i++) Assert.Equal((float)(Half)x[i], back[i]);
        Bf16Format.Quantize(x, bytes);
        Bf16Format.Dequantize(bytes, back);
        for (int i = 0; i < x.Length; i++) Assert.Equal(Bf16Format.Round(x[i]), back[i]);
        Assert.Throws<ArgumentException>(() => Fp16Format.Quantize(x, new byte[9]));
        Assert.Throws<ArgumentException>(() => Bf16Format.Dequantize(new byte[9], back));
    }
}
