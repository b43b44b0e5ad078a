using System.Runtime.InteropServices;
using Cria.Numerics;
using Cria.Numerics.Formats;
using Cria.Numerics.Kernels;
using Cria.Numerics.Threading;
using Xunit;

namespace Cria.Tests.Numerics;

/// <summary>
/// MatMul on random matrices of every supported type, several shapes, batch sizes and thread
/// counts. Two checks per output:
/// <list type="number">
/// <item><b>Exact</b> equality with the single dot-product kernel that ggml would use for that
/// output (QuantDot for Q8_0, and for Q4_0 with one activation row; Q4BatchDot's order for Q4_0
/// with several; FloatDot's vec_dot order for one activation row, or for row
/// lengths not divisible by 8 or row counts not divisible by 4; the blocked order otherwise),
/// applied to the activations prepared as ggml prepares them. This pins tiling, threading and
/// chunking to "no effect on the bits".</item>
/// <item>A float64 reference built from the dequantized weights and the <i>prepared</i> activations
/// (quantized to the type's activation format and decoded, or rounded to F16/BF16), so only float
/// accumulation error remains: tolerance 1e-4 · Σ|w·x|, above the worst-case bound n·2⁻²⁴ ≈ 3.1e-5
/// for n ≤ 512 terms. For Q4_1/Q5_1 the kernel multiplies each block offset m by the Q8_1 block
/// sum s, which is stored as a half (d·Σq rounded), so the reference uses that stored s too.</item>
/// </list>
/// </summary>
public unsafe class MatMulTests
{
    public static TheoryData<GgmlType, int, int> Shapes()
    {
        var d = new TheoryData<GgmlType, int, int>();
        foreach (var t in new[] { GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0, GgmlType.Q4_0 })
        {
            d.Add(t, 64, 96);
            d.Add(t, 172, 64);
            d.Add(t, 256, 512);
            d.Add(t, 6, 64);   // row count not a multiple of 4
            d.Add(t, 1, 32);
            if (t is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16)
            {
                d.Add(t, 64, 172); // row length not a multiple of 8 (ggml's ffn_down of stories260K)
                d.Add(t, 12, 5);
            }
        }
        foreach (var t in new[] { GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1 })
        {
            d.Add(t, 64, 96);
            d.Add(t, 6, 64);
            d.Add(t, 1, 32);
        }
        foreach (var t in new[] { GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K })
        {
            d.Add(t, 64, 256);
            d.Add(t, 6, 512);
            d.Add(t, 1, 256);
        }
        return d;
    }

    private sealed class Matrix : IDisposable
    {
        public byte* Data;
        public WeightMatrix W;
        public float[] Dequantized = Array.Empty<float>(); // rows × cols

        public void Dispose() { if (Data != null) NativeMemory.Free(Data); Data = null; }
    }

    private static Matrix RandomMatrix(GgmlType type, int rows, int cols, Random rng)
    {
        var values = new float[rows * cols];
        for (int i = 0; i < values.Length; i++) values[i] = (float)((rng.NextDouble() * 2 - 1) * (rng.Next(16) == 0 ? 4 : 1));
        long rowBytes = GgmlTypeInfo.RowBytes(type, cols);
        var m = new Matrix { Data = (byte*)NativeMemory.Alloc((nuint)Math.Max(1, rowBytes * rows)) };
        var all = new Span<byte>(m.Data, (int)(rowBytes * rows));
        for (int r = 0; r < rows; r++)
        {
            var src = values.AsSpan(r * cols, cols);
            var dst = all.Slice((int)(r * rowBytes), (int)rowBytes);
            switch (type)
            {
                case GgmlType.F32: MemoryMarshal.AsBytes(src).CopyTo(dst); break;
                case GgmlType.F16: Fp16Format.Quantize(src, dst); break;
                case GgmlType.BF16: Bf16Format.Quantize(src, dst); break;
                case GgmlType.Q8_0: Q8_0Format.Quantize(src, dst); break;
                case GgmlType.Q4_0: Q4_0Format.Quantize(src, dst); break;
                case GgmlType.Q4_1: Q4_1Format.Quantize(src, dst); break;
                case GgmlType.Q5_0: Q5_0Format.Quantize(src, dst); break;
                case GgmlType.Q5_1: Q5_1Format.Quantize(src, dst); break;
                case GgmlType.Q2_K: Q2_KFormat.Quantize(src, dst); break;
                case GgmlType.Q3_K: Q3_KFormat.Quantize(src, dst); break;
                case GgmlType.Q4_K: Q4_KFormat.Quantize(src, dst); break;
                case GgmlType.Q5_K: Q5_KFormat.Quantize(src, dst); break;
                case GgmlType.Q6_K: Q6_KFormat.Quantize(src, dst); break;
                default: throw new ArgumentException(type.ToString());
            }
        }
        m.W = new WeightMatrix(type, m.Data, rows, cols);
        m.Dequantized = new float[rows * cols];
        for (int r = 0; r < rows; r++) MatMul.GetRow(m.W, r, m.Dequantized.AsSpan(r * cols, cols));
        return m;
    }

