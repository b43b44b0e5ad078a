using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Cria.Numerics.Formats;

namespace Cria.Numerics.Kernels;

/// <summary>
/// Float dot products in ggml's exact accumulation orders. Two orders exist in ggml's CPU backend
/// and both are reproduced:
/// <list type="bullet">
/// <item><b>vec_dot</b> (one activation row: decode, and any product llamafile's sgemm declines):
/// <c>ggml_vec_dot_f32</c> / <c>ggml_vec_dot_f16</c> keep four eight-lane accumulators over steps of
/// 32 elements (fused multiply-add), reduce them as ((s0+s2)+(s1+s3)), then the eight lanes as
/// ((t0+t1)+(t2+t3)) with t = low half + high half; the tail (n mod 32) is added one product at
/// a time (in float for F32, with a fused multiply-add as GCC contracts it; in double for F16).
/// <c>ggml_vec_dot_bf16</c> is similar but reduces as ((c1+c3)+(c2+c4)), then ((g0+g2)+(g1+g3)),
/// in double from there on.</item>
/// <item><b>blocked</b> (llamafile tinyBLAS, used by ggml for two or more activation rows when the
/// row length is a multiple of 8): one eight-lane accumulator, a fused multiply-add per 8
/// elements, reduced as ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)).</item>
/// </list>
/// The F16/BF16 variants take the weights as stored (2-byte elements) and the activations as
/// floats. ggml first rounds activations to F16/BF16 (its vec_dot_type); MatMul does that rounding,
/// after which each product is exact in float and these kernels give ggml's bits. Scalar twins
/// return the same bits as the vector paths.
/// </summary>
public static unsafe class FloatDot
{
    // ================================================================ F32 · F32 (vec_dot order)

    /// <summary>F32 · F32 like ggml_vec_dot_f32.</summary>
    public static float F32(ReadOnlySpan<float> x, ReadOnlySpan<float> y)
    {
        if (x.Length != y.Length) throw new ArgumentException("lengths differ");
        fixed (float* px = x)
        fixed (float* py = y)
            return F32(px, py, x.Length);
    }

