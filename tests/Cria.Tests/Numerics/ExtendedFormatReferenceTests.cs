using Cria.Numerics.Formats;
using Cria.Numerics.Kernels;
using Xunit;

namespace Cria.Tests.Numerics;

/// <summary>
/// The formats beyond Q8_0/Q4_0 (Q4_1, Q5_0, Q5_1, the K-quants, ...) and their activation formats
/// (Q8_1, Q8_K) against ggml's own output in quant/ggml-quant-vectors.json, compared exactly:
/// quantized bytes byte for byte, decoded values and dot products bit for bit. Every dot is
/// checked on the dispatching path and on its scalar twin.
/// </summary>
public unsafe class ExtendedFormatReferenceTests
{
    /// <summary>Everything a test needs to know about one weight format.</summary>
    internal sealed class Codec
    {
        public required Action<float[], byte[]> Quantize;
        public required Action<byte[], float[]> Dequantize;
        public required Action<float[], byte[]> QuantizeActivation;
        public required int ActivationBlockSize;
        public required int ActivationBlockBytes;
        public required Func<nint, nint, int, float> Dot;        // (weights, activations, blocks of the activation type)
        public required Func<nint, nint, int, float> DotScalar;
    }

    internal static readonly Dictionary<string, Codec> Codecs = new()
    {
        ["q4_1"] = new Codec
        {
            Quantize = (x, y) => Q4_1Format.Quantize(x, y), Dequantize = (x, y) => Q4_1Format.Dequantize(x, y),
            QuantizeActivation = (x, y) => Q8_1Format.QuantizeActivations(x, y), ActivationBlockSize = 32, ActivationBlockBytes = 36,
            Dot = (w, a, n) => LegacyDot.Q4_1Q8_1((byte*)w, (byte*)a, n), DotScalar = (w, a, n) => LegacyDot.Q4_1Q8_1Scalar((byte*)w, (byte*)a, n),
        },
        ["q5_1"] = new Codec
        {
            Quantize = (x, y) => Q5_1Format.Quantize(x, y), Dequantize = (x, y) => Q5_1Format.Dequantize(x, y),
            QuantizeActivation = (x, y) => Q8_1Format.QuantizeActivations(x, y), ActivationBlockSize = 32, ActivationBlockBytes = 36,
            Dot = (w, a, n) => LegacyDot.Q5_1Q8_1((byte*)w, (byte*)a, n), DotScalar = (w, a, n) => LegacyDot.Q5_1Q8_1Scalar((byte*)w, (byte*)a, n),
        },
        ["q5_0"] = new Codec
        {
            Quantize = (x, y) => Q5_0Format.Quantize(x, y), Dequantize = (x, y) => Q5_0Format.Dequantize(x, y),
            QuantizeActivation = (x, y) => Q8_0Format.QuantizeActivations(x, y), ActivationBlockSize = 32, ActivationBlockBytes = 34,
            Dot = (w, a, n) => LegacyDot.Q5_0Q8_0((byte*)w, (byte*)a, n), DotScalar = (w, a, n) => QuantDot.Dot1Scalar<Q5Weights>((byte*)w, (byte*)a, n),
        },
        ["q6_K"] = KCodec((x, y) => Q6_KFormat.Quantize(x, y), (x, y) => Q6_KFormat.Dequantize(x, y),
            (w, a, n) => KQuantDot.Q6_KQ8_K((byte*)w, (byte*)a, n), (w, a, n) => KQuantDot.Q6_KQ8_KScalar((byte*)w, (byte*)a, n)),
        ["q4_K"] = KCodec((x, y) => Q4_KFormat.Quantize(x, y), (x, y) => Q4_KFormat.Dequantize(x, y),
            (w, a, n) => KQuantDot.Q4_KQ8_K((byte*)w, (byte*)a, n), (w, a, n) => KQuantDot.Q4_KQ8_KScalar((byte*)w, (byte*)a, n)),
        ["q3_K"] = KCodec((x, y) => Q3_KFormat.Quantize(x, y), (x, y) => Q3_KFormat.Dequantize(x, y),
            (w, a, n) => KQuantDot.Q3_KQ8_K((byte*)w, (byte*)a, n), (w, a, n) => KQuantDot.Q3_KQ8_KScalar((byte*)w, (byte*)a, n)),
        ["q2_K"] = KCodec((x, y) => Q2_KFormat.Quantize(x, y), (x, y) => Q2_KFormat.Dequantize(x, y),
            (w, a, n) => KQuantDot.Q2_KQ8_K((byte*)w, (byte*)a, n), (w, a, n) => KQuantDot.Q2_KQ8_KScalar((byte*)w, (byte*)a, n)),
        ["q5_K"] = KCodec((x, y) => Q5_KFormat.Quantize(x, y), (x, y) => Q5_KFormat.Dequantize(x, y),
            (w, a, n) => KQuantDot.Q5_KQ8_K((byte*)w, (byte*)a, n), (w, a, n) => KQuantDot.Q5_KQ8_KScalar((byte*)w, (byte*)a, n)),
        ["iq4_nl"] = new Codec
        {
            Quantize = (x, y) => IQ4_NLFormat.Quantize(x, y), Dequantize = (x, y) => IQ4_NLFormat.Dequantize(x, y),
            QuantizeActivation = (x, y) => Q8_0Format.QuantizeActivations(x, y), ActivationBlockSize = 32, ActivationBlockBytes = 34,
            Dot = (w, a, n) => IQ4Dot.IQ4_NLQ8_0((byte*)w, (byte*)a, n), DotScalar = (w, a, n) => IQ4Dot.NlVecDotScalar((byte*)w, (byte*)a, n),
        },
        ["iq4_xs"] = KCodec((x, y) => IQ4_XSFormat.Quantize(x, y), (x, y) => IQ4_XSFormat.Dequantize(x, y),
            (w, a, n) => IQ4Dot.IQ4_XSQ8_K((byte*)w, (byte*)a, n), (w, a, n) => IQ4Dot.IQ4_XSQ8_KScalar((byte*)w, (byte*)a, n)),
    };

