using Cria.Numerics;
using Cria.Numerics.Formats;
using Cria.Numerics.Kernels;
using Xunit;

namespace Cria.Tests.Numerics;

/// <summary>
/// Checks the formats and dot products against ggml's own output (quant/ggml-quant-vectors.json,
/// produced by the reference llama.cpp build on an AVX2+FMA+F16C machine). Everything here is
/// compared exactly: quantized bytes byte for byte, decoded values and dot products bit for bit
/// (float equality). Exactness is possible because the kernels reproduce ggml's operations and
/// their order, including the float accumulation order of the AVX2 dot products; a tolerance
/// would hide a wrong lane order or a missing fused multiply-add.
/// </summary>
public unsafe class FormatReferenceTests
{
    private static QuantTypeVectors Type(string name) => RefDataForNumerics.RequireQuantVectors().Types[name];

    [SkippableFact]
    public void TypeTable_MatchesReferenceFile()
    {
        var v = RefDataForNumerics.RequireQuantVectors();
        Assert.NotEmpty(v.Types);
        foreach (var t in v.Types.Values)
        {
            Assert.True(GgmlTypeInfo.TryParse(t.Type, out var type), t.Type);
            Assert.Equal(t.TypeId, (int)type);
            Assert.Equal(t.Type, GgmlTypeInfo.Name(type));
            Assert.Equal(t.BlockSize, GgmlTypeInfo.BlockSize(type));
            Assert.Equal(t.TypeSize, GgmlTypeInfo.BlockBytes(type));
            Assert.Equal(t.RowBytes, GgmlTypeInfo.RowBytes(type, v.NPerRow));
        }
    }

    public static TheoryData<string> FourTypes => new() { "f16", "bf16", "q8_0", "q4_0" };

    private static void QuantizeWith(string type, ReadOnlySpan<float> src, Span<byte> dst)
    {
        switch (type)
        {
            case "f16": Fp16Format.Quantize(src, dst); break;
            case "bf16": Bf16Format.Quantize(src, dst); break;
            case "q8_0": Q8_0Format.Quantize(src, dst); break;
            case "q4_0": Q4_0Format.Quantize(src, dst); break;
            default: throw new ArgumentException(type);
        }
    }

    private static void DequantizeWith(string type, ReadOnlySpan<byte> src, Span<float> dst)
    {
        switch (type)
        {
            case "f16": Fp16Format.Dequantize(src, dst); break;
            case "bf16": Bf16Format.Dequantize(src, dst); break;
            case "q8_0": Q8_0Format.Dequantize(src, dst); break;
            case "q4_0": Q4_0Format.Dequantize(src, dst); break;
            default: throw new ArgumentException(type);
        }
    }

    [SkippableTheory]
    [MemberData(nameof(FourTypes))]
    public void Quantize_IsByteIdenticalToGgml(string type)
    {
        var v = RefDataForNumerics.RequireQuantVectors();
        var t = v.Types[type];
        for (int r = 0; r < v.Rows.Length; r++)
        {
            var dst = new byte[t.RowBytes];
            QuantizeWith(type, v.Rows[r], dst);
            Assert.True(t.Quantized[r].AsSpan().SequenceEqual(dst),
                $"{type} row {r} ({v.RowDescriptions[r]}): first difference at byte {FirstDifference(t.Quantized[r], dst)}");
        }
    }

    [SkippableTheory]
    [MemberData(nameof(FourTypes))]
    public void Dequantize_IsExact(string type)
    {
        var v = RefDataForNumerics.RequireQuantVectors();
        var t = v.Types[type];
        for (int r = 0; r < v.Rows.Length; r++)
        {
            var dst = new float[v.NPerRow];
            DequantizeWith(type, t.Quantized[r], dst);
            for (int i = 0; i < dst.Length; i++)
                Assert.True(BitEqual(t.Dequantized[r][i], dst[i]), $"{type} row {r} element {i}: ggml {t.Dequantized[r][i]:R}, ours {dst[i]:R}");
        }
    }

    [SkippableTheory]
    [InlineData("q8_0")]
    [InlineData("q4_0")]
    public void ActivationQuantizer_MatchesGgmlRuntime_BothPaths(string type)
    {
        var v = RefDataForNumerics.RequireQuantVectors();
        var t = v.Types[type];
        Assert.Equal("q8_0", t.VecDotType);
        var simd = new byte[t.ActivationQuantized.Length];
        Q8_0Format.QuantizeActivations(v.Activation, simd);
        Assert.Equal(Convert.ToHexString(t.ActivationQuantized), Convert.ToHexString(simd));

        var scalar = new byte[simd.Length];
        fixed (float* x = v.Activation)
        fixed (byte* d = scalar)
            Q8_0Format.QuantizeActivationsScalar(x, d, v.Activation.Length / 32);
        Assert.Equal(Convert.ToHexString(t.ActivationQuantized), Convert.ToHexString(scalar));

        var decoded = new float[v.Activation.Length];
        Q8_0Format.Dequantize(simd, decoded);
        for (int i = 0; i < decoded.Length; i++) Assert.True(BitEqual(t.ActivationDequantized[i], decoded[i]), $"element {i}");
    }