    /// <summary>F32 · F32 like ggml_vec_dot_f32.</summary>
    public static float F32(float* x, float* y, int n)
    {
        if (Fma.IsSupported) return F32Avx(x, y, n);
        if (Vector256.IsHardwareAccelerated) return F32Vector256(x, y, n);
        return F32Scalar(x, y, n);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float F32Avx(float* x, float* y, int n)
    {
        int np = n & ~31;
        Vector256<float> s0 = default, s1 = default, s2 = default, s3 = default;
        for (int i = 0; i < np; i += 32)
        {
            s0 = Fma.MultiplyAdd(Avx.LoadVector256(x + i), Avx.LoadVector256(y + i), s0);
            s1 = Fma.MultiplyAdd(Avx.LoadVector256(x + i + 8), Avx.LoadVector256(y + i + 8), s1);
            s2 = Fma.MultiplyAdd(Avx.LoadVector256(x + i + 16), Avx.LoadVector256(y + i + 16), s2);
            s3 = Fma.MultiplyAdd(Avx.LoadVector256(x + i + 24), Avx.LoadVector256(y + i + 24), s3);
        }
        float sum = ReduceFour(s0, s1, s2, s3);
        for (int i = np; i < n; i++) sum = MathF.FusedMultiplyAdd(x[i], y[i], sum);
        return sum;
    }

    internal static float F32Vector256(float* x, float* y, int n)
    {
        int np = n & ~31;
        Vector256<float> s0 = default, s1 = default, s2 = default, s3 = default;
        for (int i = 0; i < np; i += 32)
        {
            s0 = Vector256.FusedMultiplyAdd(Vector256.Load(x + i), Vector256.Load(y + i), s0);
            s1 = Vector256.FusedMultiplyAdd(Vector256.Load(x + i + 8), Vector256.Load(y + i + 8), s1);
            s2 = Vector256.FusedMultiplyAdd(Vector256.Load(x + i + 16), Vector256.Load(y + i + 16), s2);
            s3 = Vector256.FusedMultiplyAdd(Vector256.Load(x + i + 24), Vector256.Load(y + i + 24), s3);
        }
        float sum = ReduceFour(s0, s1, s2, s3);
        for (int i = np; i < n; i++) sum = MathF.FusedMultiplyAdd(x[i], y[i], sum);
        return sum;
    }

    internal static float F32Scalar(float* x, float* y, int n)
    {
        int np = n & ~31;
        float* s = stackalloc float[32];
        for (int k = 0; k < 32; k++) s[k] = 0;
        for (int i = 0; i < np; i += 32)
            for (int k = 0; k < 32; k++) s[k] = MathF.FusedMultiplyAdd(x[i + k], y[i + k], s[k]);
        float sum = ReduceFour(s);
        for (int i = np; i < n; i++) sum = MathF.FusedMultiplyAdd(x[i], y[i], sum);
        return sum;
    }

    // ================================================================ F16 · F32 (vec_dot order)

    /// <summary>F16 weights · float activations like ggml_vec_dot_f16 (after the activations were rounded to F16).</summary>
    public static float F16(ushort* w, float* y, int n) => F16Dot<ExactHalves>(w, y, n);

    /// <summary>
    /// <see cref="F16(ushort*, float*, int)"/> with the activations already multiplied by
    /// <see cref="Fp16Format.RebiasScale"/> (<paramref name="yRebiased"/> = y · 2^112, exact for F16-rounded y): the
    /// same bits, but the weights' bits are only moved into float position (<see cref="Fp16Format.ToSingle8Rebiased"/>)
    /// instead of converted subnormal-safely. Faster where fused multiply-adds take subnormal operands at full speed
    /// (<see cref="RebiasedF16Dots"/>).
    /// </summary>
    public static float F16Rebiased(ushort* w, float* yRebiased, int n) => F16Dot<RebiasedHalves>(w, yRebiased, n);

    /// <summary>True where <see cref="F16Rebiased"/> is the faster one-row F16 dot: AVX2 and FMA on AMD (see <see cref="CpuFeatures.Amd"/>).</summary>
    internal static bool RebiasedF16Dots => CpuFeatures.Avx2Fma && CpuFeatures.Amd;

    /// <summary>How a one-row F16 dot turns its weights into floats, and what the activations it takes are scaled by.</summary>
    private interface IHalfWeights
    {
        /// <summary>Eight halves as the dot multiplies them.</summary>
        static abstract Vector256<float> Eight(ushort* p);

        /// <summary>The factor (a power of two) that turns the given activations back into y.</summary>
        static abstract float ActivationScale { get; }
    }

    /// <summary>Exact values, subnormal halves included (<see cref="Fp16Format.ToSingle8Normalised"/>); activations as they are.</summary>
    private struct ExactHalves : IHalfWeights
    {
        public static Vector256<float> Eight(ushort* p) => Fp16Format.ToSingle8Normalised(p);
        public static float ActivationScale => 1f;
    }

    /// <summary>Values × 2^-112, bits moved only (<see cref="Fp16Format.ToSingle8Rebiased"/>); activations × 2^112.</summary>
    private struct RebiasedHalves : IHalfWeights
    {
        public static Vector256<float> Eight(ushort* p) => Fp16Format.ToSingle8Rebiased(p);
        public static float ActivationScale => Fp16Format.RebiasScaleInverse;
    }

    /// <summary>The one-row F16 dot in ggml's order; rows holding infinities or NaNs take the exact scalar path.</summary>
    private static float F16Dot<TH>(ushort* w, float* y, int n) where TH : struct, IHalfWeights
    {
        if (CpuFeatures.Avx2Fma)
        {
            float r = F16Avx2<TH>(w, y, n, out bool special);
            if (!special) return r;
        }
        return F16Scalar(w, y, n, TH.ActivationScale);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float F16Avx2<TH>(ushort* w, float* y, int n, out bool special) where TH : struct, IHalfWeights
    {
        int np = n & ~31;
        Vector256<float> s0 = default, s1 = default, s2 = default, s3 = default;
        Vector256<ushort> mag = default;
        for (int i = 0; i < np; i += 32)
        {
            Fp16Format.TrackMagnitudes(ref mag, w + i);
            Fp16Format.TrackMagnitudes(ref mag, w + i + 16);
            s0 = Fma.MultiplyAdd(TH.Eight(w + i), Avx.LoadVector256(y + i), s0);
            s1 = Fma.MultiplyAdd(TH.Eight(w + i + 8), Avx.LoadVector256(y + i + 8), s1);
            s2 = Fma.MultiplyAdd(TH.Eight(w + i + 16), Avx.LoadVector256(y + i + 16), s2);
            s3 = Fma.MultiplyAdd(TH.Eight(w + i + 24), Avx.LoadVector256(y + i + 24), s3);
        }
        special = Fp16Format.SawSpecialHalf(mag);
        double sum = ReduceFour(s0, s1, s2, s3);
        for (int i = np; i < n; i++) sum += Fp16Format.ToSingle(w[i]) * (y[i] * TH.ActivationScale);
        return (float)sum;
    }

    /// <summary>
    /// Two F16 weight rows (stride <paramref name="wStride"/> halves) · one activation row, y[0], y[1], each
    /// bit-identical to <see cref="F16(ushort*, float*, int)"/> with the activations <c>y</c>; but this kernel
    /// takes them already multiplied by <see cref="Fp16Format.RebiasScale"/> (<paramref name="yRebiased"/> =
    /// y · 2^112, exact for F16-rounded activations), so the weights need no multiply after their bits are
    /// moved into float position (<see cref="Fp16Format.ToSingle16Rebiased"/>) and every fused multiply-add
    /// sees the same real product. Each row keeps its own four accumulators; the activations are loaded
    /// once for both rows. The weights of the next pair of rows are prefetched meanwhile (into L1; into L2 on AMD,
    /// where the subnormal test is skipped too: see <see cref="CpuFeatures.Amd"/>): decode streams
    /// them once from memory, and the hardware prefetcher stops at every 4 KiB page (a row or two), which
    /// halved the read rate. <paramref name="wStride"/> = 0 computes one row twice.
    /// </summary>
    internal static void F16Rows2(ushort* w, nint wStride, float* yRebiased, int n, float* output)
    {
        if (CpuFeatures.Avx2Fma)
        {
            bool special;
            if (CpuFeatures.Amd)
            {
                if (Avx512BW.IsSupported) F16Rows2Avx512<Streaming.Amd>(w, wStride, yRebiased, n, output, out special);
                else F16Rows2Avx2<Streaming.Amd>(w, wStride, yRebiased, n, output, out special);
            }
            else if (Avx512BW.IsSupported) F16Rows2Avx512<Streaming.Other>(w, wStride, yRebiased, n, output, out special);
            else F16Rows2Avx2<Streaming.Other>(w, wStride, yRebiased, n, output, out special);
            if (!special) return;
        }
        output[0] = F16Scalar(w, yRebiased, n, Fp16Format.RebiasScaleInverse);
        output[1] = F16Scalar(w + wStride, yRebiased, n, Fp16Format.RebiasScaleInverse);
    }

    /// <summary>
    /// How the F16 decode kernels stream their weights, a type argument so that each choice is compiled on its own (a
    /// flag read at run time left the rarely taken subnormal path in the loop, and the loop ran at 0.6–0.7 of the speed).
    /// </summary>
    internal static class Streaming
    {
        internal interface IPolicy
        {
            /// <summary>Skip the subnormal test (FMAs take subnormal operands at full speed) and prefetch into L2: <see cref="CpuFeatures.Amd"/>.</summary>
            static abstract bool IsAmd { get; }
        }

        internal struct Amd : IPolicy { public static bool IsAmd => true; }

        internal struct Other : IPolicy { public static bool IsAmd => false; }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void F16Rows2Avx2<TP>(ushort* w, nint wStride, float* yRebiased, int n, float* output, out bool special) where TP : struct, Streaming.IPolicy
    {
        int np = n & ~31;
        float* y = yRebiased;
        Vector256<float> s0 = default, s1 = default, s2 = default, s3 = default;
        Vector256<float> t0 = default, t1 = default, t2 = default, t3 = default;
        Vector256<ushort> mag = default;
        ushort* v = w + wStride;
        nint ahead = 2 * wStride; // the same halves of the next pair of rows
        bool amd = TP.IsAmd;
        for (int i = 0; i < np; i += 32)
        {
            if (amd) { Sse.Prefetch1(w + i + ahead); Sse.Prefetch1(v + i + ahead); } // see CpuFeatures.Amd
            else { Sse.Prefetch0(w + i + ahead); Sse.Prefetch0(v + i + ahead); }
            Vector256<float> y0 = Avx.LoadVector256(y + i), y1 = Avx.LoadVector256(y + i + 8);
            Vector256<float> y2 = Avx.LoadVector256(y + i + 16), y3 = Avx.LoadVector256(y + i + 24);
            Vector256<ushort> m7 = Vector256.Create((ushort)0x7FFF);
            Vector256<ushort> mw0 = Avx2.And(Avx.LoadVector256(w + i), m7), mw1 = Avx2.And(Avx.LoadVector256(w + i + 16), m7);
            Vector256<ushort> mv0 = Avx2.And(Avx.LoadVector256(v + i), m7), mv1 = Avx2.And(Avx.LoadVector256(v + i + 16), m7);
            mag = Avx2.Max(mag, Avx2.Max(Avx2.Max(mw0, mw1), Avx2.Max(mv0, mv1)));
            // Rare: a subnormal half among these. Then exact weights and activations, so that no fused
            // multiply-add sees a subnormal operand (see F16Rows2Avx512); the same real products either way.
            bool exact = !amd && (Fp16Format.AnySubnormal(mw0, mw1) || Fp16Format.AnySubnormal(mv0, mv1));
            if (exact)
            {
                Vector256<float> inverse = Vector256.Create(Fp16Format.RebiasScaleInverse);
                y0 = Avx.Multiply(y0, inverse); y1 = Avx.Multiply(y1, inverse); y2 = Avx.Multiply(y2, inverse); y3 = Avx.Multiply(y3, inverse);
            }
            s0 = Fma.MultiplyAdd(Halves8(w + i, exact), y0, s0);
            s1 = Fma.MultiplyAdd(Halves8(w + i + 8, exact), y1, s1);
            s2 = Fma.MultiplyAdd(Halves8(w + i + 16, exact), y2, s2);
            s3 = Fma.MultiplyAdd(Halves8(w + i + 24, exact), y3, s3);
            t0 = Fma.MultiplyAdd(Halves8(v + i, exact), y0, t0);
            t1 = Fma.MultiplyAdd(Halves8(v + i + 8, exact), y1, t1);
            t2 = Fma.MultiplyAdd(Halves8(v + i + 16, exact), y2, t2);
            t3 = Fma.MultiplyAdd(Halves8(v + i + 24, exact), y3, t3);
        }
        special = Fp16Format.SawSpecialHalf(mag);
        F16Rows2Tail(w, v, y, np, n, ReduceFour(s0, s1, s2, s3), ReduceFour(t0, t1, t2, t3), output);
    }

    /// <summary>Eight halves as <see cref="F16Rows2Avx2"/> multiplies them: exact values when <paramref name="exact"/>, else × 2^-112.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Halves8(ushort* p, bool exact) => exact ? Fp16Format.ToSingle8Normalised(p) : Fp16Format.ToSingle8Rebiased(p);

    /// <summary>
    /// <see cref="F16Rows2Avx2"/> with AVX-512 registers: one 16-lane accumulator holds what two 8-lane ones
    /// do there (lanes 0-7 = s0, 8-15 = s1), every lane gets the same fused multiply-adds in the same order
    /// and the halves are reduced exactly as there, so the bits are the same; the half→float conversion
    /// costs half the instructions per element.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void F16Rows2Avx512<TP>(ushort* w, nint wStride, float* yRebiased, int n, float* output, out bool special) where TP : struct, Streaming.IPolicy
    {
        int np = n & ~31;
        float* y = yRebiased;
        Vector512<float> s01 = default, s23 = default, t01 = default, t23 = default;
        Vector512<ushort> mag = default;
        ushort* v = w + wStride;
        nint ahead = 2 * wStride;
        bool amd = TP.IsAmd;
        for (int i = 0; i < np; i += 32)
        {
            if (amd) { Sse.Prefetch1(w + i + ahead); Sse.Prefetch1(v + i + ahead); } // see CpuFeatures.Amd
            else { Sse.Prefetch0(w + i + ahead); Sse.Prefetch0(v + i + ahead); }
            Vector512<float> y01 = Avx512F.LoadVector512(y + i), y23 = Avx512F.LoadVector512(y + i + 16);
            Vector512<ushort> mw = Avx512F.And(Avx512F.LoadVector512(w + i), Vector512.Create((ushort)0x7FFF));
            Vector512<ushort> mv = Avx512F.And(Avx512F.LoadVector512(v + i), Vector512.Create((ushort)0x7FFF));
            mag = Avx512BW.Max(mag, Avx512BW.Max(mw, mv));
            if (!amd && Fp16Format.AnySubnormal(mw, mv))
            {
                // Rare (a few halves in a thousand): the same products from exact weights and activations,
                // so that no fused multiply-add sees a subnormal operand (see ToSingle16Normalised).
                Vector512<float> e01 = Avx512F.Multiply(y01, Vector512.Create(Fp16Format.RebiasScaleInverse));
                Vector512<float> e23 = Avx512F.Multiply(y23, Vector512.Create(Fp16Format.RebiasScaleInverse));
                s01 = Avx512F.FusedMultiplyAdd(Fp16Format.ToSingle16Normalised(w + i), e01, s01);
                s23 = Avx512F.FusedMultiplyAdd(Fp16Format.ToSingle16Normalised(w + i + 16), e23, s23);
                t01 = Avx512F.FusedMultiplyAdd(Fp16Format.ToSingle16Normalised(v + i), e01, t01);
                t23 = Avx512F.FusedMultiplyAdd(Fp16Format.ToSingle16Normalised(v + i + 16), e23, t23);
                continue;
            }
            s01 = Avx512F.FusedMultiplyAdd(Fp16Format.ToSingle16Rebiased(w + i), y01, s01);
            s23 = Avx512F.FusedMultiplyAdd(Fp16Format.ToSingle16Rebiased(w + i + 16), y23, s23);
            t01 = Avx512F.FusedMultiplyAdd(Fp16Format.ToSingle16Rebiased(v + i), y01, t01);
            t23 = Avx512F.FusedMultiplyAdd(Fp16Format.ToSingle16Rebiased(v + i + 16), y23, t23);
        }
        special = Fp16Format.SawSpecialHalf(mag);
        F16Rows2Tail(w, v, y, np, n,
            ReduceFour(s01.GetLower(), s01.GetUpper(), s23.GetLower(), s23.GetUpper()),
            ReduceFour(t01.GetLower(), t01.GetUpper(), t23.GetLower(), t23.GetUpper()), output);
    }

    /// <summary>The last n % 32 elements of <see cref="F16Rows2"/>, in <see cref="F16(ushort*, float*, int)"/>'s order, with the activations un-scaled (exactly).</summary>
    private static void F16Rows2Tail(ushort* w, ushort* v, float* yRebiased, int from, int n, double sum0, double sum1, float* output)
    {
        for (int i = from; i < n; i++)
        {
            float y = yRebiased[i] * Fp16Format.RebiasScaleInverse;
            sum0 += Fp16Format.ToSingle(w[i]) * y;
            sum1 += Fp16Format.ToSingle(v[i]) * y;
        }
        output[0] = (float)sum0;
        output[1] = (float)sum1;
    }

    /// <summary>The scalar twin of <see cref="F16(ushort*, float*, int)"/>; each activation is first multiplied by <paramref name="yScale"/> (a power of two: exact).</summary>
    internal static float F16Scalar(ushort* w, float* y, int n, float yScale = 1f)
    {
        int np = n & ~31;
        float* s = stackalloc float[32];
        for (int k = 0; k < 32; k++) s[k] = 0;
        for (int i = 0; i < np; i += 32)
            for (int k = 0; k < 32; k++) s[k] = MathF.FusedMultiplyAdd(Fp16Format.ToSingle(w[i + k]), y[i + k] * yScale, s[k]);
        double sum = ReduceFour(s);
        for (int i = np; i < n; i++) sum += Fp16Format.ToSingle(w[i]) * (y[i] * yScale);
        return (float)sum;
    }

    // ================================================================ BF16 · F32 (vec_dot order)

    /// <summary>BF16 weights · float activations like ggml_vec_dot_bf16 (AVX2 build; after the activations were rounded to BF16).</summary>
    public static float BF16(ushort* w, float* y, int n) =>
        CpuFeatures.Avx2Fma ? BF16Avx2(w, y, n) : BF16Scalar(w, y, n);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float BF16Avx2(ushort* w, float* y, int n)
    {
        int i = 0;
        double sum = 0;
        Vector256<float> c1 = default, c2 = default, c3 = default, c4 = default;
        for (; i + 32 <= n; i += 32)
        {
            c1 = Fma.MultiplyAdd(Bf16Format.ToSingle8(w + i), Avx.LoadVector256(y + i), c1);
            c2 = Fma.MultiplyAdd(Bf16Format.ToSingle8(w + i + 8), Avx.LoadVector256(y + i + 8), c2);
            c3 = Fma.MultiplyAdd(Bf16Format.ToSingle8(w + i + 16), Avx.LoadVector256(y + i + 16), c3);
            c4 = Fma.MultiplyAdd(Bf16Format.ToSingle8(w + i + 24), Avx.LoadVector256(y + i + 24), c4);
        }
        Vector256<float> c = (c1 + c3) + (c2 + c4);
        sum += HorizontalSumPairs(c);
        for (; i < n; i++) sum += Bf16Format.ToSingle(w[i]) * y[i];
        return (float)sum;
    }

    internal static float BF16Scalar(ushort* w, float* y, int n)
    {
        int i = 0;
        double sum = 0;
        float* c = stackalloc float[32];
        for (int k = 0; k < 32; k++) c[k] = 0;
        for (; i + 32 <= n; i += 32)
            for (int k = 0; k < 32; k++) c[k] = MathF.FusedMultiplyAdd(Bf16Format.ToSingle(w[i + k]), y[i + k], c[k]);
        float* l = stackalloc float[8];
        for (int k = 0; k < 8; k++) l[k] = (c[k] + c[16 + k]) + (c[8 + k] + c[24 + k]);
        sum += QuantDot.HorizontalSum(l);
        for (; i < n; i++) sum += Bf16Format.ToSingle(w[i]) * y[i];
        return (float)sum;
    }

    // ================================================================ blocked order (tinyBLAS)

    /// <summary>F32 · F32 in tinyBLAS order (one eight-lane accumulator); n must be a multiple of 8.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float F32Blocked(float* x, float* y, int n)
    {
        if ((n & 7) != 0) throw new ArgumentException("length must be a multiple of 8", nameof(n));
        if (Fma.IsSupported)
        {
            Vector256<float> acc = default;
            for (int i = 0; i < n; i += 8) acc = Fma.MultiplyAdd(Avx.LoadVector256(x + i), Avx.LoadVector256(y + i), acc);
            return QuantDot.HorizontalSum(acc);
        }
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> acc = default;
            for (int i = 0; i < n; i += 8) acc = Vector256.FusedMultiplyAdd(Vector256.Load(x + i), Vector256.Load(y + i), acc);
            return QuantDot.HorizontalSum(acc);
        }
        return F32BlockedScalar(x, y, n);
    }

    /// <summary>
    /// <paramref name="count"/> dots in <see cref="F32Blocked"/>'s order at once: out[k] = x_k · y with
    /// x_k = <paramref name="x"/> + k·<paramref name="stride"/>. Each output has its own accumulator and
    /// the single dot's exact steps (same bits); eight run side by side so the fused multiply-adds are
    /// not serialised on one accumulator's latency. n must be a multiple of 8.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void F32BlockedMany(float* x, nint stride, int count, float* y, int n, float* output)
    {
        if ((n & 7) != 0) throw new ArgumentException("length must be a multiple of 8", nameof(n));
        int k = 0;
        if (Fma.IsSupported)
        {
            for (; k + 8 <= count; k += 8)
            {
                float* x0 = x + k * stride;
                float* x1 = x0 + stride, x2 = x1 + stride, x3 = x2 + stride, x4 = x3 + stride, x5 = x4 + stride, x6 = x5 + stride, x7 = x6 + stride;
                Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
                for (int i = 0; i < n; i += 8)
                {
                    Vector256<float> v = Avx.LoadVector256(y + i);
                    a0 = Fma.MultiplyAdd(Avx.LoadVector256(x0 + i), v, a0);
                    a1 = Fma.MultiplyAdd(Avx.LoadVector256(x1 + i), v, a1);
                    a2 = Fma.MultiplyAdd(Avx.LoadVector256(x2 + i), v, a2);
                    a3 = Fma.MultiplyAdd(Avx.LoadVector256(x3 + i), v, a3);
                    a4 = Fma.MultiplyAdd(Avx.LoadVector256(x4 + i), v, a4);
                    a5 = Fma.MultiplyAdd(Avx.LoadVector256(x5 + i), v, a5);
                    a6 = Fma.MultiplyAdd(Avx.LoadVector256(x6 + i), v, a6);
                    a7 = Fma.MultiplyAdd(Avx.LoadVector256(x7 + i), v, a7);
                }
                output[k] = QuantDot.HorizontalSum(a0); output[k + 1] = QuantDot.HorizontalSum(a1);
                output[k + 2] = QuantDot.HorizontalSum(a2); output[k + 3] = QuantDot.HorizontalSum(a3);
                output[k + 4] = QuantDot.HorizontalSum(a4); output[k + 5] = QuantDot.HorizontalSum(a5);
                output[k + 6] = QuantDot.HorizontalSum(a6); output[k + 7] = QuantDot.HorizontalSum(a7);
            }
        }
        for (; k < count; k++) output[k] = F32Blocked(x + k * stride, y, n);
    }

    /// <summary>
    /// A block of dots in <see cref="F32Blocked"/>'s order: output[j·<paramref name="outStride"/> + k] =
    /// x_k · y_j for k &lt; <paramref name="count"/>, j &lt; <paramref name="m"/>, with x_k = x + k·xStride and
    /// y_j = y + j·yStride (n a multiple of 8). Every output keeps the single dot's exact steps (same
    /// bits); with 32 vector registers four x rows × four y rows run as one register tile, so each
    /// loaded vector feeds four multiply-adds instead of one or eight (attention's K·q and Vᵀ·p for
    /// the query heads that share a KV head).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void F32BlockedTile(float* x, nint xStride, int count, float* y, nint yStride, int m, int n, float* output, nint outStride)
    {
        if ((n & 7) != 0) throw new ArgumentException("length must be a multiple of 8", nameof(n));
        int j = 0;
        if (Avx512F.IsSupported && Fma.IsSupported)
        {
            for (; j + 4 <= m; j += 4)
            {
                float* y0 = y + j * yStride, y1 = y0 + yStride, y2 = y1 + yStride, y3 = y2 + yStride;
                float* o0 = output + j * outStride, o1 = o0 + outStride, o2 = o1 + outStride, o3 = o2 + outStride;
                int k = 0;
                for (; k + 4 <= count; k += 4)
                {
                    float* x0 = x + k * xStride, x1 = x0 + xStride, x2 = x1 + xStride, x3 = x2 + xStride;
                    Vector256<float> a00 = default, a01 = default, a02 = default, a03 = default;
                    Vector256<float> a10 = default, a11 = default, a12 = default, a13 = default;
                    Vector256<float> a20 = default, a21 = default, a22 = default, a23 = default;
                    Vector256<float> a30 = default, a31 = default, a32 = default, a33 = default;
                    for (int i = 0; i < n; i += 8)
                    {
                        Vector256<float> v0 = Avx.LoadVector256(y0 + i), v1 = Avx.LoadVector256(y1 + i);
                        Vector256<float> v2 = Avx.LoadVector256(y2 + i), v3 = Avx.LoadVector256(y3 + i);
                        Vector256<float> u = Avx.LoadVector256(x0 + i);
                        a00 = Fma.MultiplyAdd(u, v0, a00); a01 = Fma.MultiplyAdd(u, v1, a01); a02 = Fma.MultiplyAdd(u, v2, a02); a03 = Fma.MultiplyAdd(u, v3, a03);
                        u = Avx.LoadVector256(x1 + i);
                        a10 = Fma.MultiplyAdd(u, v0, a10); a11 = Fma.MultiplyAdd(u, v1, a11); a12 = Fma.MultiplyAdd(u, v2, a12); a13 = Fma.MultiplyAdd(u, v3, a13);
                        u = Avx.LoadVector256(x2 + i);
                        a20 = Fma.MultiplyAdd(u, v0, a20); a21 = Fma.MultiplyAdd(u, v1, a21); a22 = Fma.MultiplyAdd(u, v2, a22); a23 = Fma.MultiplyAdd(u, v3, a23);
                        u = Avx.LoadVector256(x3 + i);
                        a30 = Fma.MultiplyAdd(u, v0, a30); a31 = Fma.MultiplyAdd(u, v1, a31); a32 = Fma.MultiplyAdd(u, v2, a32); a33 = Fma.MultiplyAdd(u, v3, a33);
                    }
                    o0[k] = QuantDot.HorizontalSum(a00); o1[k] = QuantDot.HorizontalSum(a01); o2[k] = QuantDot.HorizontalSum(a02); o3[k] = QuantDot.HorizontalSum(a03);
                    o0[k + 1] = QuantDot.HorizontalSum(a10); o1[k + 1] = QuantDot.HorizontalSum(a11); o2[k + 1] = QuantDot.HorizontalSum(a12); o3[k + 1] = QuantDot.HorizontalSum(a13);
                    o0[k + 2] = QuantDot.HorizontalSum(a20); o1[k + 2] = QuantDot.HorizontalSum(a21); o2[k + 2] = QuantDot.HorizontalSum(a22); o3[k + 2] = QuantDot.HorizontalSum(a23);
                    o0[k + 3] = QuantDot.HorizontalSum(a30); o1[k + 3] = QuantDot.HorizontalSum(a31); o2[k + 3] = QuantDot.HorizontalSum(a32); o3[k + 3] = QuantDot.HorizontalSum(a33);
                }
                for (; k < count; k++)
                {
                    float* xk = x + k * xStride;
                    o0[k] = F32Blocked(xk, y0, n); o1[k] = F32Blocked(xk, y1, n);
                    o2[k] = F32Blocked(xk, y2, n); o3[k] = F32Blocked(xk, y3, n);
                }
            }
        }
        for (; j < m; j++) F32BlockedMany(x, xStride, count, y + j * yStride, n, output + j * outStride);
    }

    /// <summary>
    /// F16 weights · float activations in tinyBLAS order (ggml's product for two or more activation
    /// rows, e.g. llama.cpp's K·Q with an F16 cache during prompt processing); n % 8 == 0.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float F16Blocked(ushort* w, float* y, int n)
    {
        if ((n & 7) != 0) throw new ArgumentException("length must be a multiple of 8", nameof(n));
        if (CpuFeatures.Avx2Fma)
        {
            Vector256<float> acc = default;
            Vector128<ushort> mag = default;
            for (int i = 0; i < n; i += 8)
            {
                Fp16Format.TrackMagnitudes(ref mag, w + i);
                acc = Fma.MultiplyAdd(Fp16Format.ToSingle8Normalised(w + i), Avx.LoadVector256(y + i), acc);
            }
            if (!Fp16Format.SawSpecialHalf(mag)) return QuantDot.HorizontalSum(acc);
        }
        return F16BlockedScalar(w, y, n);
    }

    internal static float F16BlockedScalar(ushort* w, float* y, int n)
    {
        float* l = stackalloc float[8];
        for (int k = 0; k < 8; k++) l[k] = 0;
        for (int i = 0; i < n; i += 8)
            for (int k = 0; k < 8; k++) l[k] = MathF.FusedMultiplyAdd(Fp16Format.ToSingle(w[i + k]), y[i + k], l[k]);
        return QuantDot.HorizontalSum(l);
    }

    /// <summary>BF16 weights · float activations in tinyBLAS order; n % 8 == 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float BF16Blocked(ushort* w, float* y, int n)
    {
        if ((n & 7) != 0) throw new ArgumentException("length must be a multiple of 8", nameof(n));
        if (CpuFeatures.Avx2Fma)
        {
            Vector256<float> acc = default;
            for (int i = 0; i < n; i += 8) acc = Fma.MultiplyAdd(Bf16Format.ToSingle8(w + i), Avx.LoadVector256(y + i), acc);
            return QuantDot.HorizontalSum(acc);
        }
        float* l = stackalloc float[8];
        for (int k = 0; k < 8; k++) l[k] = 0;
        for (int i = 0; i < n; i += 8)
            for (int k = 0; k < 8; k++) l[k] = MathF.FusedMultiplyAdd(Bf16Format.ToSingle(w[i + k]), y[i + k], l[k]);
        return QuantDot.HorizontalSum(l);
    }

    internal static float F32BlockedScalar(float* x, float* y, int n)
    {
        float* l = stackalloc float[8];
        for (int k = 0; k < 8; k++) l[k] = 0;
        for (int i = 0; i < n; i += 8)
            for (int k = 0; k < 8; k++) l[k] = MathF.FusedMultiplyAdd(x[i + k], y[i + k], l[k]);
        return QuantDot.HorizontalSum(l);
    }

    /// <summary>
    /// Blocked-order tile: four rows of x (stride <paramref name="xStride"/> floats) against two rows
    /// of y (stride <paramref name="yStride"/>); results to out[c*outStride + r]. n % 8 == 0.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void BlockedTile4x2(float* x, nint xStride, float* y, nint yStride, int n, float* output, nint outStride)
    {
        Vector256<float> a00 = default, a10 = default, a20 = default, a30 = default;
        Vector256<float> a01 = default, a11 = default, a21 = default, a31 = default;
        float* x0 = x, x1 = x + xStride, x2 = x + 2 * xStride, x3 = x + 3 * xStride;
        float* y0 = y, y1 = y + yStride;
        for (int i = 0; i < n; i += 8)
        {
            Vector256<float> b0 = Avx.LoadVector256(y0 + i), b1 = Avx.LoadVector256(y1 + i);
            Vector256<float> v = Avx.LoadVector256(x0 + i);
            a00 = Fma.MultiplyAdd(v, b0, a00); a01 = Fma.MultiplyAdd(v, b1, a01);
            v = Avx.LoadVector256(x1 + i);
            a10 = Fma.MultiplyAdd(v, b0, a10); a11 = Fma.MultiplyAdd(v, b1, a11);
            v = Avx.LoadVector256(x2 + i);
            a20 = Fma.MultiplyAdd(v, b0, a20); a21 = Fma.MultiplyAdd(v, b1, a21);
            v = Avx.LoadVector256(x3 + i);
            a30 = Fma.MultiplyAdd(v, b0, a30); a31 = Fma.MultiplyAdd(v, b1, a31);
        }
        output[0] = QuantDot.HorizontalSum(a00); output[1] = QuantDot.HorizontalSum(a10);
        output[2] = QuantDot.HorizontalSum(a20); output[3] = QuantDot.HorizontalSum(a30);
        output[outStride] = QuantDot.HorizontalSum(a01); output[outStride + 1] = QuantDot.HorizontalSum(a11);
        output[outStride + 2] = QuantDot.HorizontalSum(a21); output[outStride + 3] = QuantDot.HorizontalSum(a31);
    }

    /// <summary>
    /// Blocked-order tile: four rows of x (stride <paramref name="xStride"/> floats) against three rows
    /// of y (stride <paramref name="yStride"/>); results to out[c*outStride + r]. Each x vector is loaded
    /// once for three products; every output keeps its own accumulator in ascending order. n % 8 == 0.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void BlockedTile4x3(float* x, nint xStride, float* y, nint yStride, int n, float* output, nint outStride)
    {
        Vector256<float> a00 = default, a10 = default, a20 = default, a30 = default;
        Vector256<float> a01 = default, a11 = default, a21 = default, a31 = default;
        Vector256<float> a02 = default, a12 = default, a22 = default, a32 = default;
        float* x0 = x, x1 = x + xStride, x2 = x + 2 * xStride, x3 = x + 3 * xStride;
        float* y0 = y, y1 = y + yStride, y2 = y + 2 * yStride;
        for (int i = 0; i < n; i += 8)
        {
            Vector256<float> b0 = Avx.LoadVector256(y0 + i), b1 = Avx.LoadVector256(y1 + i), b2 = Avx.LoadVector256(y2 + i);
            Vector256<float> v = Avx.LoadVector256(x0 + i);
            a00 = Fma.MultiplyAdd(v, b0, a00); a01 = Fma.MultiplyAdd(v, b1, a01); a02 = Fma.MultiplyAdd(v, b2, a02);
            v = Avx.LoadVector256(x1 + i);
            a10 = Fma.MultiplyAdd(v, b0, a10); a11 = Fma.MultiplyAdd(v, b1, a11); a12 = Fma.MultiplyAdd(v, b2, a12);
            v = Avx.LoadVector256(x2 + i);
            a20 = Fma.MultiplyAdd(v, b0, a20); a21 = Fma.MultiplyAdd(v, b1, a21); a22 = Fma.MultiplyAdd(v, b2, a22);
            v = Avx.LoadVector256(x3 + i);
            a30 = Fma.MultiplyAdd(v, b0, a30); a31 = Fma.MultiplyAdd(v, b1, a31); a32 = Fma.MultiplyAdd(v, b2, a32);
        }
        output[0] = QuantDot.HorizontalSum(a00); output[1] = QuantDot.HorizontalSum(a10);
        output[2] = QuantDot.HorizontalSum(a20); output[3] = QuantDot.HorizontalSum(a30);
        output += outStride;
        output[0] = QuantDot.HorizontalSum(a01); output[1] = QuantDot.HorizontalSum(a11);
        output[2] = QuantDot.HorizontalSum(a21); output[3] = QuantDot.HorizontalSum(a31);
        output += outStride;
        output[0] = QuantDot.HorizontalSum(a02); output[1] = QuantDot.HorizontalSum(a12);
        output[2] = QuantDot.HorizontalSum(a22); output[3] = QuantDot.HorizontalSum(a32);
    }

    // ---------------------------------------------------------------- blocked order with AVX-512 registers

    /// <summary>
    /// Widens two rows of F16 (or BF16) values into the paired layout of <see cref="PairedTile4x6"/>: for every
    /// eight elements, eight floats of <paramref name="r0"/> then eight of <paramref name="r1"/>. Exact.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void WidenPair(ushort* r0, ushort* r1, float* dst, int n, bool bf16)
    {
        for (int i = 0; i < n; i += 8, dst += 16)
        {
            if (bf16)
            {
                Avx.Store(dst, Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(Sse2.LoadVector128(r0 + i)), 16).AsSingle());
                Avx.Store(dst + 8, Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(Sse2.LoadVector128(r1 + i)), 16).AsSingle());
                continue;
            }
            if (Fp16Format.AnySpecial8(r0 + i) || Fp16Format.AnySpecial8(r1 + i))
                for (int k = 0; k < 8; k++) { dst[k] = Fp16Format.ToSingle(r0[i + k]); dst[8 + k] = Fp16Format.ToSingle(r1[i + k]); }
            else
            {
                Avx.Store(dst, Fp16Format.ToSingle8Normalised(r0 + i));
                Avx.Store(dst + 8, Fp16Format.ToSingle8Normalised(r1 + i));
            }
        }
    }