    private static Codec KCodec(Action<float[], byte[]> quantize, Action<byte[], float[]> dequantize,
        Func<nint, nint, int, float> dot, Func<nint, nint, int, float> dotScalar) => new Codec
    {
        Quantize = quantize, Dequantize = dequantize,
        QuantizeActivation = (x, y) => Q8_KFormat.Quantize(x, y), ActivationBlockSize = 256, ActivationBlockBytes = 292,
        Dot = dot, DotScalar = dotScalar,
    };

    public static TheoryData<string> Types()
    {
        var d = new TheoryData<string>();
        foreach (var k in Codecs.Keys) d.Add(k);
        return d;
    }

    [SkippableTheory]
    [MemberData(nameof(Types))]
    public void Quantize_IsByteIdenticalToGgml(string type)
    {
        var v = RefDataForNumerics.RequireQuantVectors();
        var t = v.Types[type];
        for (int r = 0; r < v.Rows.Length; r++)
        {
            var dst = new byte[t.RowBytes];
            Codecs[type].Quantize(v.Rows[r], dst);
            Assert.True(t.Quantized[r].AsSpan().SequenceEqual(dst),
                $"{type} row {r} ({v.RowDescriptions[r]}): first difference at byte {FirstDifference(t.Quantized[r], dst)} of {dst.Length}");
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Types))]
    public void Dequantize_IsExact(string type)
    {
        var v = RefDataForNumerics.RequireQuantVectors();
        var t = v.Types[type];
        for (int r = 0; r < v.Rows.Length; r++)
        {
            var dst = new float[v.NPerRow];
            Codecs[type].Dequantize(t.Quantized[r], dst);
            for (int i = 0; i < dst.Length; i++)
                Assert.True(FormatReferenceTests.BitEqual(t.Dequantized[r][i], dst[i]), $"{type} row {r} element {i}: ggml {t.Dequantized[r][i]:R}, ours {dst[i]:R}");
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Types))]
    public void ActivationQuantizer_MatchesGgmlRuntime(string type)
    {
        var v = RefDataForNumerics.RequireQuantVectors();
        var t = v.Types[type];
        var c = Codecs[type];
        var act = new byte[v.Activation.Length / c.ActivationBlockSize * c.ActivationBlockBytes];
        c.QuantizeActivation(v.Activation, act);
        Assert.Equal(Convert.ToHexString(t.ActivationQuantized), Convert.ToHexString(act));
    }

    [SkippableTheory]
    [MemberData(nameof(Types))]
    public void VecDot_IsBitIdenticalToGgmlAvx2(string type)
    {
        var v = RefDataForNumerics.RequireQuantVectors();
        var t = v.Types[type];
        var c = Codecs[type];
        int blocks = v.NPerRow / c.ActivationBlockSize;
        fixed (byte* a = t.ActivationQuantized)
        {
            for (int r = 0; r < v.Rows.Length; r++)
            {
                fixed (byte* w = t.Quantized[r])
                {
                    float scalar = c.DotScalar((nint)w, (nint)a, blocks);
                    float dispatch = c.Dot((nint)w, (nint)a, blocks);
                    Assert.True(FormatReferenceTests.BitEqual(t.VecDot[r], scalar), $"{type} row {r}: ggml {t.VecDot[r]:R}, scalar {scalar:R}");
                    Assert.True(FormatReferenceTests.BitEqual(t.VecDot[r], dispatch), $"{type} row {r}: ggml {t.VecDot[r]:R}, {CpuFeatures.Describe()} {dispatch:R}");
                }
            }
        }
    }

    private static int FirstDifference(byte[] a, byte[] b)
    {
        for (int i = 0; i < Math.Min(a.Length, b.Length); i++) if (a[i] != b[i]) return i;
        return a.Length == b.Length ? -1 : Math.Min(a.Length, b.Length);
    }
}