    /// <summary>The activation format ggml multiplies <paramref name="type"/> weights with: (block size, block bytes), or (0, 0) for float types.</summary>
    private static (int size, int bytes) ActivationBlock(GgmlType type) => type switch
    {
        GgmlType.Q8_0 or GgmlType.Q4_0 or GgmlType.Q5_0 => (32, 34),
        GgmlType.Q4_1 or GgmlType.Q5_1 => (32, 36),
        GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K => (256, 292),
        _ => (0, 0),
    };

    /// <summary>Activations as ggml multiplies with them: quantized bytes (for quantized weights) or rounded floats.</summary>
    private static (byte[] q8, float[] values) Prepare(GgmlType type, float[] x, int batch, int cols)
    {
        var values = new float[x.Length];
        byte[] q8 = Array.Empty<byte>();
        var (bs, bb) = ActivationBlock(type);
        if (bs != 0)
        {
            int rowBytes = cols / bs * bb;
            q8 = new byte[batch * rowBytes];
            for (int b = 0; b < batch; b++)
            {
                var src = x.AsSpan(b * cols, cols);
                var dst = q8.AsSpan(b * rowBytes, rowBytes);
                if (bb == 34) Q8_0Format.QuantizeActivations(src, dst);
                else if (bb == 36) Q8_1Format.QuantizeActivations(src, dst);
                else Q8_KFormat.Quantize(src, dst);
            }
            if (bb == 34) Q8_0Format.Dequantize(q8, values);
            else if (bb == 36) Q8_1Format.Dequantize(q8, values);
            else Q8_KFormat.Dequantize(q8, values);
        }
        else
        {
            for (int i = 0; i < x.Length; i++)
                values[i] = type == GgmlType.F16 ? Fp16Format.Round(x[i]) : type == GgmlType.BF16 ? Bf16Format.Round(x[i]) : x[i];
        }
        return (q8, values);
    }

