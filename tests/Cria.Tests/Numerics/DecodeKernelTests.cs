using System.Runtime.Intrinsics;
using Cria.Numerics.Formats;
using Cria.Numerics.Kernels;
using Xunit;

namespace Cria.Tests.Numerics;

/// <summary>
/// The multi-row decode kernels (several weight rows against one activation row, with prefetch and
/// wider vectors) and the one-row dot on pre-scaled activations (<see cref="FloatDot.F16Rebiased"/>) must give
/// each output exactly the bits of the single-row dot and of its scalar twin.
/// </summary>
public unsafe class DecodeKernelTests
{
    public static TheoryData<int> Lengths => new() { 0, 1, 7, 31, 32, 33, 64, 255, 2048, 4096 + 5 };

    private static bool Same(float a, float b) =>
        BitConverter.SingleToInt32Bits(a) == BitConverter.SingleToInt32Bits(b) || (float.IsNaN(a) && float.IsNaN(b));

    private static float[] RandomFloats(Random rng, int n)
    {
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)((rng.NextDouble() * 2 - 1) * (rng.Next(8) == 0 ? 10 : 1));
        return a;
    }

    /// <summary>F16Rows2 on rows w and w + stride gives each row the scalar twin's bits and the single-row dot's.</summary>
    private static void AssertPairEqualsSingleRows(ushort* w, nint stride, float* y, float* yRebiased, int n, float* output)
    {
        FloatDot.F16Rows2(w, stride, yRebiased, n, output);
        Assert.True(Same(FloatDot.F16Scalar(w, y, n), output[0]));
        Assert.True(Same(FloatDot.F16Scalar(w + stride, y, n), output[1]));
        Assert.True(Same(FloatDot.F16(w + stride, y, n), output[1]));
        // The one-row dot on pre-scaled activations (attention's form on AMD): the same bits too.
        Assert.True(Same(FloatDot.F16Rebiased(w, yRebiased, n), output[0]));
        Assert.True(Same(FloatDot.F16Rebiased(w + stride, yRebiased, n), output[1]));
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void F16Rows2_EqualsSingleRowDots(int n)
    {
        var rng = new Random(7100 + n);
        int stride = n + 3; // rows not adjacent: the stride is honoured
        var h = new ushort[stride + n + 64];
        for (int i = 0; i < h.Length; i++) h[i] = Fp16Format.FromSingle((float)((rng.NextDouble() * 2 - 1) * 4));
        var y = RandomFloats(rng, n).Select(Fp16Format.Round).ToArray();
        AssertEveryKernelExact(h, stride, y);
        Pinned(h, y, (ph, py, pys, po) =>
        {
            if (CpuFeatures.Avx2Fma)
            {
                // the 256-bit kernel reports an infinity whenever it lies in the vector part
                ushort kept = ph[stride + 1];
                ph[stride + 1] = 0xFC00;
                FloatDot.F16Rows2Avx2<FloatDot.Streaming.Other>(ph, stride, pys, n, po, out bool special);
                Assert.Equal(n >= 32, special);
                FloatDot.F16Rows2Avx2<FloatDot.Streaming.Amd>(ph, stride, pys, n, po, out special);
                Assert.Equal(n >= 32, special);
                ph[stride + 1] = kept;
            }
            if (n >= 40)
            {
                // an infinity in the second row: both rows still exact (scalar path)
                ph[stride + 5] = 0x7C00;
                FloatDot.F16Rows2(ph, stride, pys, n, po);
                Assert.True(Same(FloatDot.F16Scalar(ph, py, n), po[0]));
                Assert.True(Same(FloatDot.F16Scalar(ph + stride, py, n), po[1]));
                ph[stride + 5] = 0x3C00;
                ph[37] = 0xFC00; // -inf in the first row: the check looks at magnitudes, whatever the sign
                FloatDot.F16Rows2(ph, stride, pys, n, po);
                Assert.True(Same(FloatDot.F16Scalar(ph, py, n), po[0]));
                Assert.True(Same(FloatDot.F16Scalar(ph + stride, py, n), po[1]));
                ph[37] = 0x3C00;
                ph[stride + 5] = 0x7E01; // NaN
                FloatDot.F16Rows2(ph, stride, pys, n, po);
                Assert.True(Same(FloatDot.F16Scalar(ph, py, n), po[0]));
                Assert.True(float.IsNaN(po[1]));
                Assert.True(float.IsNaN(FloatDot.F16Rebiased(ph + stride, pys, n)));
                ph[stride + 5] = 0x7C00; // +inf: F16Rebiased leaves its vector part for the exact scalar path
                Assert.True(Same(FloatDot.F16Scalar(ph + stride, py, n), FloatDot.F16Rebiased(ph + stride, pys, n)));
                Assert.True(Same(FloatDot.F16(ph + stride, py, n), FloatDot.F16Rebiased(ph + stride, pys, n)));
            }
        });
    }

    /// <summary>
    /// The pre-scaled activations (y · 2^112) must give the same bits at the ends of F16's range: the
    /// largest activations (±65504: y · 2^112 is just under float's maximum), subnormal weights (they
    /// become float subnormals before the multiply) and the largest weights. Also one row computed
    /// twice (stride 0), which MatMul uses for an odd last row.
    /// </summary>
    [Fact]
    public void F16Rows2_IsExactAtTheEndsOfTheHalfRange()
    {
        var rng = new Random(7177);
        int n = 1024 + 17;
        var h = new ushort[2 * n + 64];
        for (int i = 0; i < h.Length; i++)
        {
            ushort magnitude = (ushort)(rng.Next(4) switch
            {
                0 => rng.Next(1, 0x400),        // subnormal
                1 => 0x7BFF - rng.Next(0x400),  // near 65504
                _ => rng.Next(0x400, 0x7C00),   // any finite
            });
            h[i] = (ushort)(magnitude | (rng.Next(2) << 15));
        }
        var y = new float[n];
        for (int i = 0; i < n; i++)
            y[i] = rng.Next(3) switch
            {
                0 => rng.Next(2) == 0 ? 65504f : -65504f,
                1 => Fp16Format.Round((float)(rng.NextDouble() * 1e-6)),
                _ => Fp16Format.Round((float)(rng.NextDouble() * 2 - 1)),
            };
        var ys = y.Select(v => v * Fp16Format.RebiasScale).ToArray();
        Assert.All(ys, v => Assert.True(float.IsFinite(v)));
        AssertEveryKernelExact(h, n, y);
        Pinned(h, y, (ph, py, pys, po) =>
        {
            FloatDot.F16Rows2(ph + n, 0, pys, n, po);
            Assert.True(Same(FloatDot.F16Scalar(ph + n, py, n), po[0]));
            Assert.True(Same(po[0], po[1]));
        });
    }

    /// <summary>
    /// Iterations whose 32 + 32 halves hold a subnormal take the exact-operand path, the others the
    /// pre-scaled one; rows mixing both (a subnormal in some 32-element steps only, exact zeros and
    /// negative zeros elsewhere, which must not matter) give the scalar twin's bits on both kernels.
    /// </summary>
    [Fact]
    public void F16Rows2_MixesSubnormalAndNormalStepsExactly()
    {
        var rng = new Random(7205);
        int n = 32 * 24 + 9;
        var h = new ushort[2 * n];
        for (int i = 0; i < h.Length; i++) h[i] = Fp16Format.FromSingle((float)((rng.NextDouble() * 2 - 1) * 0.05));
        foreach (int step in new[] { 1, 2, 7, 13 }) h[step * 32 + rng.Next(32)] = (ushort)(rng.Next(1, 0x400) | (rng.Next(2) << 15)); // first row
        foreach (int step in new[] { 2, 5, 20 }) h[n + step * 32 + rng.Next(32)] = (ushort)rng.Next(1, 0x400);                          // second row
        h[n + 23 * 32] = 0x0400; // the smallest normal half: not subnormal
        foreach (int step in new[] { 3, 4, 9 }) { h[step * 32 + 5] = 0; h[n + step * 32 + 6] = 0x8000; }
        var y = new float[n];
        for (int i = 0; i < n; i++) y[i] = Fp16Format.Round((float)((rng.NextDouble() * 2 - 1) * (rng.Next(6) == 0 ? 1e-6 : 3)));
        AssertEveryKernelExact(h, n, y);
    }

    /// <summary>
    /// Rows h[0..n) and h[stride..stride+n) against activations y: F16Rows2 (whichever width it picks) and
    /// explicitly both the 256-bit and the 512-bit kernels (where the CPU has them) give the scalar twin's bits.
    /// </summary>
    private static void AssertEveryKernelExact(ushort[] h, int stride, float[] y)
    {
        int n = y.Length;
        Pinned(h, y, (ph, py, pys, po) =>
        {
            AssertPairEqualsSingleRows(ph, stride, py, pys, n, po);
            float r0 = FloatDot.F16Scalar(ph, py, n), r1 = FloatDot.F16Scalar(ph + stride, py, n);
            bool special;
            // Both streaming policies (the subnormal test kept or skipped) give the same bits.
            if (CpuFeatures.Avx2Fma)
            {
                FloatDot.F16Rows2Avx2<FloatDot.Streaming.Other>(ph, stride, pys, n, po, out special);
                Assert.False(special);
                Assert.True(Same(r0, po[0]) && Same(r1, po[1]), "256-bit kernel");
                FloatDot.F16Rows2Avx2<FloatDot.Streaming.Amd>(ph, stride, pys, n, po, out special);
                Assert.False(special);
                Assert.True(Same(r0, po[0]) && Same(r1, po[1]), "256-bit kernel, AMD streaming");
            }
            if (CpuFeatures.Avx2Fma && System.Runtime.Intrinsics.X86.Avx512BW.IsSupported)
            {
                FloatDot.F16Rows2Avx512<FloatDot.Streaming.Other>(ph, stride, pys, n, po, out special);
                Assert.False(special);
                Assert.True(Same(r0, po[0]) && Same(r1, po[1]), "512-bit kernel");
                FloatDot.F16Rows2Avx512<FloatDot.Streaming.Amd>(ph, stride, pys, n, po, out special);
                Assert.False(special);
                Assert.True(Same(r0, po[0]) && Same(r1, po[1]), "512-bit kernel, AMD streaming");
            }
        });
    }

    private delegate void PinnedRows(ushort* h, float* y, float* yRebiased, float* output);

    /// <summary>Runs <paramref name="body"/> on the pinned halves, the activations, the activations × 2^112 (what F16Rows2 takes) and a two-float output.</summary>
    private static void Pinned(ushort[] h, float[] y, PinnedRows body)
    {
        var ys = y.Select(v => v * Fp16Format.RebiasScale).ToArray();
        var output = new float[2];
        fixed (ushort* ph = h)
        fixed (float* py = y)
        fixed (float* pys = ys)
        fixed (float* po = output)
            body(ph, py, pys, po);
    }

    /// <summary>The 512-bit subnormal-safe conversion gives every finite half's exact value, zeros with their sign (the 256-bit one: HalfConversionTests).</summary>
    [SkippableFact]
    public void ToSingle16Normalised_IsExactForEveryFiniteHalf()
    {
        Skip.IfNot(CpuFeatures.Avx2Fma && System.Runtime.Intrinsics.X86.Avx512BW.IsSupported, "AVX-512 not available");
        ushort* halves = stackalloc ushort[16];
        float* got = stackalloc float[16];
        for (int first = 0; first < 65536; first += 16)
        {
            for (int k = 0; k < 16; k++) halves[k] = (ushort)(first + k);
            Fp16Format.ToSingle16Normalised(halves).Store(got);
            for (int k = 0; k < 16; k++)
            {
                if ((halves[k] & 0x7C00) == 0x7C00) continue; // infinities and NaNs: callers check for them first
                float expected = (float)BitConverter.UInt16BitsToHalf(halves[k]);
                Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(got[k]), $"half 0x{halves[k]:X4}: {got[k]:R} vs {expected:R}");
            }
        }
    }

    /// <summary>The subnormal test counts subnormal halves only: not zeros, not the smallest normal half.</summary>
    [SkippableFact]
    public void AnySubnormal_SeesSubnormalsOnly()
    {
        Skip.IfNot(CpuFeatures.Avx2Fma, "AVX2 + FMA not available");
        bool wide = System.Runtime.Intrinsics.X86.Avx512BW.IsSupported;
        foreach (ushort probe in new ushort[] { 0, 1, 0x3FF, 0x400, 0x3C00, 0x7BFF })
            for (int lane = 0; lane < 32; lane += 7)
            {
                bool expected = probe is >= 1 and <= 0x3FF;
                var a = new ushort[32]; Array.Fill(a, (ushort)0x3C00); a[lane] = probe;
                var zeros = new ushort[32]; // all zero magnitudes: never subnormal
                fixed (ushort* pa = a)
                fixed (ushort* pz = zeros)
                {
                    Assert.Equal(expected, Fp16Format.AnySubnormal(System.Runtime.Intrinsics.Vector256.Load(pz), System.Runtime.Intrinsics.Vector256.Load(pa + (lane & 16))));
                    if (wide)
                        Assert.Equal(expected, Fp16Format.AnySubnormal(System.Runtime.Intrinsics.Vector512.Load(pa), System.Runtime.Intrinsics.Vector512.Load(pz)));
                }
            }
    }
}
