using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Cria.Numerics.Kernels;

/// <summary>
/// Element-wise and row operations of a Llama forward pass, with ggml's arithmetic (AVX2 build):
/// <list type="bullet">
/// <item><see cref="RmsNorm"/>: sum of float squares accumulated in double in element order,
/// mean narrowed to float, scale = 1/sqrtf(mean + eps), then (x·scale)·weight — two float
/// multiplications, as ggml's rms_norm followed by its separate mul by the norm weight.</item>
/// <item><see cref="Softmax"/>: max, then exp(x - max) eight at a time with ggml's vectorized expf
/// (ggml_v_expf, an FMA polynomial; the tail uses the C library's expf), each group of eight
/// summed in float and accumulated in double, then every value multiplied by (float)(1/sum).</item>
/// <item><see cref="SiluMul"/>: silu(g) = g/(1+exp(-g)) eight at a time with ggml_v_expf (tail:
/// expf), rounded to float, then multiplied by up — ggml's silu followed by its mul.</item>
/// <item><see cref="Add"/>, <see cref="Mul"/>, <see cref="Scale"/>: one rounding per element, so any
/// vector width gives the same bits.</item>
/// </list>
/// The scalar twins (internal, used when AVX2+FMA is missing, and by the tests) emulate the vector
/// lanes and return the same bits.
/// </summary>
public static unsafe class VectorOps
{
    // ================================================================ RMS norm