    /// <summary>The exact value ggml's kernel choice gives for one output.</summary>
    private static float ExpectedExact(Matrix m, (byte[] q8, float[] values) act, int batch, int r, int b)
    {
        var w = m.W;
        int cols = w.Cols;
        byte* row = w.Row(r);
        var (bs, bb) = ActivationBlock(w.Type);
        if (bs != 0)
        {
            fixed (byte* a = act.q8)
            {
                int blocks = cols / bs;
                byte* ab = a + b * blocks * bb;
                return w.Type switch
                {
                    GgmlType.Q8_0 => MatMul.BatchTiles(GgmlType.Q8_0, batch) ? Q8BatchDot.DotScalar(row, ab, blocks) : QuantDot.Q8_0Q8_0Scalar(row, ab, blocks),
                    GgmlType.Q4_0 => batch == 1 ? QuantDot.Q4_0Q8_0Scalar(row, ab, blocks) : Q4BatchDot.DotScalar(row, ab, blocks),
                    GgmlType.Q5_0 => QuantDot.Dot1Scalar<Q5Weights>(row, ab, blocks),
                    GgmlType.Q4_1 => LegacyDot.Q4_1Q8_1Scalar(row, ab, blocks),
                    GgmlType.Q5_1 => LegacyDot.Q5_1Q8_1Scalar(row, ab, blocks),
                    GgmlType.Q2_K => KQuantDot.Q2_KQ8_KScalar(row, ab, blocks),
                    GgmlType.Q3_K => KQuantDot.Q3_KQ8_KScalar(row, ab, blocks),
                    GgmlType.Q4_K => MatMul.BatchTiles(GgmlType.Q4_K, batch) ? Q4KBatchDot.DotScalar(row, ab, blocks) : KQuantDot.Q4_KQ8_KScalar(row, ab, blocks),
                    GgmlType.Q5_K => KQuantDot.Q5_KQ8_KScalar(row, ab, blocks),
                    _ => MatMul.BatchTiles(GgmlType.Q6_K, batch) ? Q6KBatchDot.DotScalar(row, ab, blocks) : KQuantDot.Q6_KQ8_KScalar(row, ab, blocks),
                };
            }
        }
        bool blocked = batch >= 2 && cols % 8 == 0 && w.Rows % 4 == 0;
        fixed (float* a = act.values)
        fixed (float* wd = m.Dequantized)
        {
            float* ab = a + b * cols;
            if (blocked) return FloatDot.F32BlockedScalar(wd + r * cols, ab, cols);
            return w.Type switch
            {
                GgmlType.F32 => FloatDot.F32Scalar((float*)row, ab, cols),
                GgmlType.F16 => FloatDot.F16Scalar((ushort*)row, ab, cols),
                _ => FloatDot.BF16Scalar((ushort*)row, ab, cols),
            };
        }
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Multiply_MatchesKernelExactly_AndFloat64Reference(GgmlType type, int rows, int cols)
    {
        var rng = new Random(rows * 1000 + cols + (int)type);
        using var m = RandomMatrix(type, rows, cols, rng);
        foreach (int threads in new[] { 1, 3 })
        {
            using var pool = new WorkerPool(threads);
            using var mm = new MatMul(pool);
            foreach (int batch in new[] { 1, 2, 7 })
            {
                var x = new float[batch * cols];
                for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 4 - 2);
                var y = new float[batch * rows];
                fixed (float* px = x)
                fixed (float* py = y)
                    mm.Multiply(m.W, px, batch, py);

                var act = Prepare(type, x, batch, cols);
                for (int b = 0; b < batch; b++)
                {
                    for (int r = 0; r < rows; r++)
                    {
                        float got = y[b * rows + r];
                        float exact = ExpectedExact(m, act, batch, r, b);
                        Assert.True(BitConverter.SingleToInt32Bits(exact) == BitConverter.SingleToInt32Bits(got),
                            $"{type} {rows}x{cols} threads {threads} batch {batch} [b{b}, r{r}]: kernel {exact:R}, matmul {got:R}");
                        double dot = 0, abs = 0;
                        for (int c = 0; c < cols; c++)
                        {
                            double p = (double)m.Dequantized[r * cols + c] * act.values[b * cols + c];
                            dot += p; abs += Math.Abs(p);
                        }
                        dot += StoredSumCorrection(m, act.q8, r, b);
                        Assert.True(Math.Abs(got - dot) <= 1e-4 * abs + 1e-30, $"{type} [b{b}, r{r}]: {got} vs {dot}");
                    }
                }
            }
        }
    }