    [Fact]
    public void ActivationQuantizer_AndReferenceQuantizer_RoundTiesDifferently()
    {
        // amax = 127 gives d = 1 and a multiplier of exactly 1 in both encoders, so 2.5 is a tie:
        // the reference (roundf) goes away from zero to 3, the runtime (cvtps2dq) to even, 2.
        var x = new float[32];
        x[0] = 127f; x[1] = 2.5f; x[2] = -2.5f; x[3] = 3.5f;
        var runtime = new byte[34];
        var reference = new byte[34];
        Q8_0Format.QuantizeActivations(x, runtime);
        Q8_0Format.Quantize(x, reference);
        Assert.Equal(new sbyte[] { 127, 3, -3, 4 }, new[] { (sbyte)reference[2], (sbyte)reference[3], (sbyte)reference[4], (sbyte)reference[5] });
        Assert.Equal(new sbyte[] { 127, 2, -2, 4 }, new[] { (sbyte)runtime[2], (sbyte)runtime[3], (sbyte)runtime[4], (sbyte)runtime[5] });
    }

    [SkippableTheory]
    [InlineData("f16")]
    [InlineData("bf16")]
    public void FloatActivationConversion_MatchesGgml(string type)
    {
        var v = RefDataForNumerics.RequireQuantVectors();
        var t = v.Types[type];
        Assert.Equal(type, t.VecDotType);
        var dst = new byte[v.Activation.Length * 2];
        QuantizeWith(type, v.Activation, dst);
        Assert.Equal(Convert.ToHexString(t.ActivationQuantized), Convert.ToHexString(dst));
    }

    [SkippableTheory]
    [InlineData("q8_0")]
    [InlineData("q4_0")]
    public void QuantizedVecDot_IsBitIdenticalToGgmlAvx2(string type)
    {
        var v = RefDataForNumerics.RequireQuantVectors();
        var t = v.Types[type];
        int blocks = v.NPerRow / 32;
        fixed (byte* a = t.ActivationQuantized)
        {
            for (int r = 0; r < v.Rows.Length; r++)
            {
                fixed (byte* w = t.Quantized[r])
                {
                    float dispatch = type == "q8_0" ? QuantDot.Q8_0Q8_0(w, a, blocks) : QuantDot.Q4_0Q8_0(w, a, blocks);
                    float scalar = type == "q8_0" ? QuantDot.Q8_0Q8_0Scalar(w, a, blocks) : QuantDot.Q4_0Q8_0Scalar(w, a, blocks);
                    Assert.True(BitEqual(t.VecDot[r], scalar), $"{type} row {r}: ggml {t.VecDot[r]:R}, scalar {scalar:R}");
                    Assert.True(BitEqual(t.VecDot[r], dispatch), $"{type} row {r}: ggml {t.VecDot[r]:R}, {CpuFeatures.Describe()} {dispatch:R}");
                    if (CpuFeatures.Avx2Fma)
                    {
                        float avx = type == "q8_0" ? QuantDot.Q8_0Q8_0Avx2(w, a, blocks) : QuantDot.Q4_0Q8_0Avx2(w, a, blocks);
                        Assert.True(BitEqual(t.VecDot[r], avx), $"{type} row {r}: avx2 {avx:R}");
                    }
                    // and close to the float64 dot of the decoded values (sanity of the semantics)
                    Assert.True(Math.Abs(t.VecDot[r] - t.DotF64[r]) <= 1e-5 * Math.Max(1, Math.Abs(t.DotF64[r])));
                }
            }
        }
    }

    [SkippableTheory]
    [InlineData("f16")]
    [InlineData("bf16")]
    public void FloatVecDot_IsBitIdenticalToGgmlAvx2(string type)
    {
        var v = RefDataForNumerics.RequireQuantVectors();
        var t = v.Types[type];
        fixed (float* a = t.ActivationDequantized)
        {
            for (int r = 0; r < v.Rows.Length; r++)
            {
                fixed (byte* w = t.Quantized[r])
                {
                    ushort* wh = (ushort*)w;
                    int n = v.NPerRow;
                    float dispatch = type == "f16" ? FloatDot.F16(wh, a, n) : FloatDot.BF16(wh, a, n);
                    float scalar = type == "f16" ? FloatDot.F16Scalar(wh, a, n) : FloatDot.BF16Scalar(wh, a, n);
                    Assert.True(BitEqual(t.VecDot[r], scalar), $"{type} row {r}: ggml {t.VecDot[r]:R}, scalar {scalar:R}");
                    Assert.True(BitEqual(t.VecDot[r], dispatch), $"{type} row {r}: ggml {t.VecDot[r]:R}, {CpuFeatures.Describe()} {dispatch:R}");
                }
            }
        }
    }

    internal static bool BitEqual(float a, float b) => BitConverter.SingleToInt32Bits(a) == BitConverter.SingleToInt32Bits(b);

    private static int FirstDifference(byte[] a, byte[] b)
    {
        for (int i = 0; i < Math.Min(a.Length, b.Length); i++) if (a[i] != b[i]) return i;
        return a.Length == b.Length ? -1 : Math.Min(a.Length, b.Length);
    }
}