    /// <summary>dst = x / sqrt(mean(x²) + eps) ⊙ weight (ggml's rms_norm then mul). dst may alias x.</summary>
    public static void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float epsilon, Span<float> dst)
    {
        int n = x.Length;
        if (weight.Length != n || dst.Length != n) throw new ArgumentException("x, weight and dst must have the same length");
        if (n == 0) return;
        fixed (float* px = x)
        fixed (float* pw = weight)
        fixed (float* pd = dst)
        {
            float scale = RmsScale(px, n, epsilon);
            int i = 0;
            if (Vector256.IsHardwareAccelerated)
            {
                Vector256<float> s = Vector256.Create(scale);
                for (; i + 8 <= n; i += 8) Vector256.Store(Vector256.Load(px + i) * s * Vector256.Load(pw + i), pd + i);
            }
            for (; i < n; i++) pd[i] = px[i] * scale * pw[i];
        }
    }

    internal static void RmsNormScalar(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float epsilon, Span<float> dst)
    {
        fixed (float* px = x)
        {
            float scale = RmsScale(px, x.Length, epsilon);
            for (int i = 0; i < x.Length; i++) dst[i] = x[i] * scale * weight[i];
        }
    }

    /// <summary>1/sqrtf(mean + eps) with the mean of squares summed in double, element by element (as ggml does).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float RmsScale(float* x, int n, float epsilon)
    {
        double sum = 0;
        for (int i = 0; i < n; i++) sum += x[i] * x[i];
        float mean = (float)(sum / n);
        return 1.0f / MathF.Sqrt(mean + epsilon);
    }

    // ================================================================ softmax

    /// <summary>
    /// In-place softmax of one row, with ggml's soft_max arithmetic (see the class remarks).
    /// <para>ggml vectorizes exp over groups of eight from the start of its row and uses the C
    /// library's expf on the last n mod 8 elements. llama.cpp's attention rows are longer than
    /// the visible positions: the KV length is padded (to a multiple of 32) and the padding is
    /// masked with -infinity, so there every element goes through the vectorized exp. Pass
    /// <paramref name="paddedRow"/> = true to get those bits for a row holding just the visible
    /// positions (it behaves as if the row were padded with -infinity to a multiple of 8; the
    /// padding would contribute exact zeros).</para>
    /// </summary>
    public static void Softmax(Span<float> x, bool paddedRow = false)
    {
        if (x.Length == 0) return;
        fixed (float* p = x)
        {
            if (CpuFeatures.Avx2Fma) SoftmaxAvx2(p, x.Length, paddedRow);
            else SoftmaxScalar(p, x.Length, paddedRow);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void SoftmaxAvx2(float* x, int n, bool paddedRow)
    {
        float max = Max(x, n);
        double sum = 0;
        int i = 0;
        Vector256<float> vmax = Vector256.Create(max);
        for (; i + 8 <= n; i += 8)
        {
            Vector256<float> v = Exp8(Avx.Subtract(Avx.LoadVector256(x + i), vmax));
            Avx.Store(x + i, v);
            sum += QuantDot.HorizontalSum(v);
        }
        if (paddedRow && i < n)
        {
            float* t = stackalloc float[8];
            for (int k = 0; k < 8; k++) t[k] = i + k < n ? x[i + k] : float.NegativeInfinity;
            Vector256<float> v = Exp8(Avx.Subtract(Avx.LoadVector256(t), vmax));
            Avx.Store(t, v);
            for (int k = 0; i + k < n; k++) x[i + k] = t[k];
            sum += QuantDot.HorizontalSum(v);
            i = n;
        }
        for (; i < n; i++)
        {
            float v = MathF.Exp(x[i] - max);
            sum += v;
            x[i] = v;
        }
        ScaleInPlace(x, n, (float)(1.0 / sum));
    }

    internal static void SoftmaxScalar(float* x, int n, bool paddedRow = false)
    {
        float max = Max(x, n);
        double sum = 0;
        int i = 0;
        for (; i + 8 <= n; i += 8)
        {
            for (int k = 0; k < 8; k++) x[i + k] = ExpLane(x[i + k] - max);
            sum += QuantDot.HorizontalSum(x + i);
        }
        if (paddedRow && i < n)
        {
            float* t = stackalloc float[8];
            for (int k = 0; k < 8; k++) t[k] = ExpLane((i + k < n ? x[i + k] : float.NegativeInfinity) - max);
            for (int k = 0; i + k < n; k++) x[i + k] = t[k];
            sum += QuantDot.HorizontalSum(t);
            i = n;
        }
        for (; i < n; i++)
        {
            float v = MathF.Exp(x[i] - max);
            sum += v;
            x[i] = v;
        }
        float s = (float)(1.0 / sum);
        for (int k = 0; k < n; k++) x[k] *= s;
    }

    internal static void SoftmaxScalar(Span<float> x, bool paddedRow = false)
    {
        fixed (float* p = x) SoftmaxScalar(p, x.Length, paddedRow);
    }

    // ggml's MAX(max, x): keeps the running value unless it is not greater.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Max(float* x, int n)
    {
        float max = float.NegativeInfinity;
        for (int i = 0; i < n; i++) max = max > x[i] ? max : x[i];
        return max;
    }

    // ================================================================ SiLU · up

    /// <summary>
    /// dst[i] = silu(gate[i]) · up[i] with silu(x) = x/(1+exp(-x)) (ggml_vec_silu_f32, then mul).
    /// dst may alias gate or up. ggml applies silu row by row and groups elements in eights from
    /// each row's start; when the spans hold several rows, pass <paramref name="rowLength"/> (the
    /// feed-forward width) so the grouping, and hence every bit, matches. 0 means one row.
    /// </summary>
    public static void SiluMul(ReadOnlySpan<float> gate, ReadOnlySpan<float> up, Span<float> dst, int rowLength = 0)
    {
        int n = gate.Length;
        if (up.Length != n || dst.Length != n) throw new ArgumentException("gate, up and dst must have the same length");
        if (rowLength <= 0) rowLength = n;
        if (n % rowLength != 0) throw new ArgumentException("length is not a whole number of rows", nameof(rowLength));
        if (n == 0) return;
        fixed (float* g = gate)
        fixed (float* u = up)
        fixed (float* d = dst)
        {
            for (int r = 0; r < n; r += rowLength)
            {
                if (CpuFeatures.Avx2Fma) SiluMulRowAvx2(g + r, u + r, d + r, rowLength);
                else SiluMulRowScalar(g + r, u + r, d + r, rowLength);
            }
        }
    }

    internal static void SiluMulScalar(ReadOnlySpan<float> gate, ReadOnlySpan<float> up, Span<float> dst, int rowLength = 0)
    {
        int n = gate.Length;
        if (rowLength <= 0) rowLength = n;
        fixed (float* g = gate)
        fixed (float* u = up)
        fixed (float* d = dst)
            for (int r = 0; r < n; r += rowLength) SiluMulRowScalar(g + r, u + r, d + r, rowLength);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void SiluMulRowAvx2(float* g, float* u, float* d, int n)
    {
        int i = 0;
        for (; i + 8 <= n; i += 8)
        {
            Vector256<float> x = Avx.LoadVector256(g + i);
            Vector256<float> e = Exp8(Avx.Subtract(Vector256<float>.Zero, x));
            Vector256<float> s = Avx.Divide(x, Avx.Add(Vector256.Create(1f), e));
            Avx.Store(d + i, Avx.Multiply(s, Avx.LoadVector256(u + i)));
        }
        for (; i < n; i++) d[i] = SiluTail(g[i]) * u[i];
    }

    private static void SiluMulRowScalar(float* g, float* u, float* d, int n)
    {
        int i = 0;
        for (; i + 8 <= n; i += 8)
            for (int k = 0; k < 8; k++)
            {
                float x = g[i + k];
                d[i + k] = x / (1f + ExpLane(0f - x)) * u[i + k];
            }
        for (; i < n; i++) d[i] = SiluTail(g[i]) * u[i];
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float SiluTail(float x) => x / (1.0f + MathF.Exp(-x));

    // ================================================================ simple element-wise ops

    /// <summary>dst[i] += src[i] (ggml_add; float addition, any order gives the same bits).</summary>
    public static void Add(ReadOnlySpan<float> src, Span<float> dst)
    {
        if (src.Length != dst.Length) throw new ArgumentException("lengths differ");
        fixed (float* s = src)
        fixed (float* d = dst)
            Add(s, d, d, src.Length);
    }

    /// <summary>dst[i] = a[i] + b[i]. dst may alias a or b.</summary>
    public static void Add(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> dst)
    {
        if (a.Length != b.Length || a.Length != dst.Length) throw new ArgumentException("lengths differ");
        fixed (float* pa = a)
        fixed (float* pb = b)
        fixed (float* d = dst)
            Add(pa, pb, d, a.Length);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Add(float* a, float* b, float* d, int n)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
            for (; i + 8 <= n; i += 8) Vector256.Store(Vector256.Load(a + i) + Vector256.Load(b + i), d + i);
        for (; i < n; i++) d[i] = a[i] + b[i];
    }

    /// <summary>dst[i] = a[i] · b[i]. dst may alias a or b.</summary>
    public static void Mul(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> dst)
    {
        if (a.Length != b.Length || a.Length != dst.Length) throw new ArgumentException("lengths differ");
        fixed (float* pa = a)
        fixed (float* pb = b)
        fixed (float* d = dst)
        {
            int n = a.Length, i = 0;
            if (Vector256.IsHardwareAccelerated)
                for (; i + 8 <= n; i += 8) Vector256.Store(Vector256.Load(pa + i) * Vector256.Load(pb + i), d + i);
            for (; i < n; i++) d[i] = pa[i] * pb[i];
        }
    }

    /// <summary>x[i] *= factor (ggml_vec_scale_f32).</summary>
    public static void Scale(Span<float> x, float factor)
    {
        fixed (float* p = x) ScaleInPlace(p, x.Length, factor);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ScaleInPlace(float* x, int n, float factor)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> f = Vector256.Create(factor);
            for (; i + 8 <= n; i += 8) Vector256.Store(Vector256.Load(x + i) * f, x + i);
        }
        for (; i < n; i++) x[i] *= factor;
    }

    /// <summary>Dot product with ggml_vec_dot_f32's arithmetic (see <see cref="FloatDot.F32(float*, float*, int)"/>).</summary>
    public static float Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b) => FloatDot.F32(a, b);

    // ================================================================ ggml_v_expf

    private static readonly float ExpShift = BitConverter.Int32BitsToSingle(0x4B400000);  // 0x1.8p23: rounds to an integer when added
    private static readonly float Log2E = BitConverter.Int32BitsToSingle(0x3FB8AA3B);     // 0x1.715476p+0
    private static readonly float Ln2Hi = BitConverter.Int32BitsToSingle(0x3F317200);     // 0x1.62e4p-1
    private static readonly float Ln2Lo = BitConverter.Int32BitsToSingle(0x35BFBE8E);     // 0x1.7f7d1cp-20
    private static readonly float C5 = BitConverter.Int32BitsToSingle(0x3C072010);        // 0x1.0e4020p-7
    private static readonly float C4 = BitConverter.Int32BitsToSingle(0x3D2B9F17);        // 0x1.573e2ep-5
    private static readonly float C3 = BitConverter.Int32BitsToSingle(0x3E2AAF33);        // 0x1.555e66p-3
    private static readonly float C2 = BitConverter.Int32BitsToSingle(0x3EFFFEDB);        // 0x1.fffdb6p-2
    private static readonly float C1 = BitConverter.Int32BitsToSingle(0x3F7FFFF6);        // 0x1.ffffecp-1

    /// <summary>
    /// ggml's vectorized expf for AVX2+FMA (adapted by ggml from Arm's optimized routines):
    /// x = n·ln2 + b with n = round(x·log2 e), e^b from a degree-5 polynomial, 2^n built in the
    /// exponent bits; |n| &gt; 126 takes a two-factor scale to reach denormals/infinity. Max error
    /// about 1.5 ulp; not the same bits as the C library's expf.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> Exp8(Vector256<float> x)
    {
        Vector256<float> r = Vector256.Create(ExpShift);
        Vector256<float> z = Fma.MultiplyAdd(x, Vector256.Create(Log2E), r);
        Vector256<float> n = Avx.Subtract(z, r);
        Vector256<float> b = Fma.MultiplyAddNegated(n, Vector256.Create(Ln2Lo), Fma.MultiplyAddNegated(n, Vector256.Create(Ln2Hi), x));
        Vector256<int> e = Avx2.ShiftLeftLogical(z.AsInt32(), 23);
        Vector256<float> k = Avx2.Add(e, Vector256.Create(1f).AsInt32()).AsSingle();
        Vector256<float> absN = Avx.AndNot(Vector256.Create(-0f), n);
        Vector256<float> c = Avx.CompareGreaterThan(absN, Vector256.Create(126f));
        Vector256<float> u = Avx.Multiply(b, b);
        Vector256<float> j = Fma.MultiplyAdd(
            Fma.MultiplyAdd(Fma.MultiplyAdd(Vector256.Create(C5), b, Vector256.Create(C4)), u, Fma.MultiplyAdd(Vector256.Create(C3), b, Vector256.Create(C2))),
            u, Avx.Multiply(Vector256.Create(C1), b));
        if (Avx.MoveMask(c) == 0) return Fma.MultiplyAdd(j, k, k);
        Vector256<int> g = Avx2.And(Avx.CompareLessThanOrEqual(n, Vector256<float>.Zero).AsInt32(), Vector256.Create(unchecked((int)0x82000000)));
        Vector256<float> s1 = Avx2.Add(g, Vector256.Create(0x7F000000)).AsSingle();
        Vector256<float> s2 = Avx2.Subtract(e, g).AsSingle();
        Vector256<float> d = Avx.CompareGreaterThan(absN, Vector256.Create(192f));
        Vector256<float> near = Avx.BlendVariable(Fma.MultiplyAdd(k, j, k), Avx.Multiply(Fma.MultiplyAdd(s2, j, s2), s1), c);
        return Avx.BlendVariable(near, Avx.Multiply(s1, s1), d);
    }

    /// <summary>One lane of <see cref="Exp8"/>, computed with scalar fused multiply-adds; identical bits.</summary>
    internal static float ExpLane(float x)
    {
        float r = ExpShift;
        float z = MathF.FusedMultiplyAdd(x, Log2E, r);
        float n = z - r;
        float b = MathF.FusedMultiplyAdd(-n, Ln2Lo, MathF.FusedMultiplyAdd(-n, Ln2Hi, x));
        uint e = BitConverter.SingleToUInt32Bits(z) << 23;
        float k = BitConverter.UInt32BitsToSingle(e + 0x3F800000);
        float u = b * b;
        float j = MathF.FusedMultiplyAdd(
            MathF.FusedMultiplyAdd(MathF.FusedMultiplyAdd(C5, b, C4), u, MathF.FusedMultiplyAdd(C3, b, C2)),
            u, C1 * b);
        float absN = MathF.Abs(n);
        if (!(absN > 126f)) return MathF.FusedMultiplyAdd(j, k, k);
        uint g = n <= 0f ? 0x82000000u : 0u;
        float s1 = BitConverter.UInt32BitsToSingle(g + 0x7F000000u);
        float s2 = BitConverter.UInt32BitsToSingle(e - g);
        if (absN > 192f) return s1 * s1;
        return MathF.FusedMultiplyAdd(s2, j, s2) * s1;
    }
}