    /// <summary>
    /// For Q4_1/Q5_1: Σ over blocks of m_w · (s_a - d_a·Σq_a), the part of the kernel's offset term
    /// that comes from the Q8_1 block sum being stored as a half. Zero for other types.
    /// </summary>
    private static double StoredSumCorrection(Matrix m, byte[] q8, int r, int b)
    {
        if (m.W.Type is not (GgmlType.Q4_1 or GgmlType.Q5_1)) return 0;
        int blocks = m.W.Cols / 32;
        double corr = 0;
        byte* row = m.W.Row(r);
        for (int i = 0; i < blocks; i++)
        {
            int ab = (b * blocks + i) * 36;
            double da = Fp16Format.ToSingle(BitConverter.ToUInt16(q8, ab));
            double s = Fp16Format.ToSingle(BitConverter.ToUInt16(q8, ab + 2));
            double sum = 0;
            for (int j = 0; j < 32; j++) sum += (sbyte)q8[ab + 4 + j];
            double mw = Fp16Format.ToSingle(*(ushort*)(row + i * m.W.RowBytes / blocks + 2));
            corr += mw * (s - da * sum);
        }
        return corr;
    }

    [Fact]
    public void Multiply_LargeBatch_SameBitsForAnyThreadCount()
    {
        // Exercises the batch tiles, the parallel activation preparation and chunk boundaries.
        var rng = new Random(42);
        foreach (var type in new[] { GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.F16, GgmlType.F32, GgmlType.BF16, GgmlType.Q5_0, GgmlType.Q4_1, GgmlType.Q4_K, GgmlType.Q6_K })
        {
            using var m = RandomMatrix(type, 200, 1024, rng);
            int batch = 67;
            var x = new float[batch * 1024];
            for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
            float[]? first = null;
            foreach (int threads in new[] { 1, 2, 4 })
            {
                using var pool = new WorkerPool(threads);
                using var mm = new MatMul(pool);
                var y = new float[batch * 200];
                fixed (float* px = x)
                fixed (float* py = y)
                    mm.Multiply(m.W, px, batch, py);
                if (first == null) first = y;
                else Assert.True(first.AsSpan().SequenceEqual(y), $"{type}: {threads} threads differ from 1 thread");
            }
            var act = Prepare(type, x, batch, 1024);
            foreach (var (b, r) in new[] { (0, 0), (66, 199), (33, 101), (65, 3) })
                Assert.Equal(ExpectedExact(m, act, batch, r, b), first![b * 200 + r]);
        }
    }

    /// <summary>
    /// Products sharing their input in one pool run give the bits of separate products: types whose
    /// activations take the same form (Q4_K + Q6_K + Q4_K, as in Q4_K_M files; F16 × 3; Q4_0 + Q8_0) and,
    /// through the fallback, mixed forms, several activation rows and rows that do not fill a chunk.
    /// </summary>
    [Fact]
    public void MultiplySharedInput_EqualsSeparateProducts()
    {
        var rng = new Random(4242);
        var cases = new (GgmlType a, GgmlType b, GgmlType c, int batch)[]
        {
            (GgmlType.Q4_K, GgmlType.Q6_K, GgmlType.Q4_K, 1),
            (GgmlType.F16, GgmlType.F16, GgmlType.F16, 1),
            (GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.Q4_0, 1),
            (GgmlType.Q4_K, GgmlType.F16, GgmlType.Q8_0, 1), // different forms: separate runs
            (GgmlType.Q8_0, GgmlType.Q8_0, GgmlType.Q8_0, 3), // several rows: separate runs
        };
        using var pool = new WorkerPool(3);
        using var mm = new MatMul(pool);
        foreach (var (ta, tb, tc, batch) in cases)
        {
            using var a = RandomMatrix(ta, 256, 512, rng);
            using var b = RandomMatrix(tb, 36, 512, rng); // fewer rows than two chunks per thread
            using var c = RandomMatrix(tc, 130, 512, rng);
            var x = new float[batch * 512];
            for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
            float[] ya = new float[batch * 256], yb = new float[batch * 36], yc = new float[batch * 130];
            float[] sa = new float[ya.Length], sb = new float[yb.Length], sc = new float[yc.Length];
            float[] pa = new float[ya.Length], pb = new float[yb.Length];
            fixed (float* px = x)
            fixed (float* pya = ya) fixed (float* pyb = yb) fixed (float* pyc = yc)
            fixed (float* psa = sa) fixed (float* psb = sb) fixed (float* psc = sc)
            fixed (float* ppa = pa) fixed (float* ppb = pb)
            {
                mm.Multiply(a.W, px, batch, pya);
                mm.Multiply(b.W, px, batch, pyb);
                mm.Multiply(c.W, px, batch, pyc);
                mm.MultiplySharedInput(px, batch, a.W, psa, b.W, psb, c.W, psc);
                mm.MultiplySharedInput(px, batch, a.W, ppa, b.W, ppb);
            }
            string what = $"{ta}+{tb}+{tc} batch {batch}";
            Assert.True(ya.AsSpan().SequenceEqual(sa) && yb.AsSpan().SequenceEqual(sb) && yc.AsSpan().SequenceEqual(sc), what);
            Assert.True(ya.AsSpan().SequenceEqual(pa) && yb.AsSpan().SequenceEqual(pb), what + " (two)");
            Assert.Contains(sa, v => v != 0);
        }
    }