    /// <summary>
    /// The blocked (tinyBLAS) order for four weight rows × six activation rows with 512-bit registers, over
    /// elements [<paramref name="k0"/>, <paramref name="k1"/>) of the rows. The weights are in the paired layout
    /// of <see cref="WidenPair"/> (rows 0, 1 at <paramref name="x"/>, rows 2, 3 at <paramref name="x"/> +
    /// <paramref name="pairStride"/>); each 16-lane accumulator holds two outputs' eight-lane accumulators (lanes
    /// 0-7 the even row, 8-15 the odd row) and receives, lane for lane, the fused multiply-adds of
    /// <see cref="BlockedTile4x3"/> in the same order, so every output has its bits. The twelve accumulators
    /// start at zero when <paramref name="first"/>, else from <paramref name="state"/>; when <paramref name="last"/>
    /// they are reduced to out[c·outStride + r] for activation row c = y + c·yStride, else saved to
    /// <paramref name="state"/> — so a product can be walked in blocks of k without changing a bit.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void PairedTile4x6(float* x, nint pairStride, float* y, nint yStride, int k0, int k1,
        Vector512<float>* state, bool first, bool last, float* output, nint outStride)
    {
        Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default, a04 = default, a05 = default;
        Vector512<float> a10 = default, a11 = default, a12 = default, a13 = default, a14 = default, a15 = default;
        if (!first)
        {
            a00 = state[0]; a01 = state[1]; a02 = state[2]; a03 = state[3]; a04 = state[4]; a05 = state[5];
            a10 = state[6]; a11 = state[7]; a12 = state[8]; a13 = state[9]; a14 = state[10]; a15 = state[11];
        }
        float* x0 = x, x1 = x + pairStride;
        float* y0 = y, y1 = y + yStride, y2 = y + 2 * yStride, y3 = y + 3 * yStride, y4 = y + 4 * yStride, y5 = y + 5 * yStride;
        for (int i = k0; i < k1; i += 8)
        {
            Vector512<float> w0 = Avx512F.LoadVector512(x0 + 2 * i), w1 = Avx512F.LoadVector512(x1 + 2 * i);
            Vector512<float> b = Avx512DQ.BroadcastVector256ToVector512(y0 + i);
            a00 = Avx512F.FusedMultiplyAdd(w0, b, a00); a10 = Avx512F.FusedMultiplyAdd(w1, b, a10);
            b = Avx512DQ.BroadcastVector256ToVector512(y1 + i);
            a01 = Avx512F.FusedMultiplyAdd(w0, b, a01); a11 = Avx512F.FusedMultiplyAdd(w1, b, a11);
            b = Avx512DQ.BroadcastVector256ToVector512(y2 + i);
            a02 = Avx512F.FusedMultiplyAdd(w0, b, a02); a12 = Avx512F.FusedMultiplyAdd(w1, b, a12);
            b = Avx512DQ.BroadcastVector256ToVector512(y3 + i);
            a03 = Avx512F.FusedMultiplyAdd(w0, b, a03); a13 = Avx512F.FusedMultiplyAdd(w1, b, a13);
            b = Avx512DQ.BroadcastVector256ToVector512(y4 + i);
            a04 = Avx512F.FusedMultiplyAdd(w0, b, a04); a14 = Avx512F.FusedMultiplyAdd(w1, b, a14);
            b = Avx512DQ.BroadcastVector256ToVector512(y5 + i);
            a05 = Avx512F.FusedMultiplyAdd(w0, b, a05); a15 = Avx512F.FusedMultiplyAdd(w1, b, a15);
        }
        if (!last)
        {
            state[0] = a00; state[1] = a01; state[2] = a02; state[3] = a03; state[4] = a04; state[5] = a05;
            state[6] = a10; state[7] = a11; state[8] = a12; state[9] = a13; state[10] = a14; state[11] = a15;
            return;
        }
        StorePaired(a00, a10, output);
        StorePaired(a01, a11, output + outStride);
        StorePaired(a02, a12, output + 2 * outStride);
        StorePaired(a03, a13, output + 3 * outStride);
        StorePaired(a04, a14, output + 4 * outStride);
        StorePaired(a05, a15, output + 5 * outStride);
    }

    /// <summary><see cref="PairedTile4x6"/> for one activation row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void PairedTile4x1(float* x, nint pairStride, float* y, int n, float* output)
    {
        Vector512<float> a0 = default, a1 = default;
        float* x0 = x, x1 = x + pairStride;
        for (int i = 0; i < n; i += 8)
        {
            Vector512<float> b = Avx512DQ.BroadcastVector256ToVector512(y + i);
            a0 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(x0 + 2 * i), b, a0);
            a1 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(x1 + 2 * i), b, a1);
        }
        StorePaired(a0, a1, output);
    }

    /// <summary>Outputs 0..3 from two paired accumulators, each half reduced as an eight-lane accumulator.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StorePaired(Vector512<float> rows01, Vector512<float> rows23, float* output)
    {
        output[0] = QuantDot.HorizontalSum(rows01.GetLower());
        output[1] = QuantDot.HorizontalSum(rows01.GetUpper());
        output[2] = QuantDot.HorizontalSum(rows23.GetLower());
        output[3] = QuantDot.HorizontalSum(rows23.GetUpper());
    }

    /// <summary>Blocked-order tile: four rows of x against one row of y → out[0..3].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void BlockedTile4x1(float* x, nint xStride, float* y, int n, float* output)
    {
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        float* x0 = x, x1 = x + xStride, x2 = x + 2 * xStride, x3 = x + 3 * xStride;
        for (int i = 0; i < n; i += 8)
        {
            Vector256<float> b = Avx.LoadVector256(y + i);
            a0 = Fma.MultiplyAdd(Avx.LoadVector256(x0 + i), b, a0);
            a1 = Fma.MultiplyAdd(Avx.LoadVector256(x1 + i), b, a1);
            a2 = Fma.MultiplyAdd(Avx.LoadVector256(x2 + i), b, a2);
            a3 = Fma.MultiplyAdd(Avx.LoadVector256(x3 + i), b, a3);
        }
        output[0] = QuantDot.HorizontalSum(a0); output[1] = QuantDot.HorizontalSum(a1);
        output[2] = QuantDot.HorizontalSum(a2); output[3] = QuantDot.HorizontalSum(a3);
    }

    // ================================================================ reductions

    /// <summary>GGML_F32x8_REDUCE: ((s0+s2)+(s1+s3)), t = low + high, then (t0+t1)+(t2+t3).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float ReduceFour(Vector256<float> s0, Vector256<float> s1, Vector256<float> s2, Vector256<float> s3)
    {
        Vector256<float> s = (s0 + s2) + (s1 + s3);
        Vector128<float> t = s.GetLower() + s.GetUpper();
        return (t.GetElement(0) + t.GetElement(1)) + (t.GetElement(2) + t.GetElement(3));
    }

    /// <summary>Scalar form of <see cref="ReduceFour(Vector256{float}, Vector256{float}, Vector256{float}, Vector256{float})"/> over s[0..31] (s0 = s[0..7], ...).</summary>
    private static float ReduceFour(float* s)
    {
        float* t = stackalloc float[4];
        for (int k = 0; k < 4; k++)
        {
            float lo = (s[k] + s[16 + k]) + (s[8 + k] + s[24 + k]);
            float hi = (s[k + 4] + s[16 + k + 4]) + (s[8 + k + 4] + s[24 + k + 4]);
            t[k] = lo + hi;
        }
        return (t[0] + t[1]) + (t[2] + t[3]);
    }

    /// <summary>g = low + high, then (g0+g2)+(g1+g3) (the movehl/movehdup reduction).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float HorizontalSumPairs(Vector256<float> c) => QuantDot.HorizontalSum(c);
}