    [Theory]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q5_K)]
    [InlineData(GgmlType.Q6_K)]
    public void Multiply_KQuantBatches_MatchSingleRowKernelBitForBit(GgmlType type)
    {
        // Batch 1..9 and odd row counts: the 1×4 / 1×8 register tiles (KQuantDot.*Rows4, *Rows8), their
        // leftover activation rows and partial row chunks must give the single-row kernel's bits;
        // Q4_K's and Q6_K's 8×8 tiles (Q4KBatchDot, Q6KBatchDot, with AVX-VNNI), partial in rows and columns, their scalar twins'.
        var rng = new Random(4242 + (int)type);
        foreach (var (rows, cols) in new[] { (13, 512), (7, 768), (1, 256) })
        {
            using var m = RandomMatrix(type, rows, cols, rng);
            foreach (int threads in new[] { 1, 2 })
            {
                using var pool = new WorkerPool(threads);
                using var mm = new MatMul(pool);
                for (int batch = 1; batch <= 9; batch++)
                {
                    var x = new float[batch * cols];
                    for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 4 - 2);
                    var y = new float[batch * rows];
                    fixed (float* px = x)
                    fixed (float* py = y)
                        mm.Multiply(m.W, px, batch, py);
                    var act = Prepare(type, x, batch, cols);
                    for (int b = 0; b < batch; b++)
                        for (int r = 0; r < rows; r++)
                        {
                            float exact = ExpectedExact(m, act, batch, r, b);
                            float got = y[b * rows + r];
                            Assert.True(BitConverter.SingleToInt32Bits(exact) == BitConverter.SingleToInt32Bits(got),
                                $"{type} {rows}x{cols} threads {threads} batch {batch} [b{b}, r{r}]: kernel {exact:R}, matmul {got:R}");
                        }
                }
            }
        }
    }

    [Fact]
    public void Multiply_SteadyState_DoesNotAllocate()
    {
        var rng = new Random(5);
        using var q = RandomMatrix(GgmlType.Q8_0, 128, 256, rng);
        using var h = RandomMatrix(GgmlType.F16, 128, 256, rng);
        using var q4 = RandomMatrix(GgmlType.Q4_0, 128, 256, rng); // batched: Q4BatchDot and its bias scratch
        using var pool = new WorkerPool(2);
        using var mm = new MatMul(pool);
        var x = new float[16 * 256];
        var y = new float[16 * 128];
        fixed (float* px = x)
        fixed (float* py = y)
        {
            int[] batches = { 1, 16, 3 };
            nint input = (nint)px, output = (nint)py; // fixed locals cannot be captured
            SteadyState.AllocatesNothing(() =>
            {
                for (int i = 0; i < 50; i++)
                    foreach (int batch in batches)
                    {
                        mm.Multiply(q.W, (float*)input, batch, (float*)output);
                        mm.Multiply(h.W, (float*)input, batch, (float*)output);
                        mm.Multiply(q4.W, (float*)input, batch, (float*)output);
                    }
            });
        }
    }

    [Theory]
    [InlineData(GgmlType.F32)]
    [InlineData(GgmlType.F16)]
    [InlineData(GgmlType.BF16)]
    [InlineData(GgmlType.Q8_0)]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q4_1)]
    [InlineData(GgmlType.Q5_0)]
    [InlineData(GgmlType.Q5_1)]
    [InlineData(GgmlType.Q2_K)]
    [InlineData(GgmlType.Q3_K)]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q5_K)]
    [InlineData(GgmlType.Q6_K)]
    public void GetRow_DecodesOneRowExactly(GgmlType type)
    {
        var rng = new Random(9);
        int n = GgmlTypeInfo.BlockSize(type) == 256 ? 256 : 64;
        using var m = RandomMatrix(type, 5, n, rng);
        var row = new float[n];
        MatMul.GetRow(m.W, 3, row);
        var expected = new float[n];
        var bytes = new ReadOnlySpan<byte>(m.W.Row(3), (int)m.W.RowBytes);
        switch (type)
        {
            case GgmlType.F32: MemoryMarshal.Cast<byte, float>(bytes).CopyTo(expected); break;
            case GgmlType.F16: Fp16Format.Dequantize(bytes, expected); break;
            case GgmlType.BF16: Bf16Format.Dequantize(bytes, expected); break;
            case GgmlType.Q8_0: Q8_0Format.Dequantize(bytes, expected); break;
            case GgmlType.Q4_0: Q4_0Format.Dequantize(bytes, expected); break;
            case GgmlType.Q4_1: Q4_1Format.Dequantize(bytes, expected); break;
            case GgmlType.Q5_0: Q5_0Format.Dequantize(bytes, expected); break;
            case GgmlType.Q5_1: Q5_1Format.Dequantize(bytes, expected); break;
            case GgmlType.Q2_K: Q2_KFormat.Dequantize(bytes, expected); break;
            case GgmlType.Q3_K: Q3_KFormat.Dequantize(bytes, expected); break;
            case GgmlType.Q4_K: Q4_KFormat.Dequantize(bytes, expected); break;
            case GgmlType.Q5_K: Q5_KFormat.Dequantize(bytes, expected); break;
            case GgmlType.Q6_K: Q6_KFormat.Dequantize(bytes, expected); break;
        }
        Assert.Equal(expected, row);
        Assert.Throws<ArgumentOutOfRangeException>(() => MatMul.GetRow(m.W, 5, row));
        Assert.Throws<ArgumentException>(() => MatMul.GetRow(m.W, 0, new float[n - 1]));
    }

    [Fact]
    public void WeightMatrix_AndMultiply_ValidateArguments()
    {
        byte* p = stackalloc byte[64];
        Assert.Throws<ArgumentException>(() => new WeightMatrix(GgmlType.Q8_0, p, 1, 48));
        Assert.Throws<ArgumentException>(() => new WeightMatrix((GgmlType)4, p, 1, 32));
        var w = new WeightMatrix(GgmlType.Q8_0, p, 1, 32);
        Assert.Equal(34, w.RowBytes);
        Assert.Equal(GgmlType.Q8_0, w.Type);
        Assert.Equal(32, w.Cols);
        Assert.Equal(1, w.Rows);

        using var pool = new WorkerPool(1);
        using var mm = new MatMul(pool);
        Assert.Same(pool, mm.Pool);
        var k = new WeightMatrix(GgmlType.IQ2_XXS, p, 0, 256);
        float* x = stackalloc float[256];
        float* y = stackalloc float[4];
        Assert.Throws<NotSupportedException>(() => mm.Multiply(k, x, 1, y));
        mm.Multiply(w, x, 0, y); // empty batch: nothing to do
    }

    /// <summary>A copy of a Q4_0, Q4_K or Q8_0 matrix repacked into eight-row groups (as the model loader makes).</summary>
    private static Matrix Repacked(Matrix m)
    {
        var w = m.W;
        long groupBytes = w.RowBytes * 8;
        var r = new Matrix { Data = (byte*)NativeMemory.Alloc((nuint)(groupBytes * (w.Rows / 8))), Dequantized = m.Dequantized };
        for (int g = 0; g < w.Rows / 8; g++)
        {
            byte* src = w.Data + g * groupBytes, dst = r.Data + g * groupBytes;
            Assert.True(w.Type switch
            {
                GgmlType.Q4_K => Q4_Kx8Format.Repack(src, (nint)w.RowBytes, dst, w.Cols / 256),
                GgmlType.Q6_K => Q6_Kx8Format.Repack(src, (nint)w.RowBytes, dst, w.Cols / 256),
                GgmlType.Q8_0 => Q8_0x8Format.Repack(src, (nint)w.RowBytes, dst, w.Cols / 32),
                _ => Q4_0x8Format.Repack(src, (nint)w.RowBytes, dst, w.Cols / 32),
            });
        }
        var layout = w.Type switch
        {
            GgmlType.Q4_K => WeightLayout.Q4_Kx8, GgmlType.Q6_K => WeightLayout.Q6_Kx8, GgmlType.Q8_0 => WeightLayout.Q8_0x8, _ => WeightLayout.Q4_0x8,
        };
        r.W = new WeightMatrix(w.Type, r.Data, w.Rows, w.Cols, layout);
        return r;
    }

    /// <summary>
    /// Repacked Q4_0, Q8_0, Q4_K and Q6_K give every output the bits of the batched order on the plain row
    /// (<see cref="Q4BatchDot.DotScalar"/>, <see cref="Q8BatchDot.DotScalar"/>, <see cref="Q4KBatchDot.DotScalar"/>,
    /// <see cref="Q6KBatchDot.DotScalar"/>) for one activation row (decode) and several (prompt tiles); across thread counts
    /// and row counts that leave partial chunks. Where the plain matrix's batches take that order too (Q4_0 and Q6_K; Q8_0 and
    /// Q4_K on CPUs with AVX-VNNI), a batch equals the plain product bit for bit. The last row reads back exactly.
    /// </summary>
    [SkippableTheory]
    [InlineData(GgmlType.Q4_0, 8, 32)]
    [InlineData(GgmlType.Q4_0, 136, 256)]
    [InlineData(GgmlType.Q4_0, 264, 1024)]
    [InlineData(GgmlType.Q4_K, 8, 256)]
    [InlineData(GgmlType.Q4_K, 136, 512)]
    [InlineData(GgmlType.Q4_K, 72, 2048)]
    [InlineData(GgmlType.Q6_K, 8, 256)]
    [InlineData(GgmlType.Q6_K, 136, 512)]
    [InlineData(GgmlType.Q6_K, 72, 2048)]
    [InlineData(GgmlType.Q8_0, 8, 32)]
    [InlineData(GgmlType.Q8_0, 136, 256)]
    [InlineData(GgmlType.Q8_0, 264, 1024)]
    public void RepackedMatrix_GivesTheBatchedOrderExactly(GgmlType type, int rows, int cols)
    {
        Skip.If(type is GgmlType.Q4_K or GgmlType.Q6_K && !CpuFeatures.Avx2Fma, $"the {type} layout needs AVX2 and FMA, which this CPU lacks");
        var rng = new Random(9000 + rows + cols + (int)type);
        using var plain = RandomMatrix(type, rows, cols, rng);
        using var packed = Repacked(plain);
        var (blockSize, actBlockBytes) = ActivationBlock(type);
        int blocks = cols / blockSize;
        foreach (int threads in new[] { 1, 3 })
        {
            using var pool = new WorkerPool(threads);
            using var mm = new MatMul(pool);
            foreach (int batch in new[] { 1, 2, 7, 17, 33 })
            {
                var x = new float[batch * cols];
                for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 4 - 2);
                var y = new float[batch * rows];
                var yPlain = new float[batch * rows];
                fixed (float* px = x) fixed (float* py = y) fixed (float* pp = yPlain)
                {
                    mm.Multiply(packed.W, px, batch, py);
                    mm.Multiply(plain.W, px, batch, pp);
                }
                var (q8, _) = Prepare(type, x, batch, cols);
                fixed (byte* a = q8)
                    for (int b = 0; b < batch; b++)
                        for (int r = 0; r < rows; r++)
                        {
                            byte* ab = a + b * blocks * actBlockBytes;
                            float expected = type switch
                            {
                                GgmlType.Q4_0 => Q4BatchDot.DotScalar(plain.W.Row(r), ab, blocks),
                                GgmlType.Q8_0 => Q8BatchDot.DotScalar(plain.W.Row(r), ab, blocks),
                                GgmlType.Q6_K => Q6KBatchDot.DotScalar(plain.W.Row(r), ab, blocks),
                                _ => Q4KBatchDot.DotScalar(plain.W.Row(r), ab, blocks),
                            };
                            Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(y[b * rows + r]),
                                $"{type} threads {threads} batch {b}/{batch} row {r}: {y[b * rows + r]:R}, expected {expected:R}");
                        }
                if (batch > 1 && (type is GgmlType.Q4_0 or GgmlType.Q6_K || CpuFeatures.VnniTiles)) Assert.Equal(yPlain, y);
            }
        }
        var row = new float[cols];
        for (int r = 0; r < rows; r++) // every lane of every group reads back as the plain row's floats
        {
            MatMul.GetRow(packed.W, r, row);
            Assert.Equal(plain.Dequantized.AsSpan(r * cols, cols).ToArray(), row);
        }
    }

    /// <summary>Repacked rows read back exactly; the layout is refused for other types and row counts, and has no contiguous rows.</summary>
    [Fact]
    public void RepackedQ4_0_RowsReadBack_AndTheLayoutIsChecked()
    {
        var rng = new Random(9100);
        using var plain = RandomMatrix(GgmlType.Q4_0, 24, 96, rng);
        using var packed = Repacked(plain);
        var row = new float[96];
        for (int r = 0; r < 24; r++)
        {
            MatMul.GetRow(packed.W, r, row);
            Assert.Equal(plain.Dequantized.AsSpan(r * 96, 96).ToArray(), row);
        }
        Assert.Throws<InvalidOperationException>(() => { packed.W.Row(0); });
        Assert.Throws<ArgumentException>(() => new WeightMatrix(GgmlType.Q8_0, plain.Data, 8, 32, WeightLayout.Q4_0x8));
        Assert.Throws<ArgumentException>(() => new WeightMatrix(GgmlType.Q4_0, plain.Data, 12, 96, WeightLayout.Q4_0x8));
    }

    /// <summary>
    /// One input shared by a plain Q8_0 matrix and repacked Q4_0 ones (the first matrix decides the activation form,
    /// the others still need their −8·Σa): the bits of separate products.
    /// </summary>
    [Fact]
    public void MultiplySharedInput_WithRepackedQ4_0_EqualsSeparateProducts()
    {
        var rng = new Random(9200);
        using var pool = new WorkerPool(3);
        using var mm = new MatMul(pool);
        using var a = RandomMatrix(GgmlType.Q8_0, 64, 512, rng);
        using var b0 = RandomMatrix(GgmlType.Q4_0, 40, 512, rng);
        using var c0 = RandomMatrix(GgmlType.Q4_0, 136, 512, rng);
        using var b = Repacked(b0);
        using var c = Repacked(c0);
        var x = new float[512];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        float[] ya = new float[64], yb = new float[40], yc = new float[136];
        float[] sa = new float[64], sb = new float[40], sc = new float[136];
        fixed (float* px = x)
        fixed (float* pya = ya) fixed (float* pyb = yb) fixed (float* pyc = yc)
        fixed (float* psa = sa) fixed (float* psb = sb) fixed (float* psc = sc)
        {
            mm.Multiply(a.W, px, 1, pya);
            mm.Multiply(b.W, px, 1, pyb);
            mm.Multiply(c.W, px, 1, pyc);
            mm.MultiplySharedInput(px, 1, a.W, psa, b.W, psb, c.W, psc);
        }
        Assert.Equal(ya, sa);
        Assert.Equal(yb, sb);
        Assert.Equal(yc, sc);
        Assert.Contains(sb, v => v != 0);
    }
}
