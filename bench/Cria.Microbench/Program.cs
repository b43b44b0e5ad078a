using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Running;
using Cria.Numerics;
using Cria.Numerics.Formats;
using Cria.Numerics.Kernels;
using Cria.Numerics.Threading;

namespace Cria.Microbench;

/// <summary>
/// BenchmarkDotNet micro-benchmarks of the numeric kernels (see bench/README.md):
/// <c>dotnet run -c Release --project bench/Cria.Microbench -- --filter '*'</c>.
/// </summary>
public static class Program
{
    public static void Main(string[] args) => BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
}

/// <summary>Random rows of one weight type with the activations already in the form the kernel takes.</summary>
internal sealed unsafe class KernelData : IDisposable
{
    public readonly byte* Weights;
    public readonly byte* Activations;   // Q8_0 / Q8_K blocks, or floats rounded to F16
    public readonly long RowBytes;
    public readonly int Rows, Cols;

    public KernelData(GgmlType type, int rows, int cols, int seed = 1)
    {
        Rows = rows; Cols = cols;
        var rng = new Random(seed);
        RowBytes = GgmlTypeInfo.RowBytes(type, cols);
        Weights = (byte*)NativeMemory.AlignedAlloc((nuint)(RowBytes * rows), 64);
        var row = new float[cols];
        var enc = new byte[RowBytes];
        for (int r = 0; r < rows; r++)
        {
            for (int i = 0; i < cols; i++) row[i] = (float)(rng.NextDouble() * 2 - 1);
            RowEncoder.Encode(type, row, enc);
            enc.CopyTo(new Span<byte>(Weights + r * RowBytes, (int)RowBytes));
        }
        for (int i = 0; i < cols; i++) row[i] = (float)(rng.NextDouble() * 2 - 1);
        Activations = (byte*)NativeMemory.AlignedAlloc((nuint)(cols * 4 + 1024), 64);
        var act = new Span<byte>(Activations, cols * 4 + 1024);
        switch (type)
        {
            case GgmlType.Q8_0 or GgmlType.Q4_0: Q8_0Format.QuantizeActivations(row, act); break;
            case GgmlType.Q4_K or GgmlType.Q6_K: Q8_KFormat.Quantize(row, act); break;
            default:
                for (int i = 0; i < cols; i++) ((float*)Activations)[i] = Fp16Format.Round(row[i]);
                break;
        }
    }

    public void Dispose()
    {
        NativeMemory.AlignedFree(Weights);
        NativeMemory.AlignedFree(Activations);
    }
}

/// <summary>
/// One dot product per call over a row of <see cref="Cols"/> elements, the whole matrix small enough
/// to stay in cache (64 rows): the arithmetic throughput of each kernel, without memory traffic.
/// </summary>
[MemoryDiagnoser]
public unsafe class DotKernels
{
    private const int Rows = 64;
    private KernelData _f16, _q8, _q4, _q4k, _q6k;
    private float* _f16Rebiased; // _f16's activations × 2^112, what F16Rows2 takes
    private byte* _q8x8, _q4x8, _q4kx8, _q6kx8; // the same rows repacked into eight-row groups, as the loader does
    private int* _q4Bias;
    private float* _y;

    [Params(4096)]
    public int Cols;

    [GlobalSetup]
    public void Setup()
    {
        _f16 = new KernelData(GgmlType.F16, Rows, Cols);
        _f16Rebiased = (float*)NativeMemory.AlignedAlloc((nuint)(Cols * sizeof(float)), 64);
        for (int i = 0; i < Cols; i++) _f16Rebiased[i] = ((float*)_f16.Activations)[i] * Fp16Format.RebiasScale;
        _q8 = new KernelData(GgmlType.Q8_0, Rows, Cols);
        _q4 = new KernelData(GgmlType.Q4_0, Rows, Cols);
        _q4k = new KernelData(GgmlType.Q4_K, Rows, Cols);
        _q6k = new KernelData(GgmlType.Q6_K, Rows, Cols);
        _q8x8 = Repacked(_q8, (src, stride, dst, blocks) => Q8_0x8Format.Repack(src, stride, dst, blocks), Cols / 32);
        _q4x8 = Repacked(_q4, (src, stride, dst, blocks) => Q4_0x8Format.Repack(src, stride, dst, blocks), Cols / 32);
        _q4kx8 = Repacked(_q4k, (src, stride, dst, blocks) => Q4_Kx8Format.Repack(src, stride, dst, blocks), Cols / 256);
        _q6kx8 = Repacked(_q6k, (src, stride, dst, blocks) => Q6_Kx8Format.Repack(src, stride, dst, blocks), Cols / 256);
        _q4Bias = (int*)NativeMemory.AlignedAlloc((nuint)(Cols / 32 * sizeof(int)), 64);
        Q4BatchDot.ActivationBias(_q4.Activations, Cols / 32, _q4Bias);
        _y = (float*)NativeMemory.AlignedAlloc(Rows * sizeof(float), 64);
    }

    private delegate bool GroupRepack(byte* src, nint rowStride, byte* dst, int blocks);

    private static byte* Repacked(KernelData d, GroupRepack repack, int blocks)
    {
        byte* dst = (byte*)NativeMemory.AlignedAlloc((nuint)(d.RowBytes * d.Rows), 64);
        for (int r = 0; r < d.Rows; r += 8)
            if (!repack(d.Weights + r * d.RowBytes, (nint)d.RowBytes, dst + r * d.RowBytes, blocks)) throw new InvalidOperationException("non-finite scale");
        return dst;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        NativeMemory.AlignedFree(_f16Rebiased);
        NativeMemory.AlignedFree(_q8x8); NativeMemory.AlignedFree(_q4x8); NativeMemory.AlignedFree(_q4kx8); NativeMemory.AlignedFree(_q6kx8);
        NativeMemory.AlignedFree(_q4Bias); NativeMemory.AlignedFree(_y);
        _f16.Dispose(); _q8.Dispose(); _q4.Dispose(); _q4k.Dispose(); _q6k.Dispose();
    }

    [Benchmark(OperationsPerInvoke = Rows)]
    public float F16()
    {
        float s = 0;
        for (int r = 0; r < Rows; r++) s += FloatDot.F16((ushort*)(_f16.Weights + r * _f16.RowBytes), (float*)_f16.Activations, Cols);
        return s;
    }

    /// <summary>F16 decode's kernel: two rows per call against one activation row.</summary>
    [Benchmark(OperationsPerInvoke = Rows)]
    public float F16Rows2()
    {
        float* y = stackalloc float[2];
        float s = 0;
        for (int r = 0; r < Rows; r += 2)
        {
            FloatDot.F16Rows2((ushort*)(_f16.Weights + r * _f16.RowBytes), (nint)(_f16.RowBytes / 2), _f16Rebiased, Cols, y);
            s += y[0] + y[1];
        }
        return s;
    }

    [Benchmark(OperationsPerInvoke = Rows)]
    public float Q8_0()
    {
        float s = 0;
        for (int r = 0; r < Rows; r++) s += QuantDot.Q8_0Q8_0(_q8.Weights + r * _q8.RowBytes, _q8.Activations, Cols / 32);
        return s;
    }

    [Benchmark(OperationsPerInvoke = Rows)]
    public float Q4_0()
    {
        float s = 0;
        for (int r = 0; r < Rows; r++) s += QuantDot.Q4_0Q8_0(_q4.Weights + r * _q4.RowBytes, _q4.Activations, Cols / 32);
        return s;
    }

    [Benchmark(OperationsPerInvoke = Rows)]
    public float Q4_K()
    {
        float s = 0;
        for (int r = 0; r < Rows; r++) s += KQuantDot.Q4_KQ8_K(_q4k.Weights + r * _q4k.RowBytes, _q4k.Activations, Cols / 256);
        return s;
    }

    /// <summary>Decode over Q8_0 rows repacked into eight-row groups (ns per row).</summary>
    [Benchmark(OperationsPerInvoke = Rows)]
    public float Q8_0x8()
    {
        for (int r = 0; r < Rows; r += 8) Q8x8Dot.GroupAvx2(_q8x8 + r * _q8.RowBytes, _q8.Activations, Cols / 32, _y + r);
        return _y[0];
    }

    /// <summary>Decode over Q4_0 rows repacked into eight-row groups (ns per row).</summary>
    [Benchmark(OperationsPerInvoke = Rows)]
    public float Q4_0x8()
    {
        for (int r = 0; r < Rows; r += 8) Q4x8Dot.GroupAvx2(_q4x8 + r * _q4.RowBytes, _q4.Activations, _q4Bias, Cols / 32, _y + r);
        return _y[0];
    }

    /// <summary>Decode over Q4_K rows repacked into eight-row groups: the batched tile with one activation row (ns per row).</summary>
    [Benchmark(OperationsPerInvoke = Rows)]
    public float Q4_Kx8()
    {
        for (int r = 0; r < Rows; r += 8) Q4Kx8Dot.Kernel.Tile(_q4kx8 + r * _q4k.RowBytes, _q4k.Activations, 0, 1, Cols / 256, _y + r, 1);
        return _y[0];
    }

    /// <summary>Decode over Q4_K rows repacked into eight-row groups: the one-column kernel (ns per row).</summary>
    [Benchmark(OperationsPerInvoke = Rows)]
    public float Q4_Kx8Group()
    {
        for (int r = 0; r < Rows; r += 8) Q4Kx8Dot.Kernel.Group(_q4kx8 + r * _q4k.RowBytes, _q4k.Activations, Cols / 256, _y + r);
        return _y[0];
    }

    /// <summary>Q4_K rows through the eight-row batched tile with one activation row, transposing in registers (ns per row).</summary>
    [Benchmark(OperationsPerInvoke = Rows)]
    public float Q4_KTile()
    {
        for (int r = 0; r < Rows; r += 8)
            Q4KBatchDot.Tile<IntegerDots.NoVnni>(_q4k.Weights + r * _q4k.RowBytes, (nint)_q4k.RowBytes, 8, _q4k.Activations, 0, 1, Cols / 256, _y + r, 1);
        return _y[0];
    }

    /// <summary>Q6_K rows through the eight-row batched tile with one activation row (ns per row).</summary>
    [Benchmark(OperationsPerInvoke = Rows)]
    public float Q6_KTile()
    {
        for (int r = 0; r < Rows; r += 8)
            Q6KBatchDot.Tile<IntegerDots.NoVnni>(_q6k.Weights + r * _q6k.RowBytes, (nint)_q6k.RowBytes, 8, _q6k.Activations, 0, 1, Cols / 256, _y + r, 1);
        return _y[0];
    }

    /// <summary>Decode over Q6_K rows repacked into eight-row groups: the one-column kernel (ns per row).</summary>
    [Benchmark(OperationsPerInvoke = Rows)]
    public float Q6_Kx8Group()
    {
        for (int r = 0; r < Rows; r += 8) Q6Kx8Dot.Kernel.Group(_q6kx8 + r * _q6k.RowBytes, _q6k.Activations, Cols / 256, _y + r);
        return _y[0];
    }

    [Benchmark(OperationsPerInvoke = Rows)]
    public float Q6_K()
    {
        float s = 0;
        for (int r = 0; r < Rows; r++) s += KQuantDot.Q6_KQ8_K(_q6k.Weights + r * _q6k.RowBytes, _q6k.Activations, Cols / 256);
        return s;
    }
}

/// <summary>
/// Whole matrix products through <see cref="MatMul"/> (TinyLlama's FFN shape, 5632 × 2048) on one
/// thread: <c>Batch = 1</c> is decode (weights streamed from memory: 24 distinct matrices, larger
/// than the caches together, are cycled), <c>Batch = 64</c> prompt processing (the register tiles).
/// </summary>
[MemoryDiagnoser]
public unsafe class MatMulBench
{
    private const int Rows = 5632, Cols = 2048;
    private KernelData[] _weights;
    private WorkerPool _pool;
    private MatMul _mm;
    private float* _x, _y;
    private int _next;

    [Params(GgmlType.F16, GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_K)]
    public GgmlType Type;

    [Params(1, 64)]
    public int Batch;

    [GlobalSetup]
    public void Setup()
    {
        int copies = Batch == 1 ? 24 : 1;
        _weights = new KernelData[copies];
        for (int i = 0; i < copies; i++) _weights[i] = new KernelData(Type, Rows, Cols, seed: i + 1);
        _pool = new WorkerPool(1);
        _mm = new MatMul(_pool);
        _x = (float*)NativeMemory.AlignedAlloc((nuint)(Batch * Cols * sizeof(float)), 64);
        _y = (float*)NativeMemory.AlignedAlloc((nuint)(Batch * Rows * sizeof(float)), 64);
        var rng = new Random(7);
        for (int i = 0; i < Batch * Cols; i++) _x[i] = (float)(rng.NextDouble() * 2 - 1);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var w in _weights) w.Dispose();
        _mm.Dispose();
        _pool.Dispose();
        NativeMemory.AlignedFree(_x);
        NativeMemory.AlignedFree(_y);
    }

    [Benchmark]
    public void Multiply()
    {
        var d = _weights[_next++ % _weights.Length];
        var w = new WeightMatrix(Type, d.Weights, Rows, Cols);
        _mm.Multiply(w, _x, Batch, _y);
    }
}

/// <summary>
/// One 8 × 8 tile of a batched product (eight weight rows × eight activation rows of 4096 elements,
/// all in cache) per operation: the arithmetic throughput of the prompt-processing kernels.
/// </summary>
[MemoryDiagnoser]
public unsafe class TileKernels
{
    private const int Cols = 4096, Rows = 8, Acts = 8;
    private KernelData _q4, _q4k;
    private byte* _a0, _ak;
    private int* _bias;
    private float* _y;

    [GlobalSetup]
    public void Setup()
    {
        _q4 = new KernelData(GgmlType.Q4_0, Rows, Cols);
        _q4k = new KernelData(GgmlType.Q4_K, Rows, Cols);
        var rng = new Random(3);
        var x = new float[Cols];
        long q8Row = Cols / 32 * Q8_0Format.BlockBytes, q8kRow = Cols / 256 * Q8_KFormat.BlockBytes;
        _a0 = (byte*)NativeMemory.AlignedAlloc((nuint)(Acts * q8Row), 64);
        _ak = (byte*)NativeMemory.AlignedAlloc((nuint)(Acts * q8kRow), 64);
        _bias = (int*)NativeMemory.AlignedAlloc((nuint)(Acts * Cols / 32 * sizeof(int)), 64);
        _y = (float*)NativeMemory.AlignedAlloc(Acts * Rows * sizeof(float), 64);
        for (int c = 0; c < Acts; c++)
        {
            for (int i = 0; i < Cols; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
            Q8_0Format.QuantizeActivations(x, new Span<byte>(_a0 + c * q8Row, (int)q8Row));
            Q8_KFormat.Quantize(x, new Span<byte>(_ak + c * q8kRow, (int)q8kRow));
            Q4BatchDot.ActivationBias(_a0 + c * q8Row, Cols / 32, _bias + c * (Cols / 32));
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _q4.Dispose(); _q4k.Dispose();
        NativeMemory.AlignedFree(_a0); NativeMemory.AlignedFree(_ak); NativeMemory.AlignedFree(_bias); NativeMemory.AlignedFree(_y);
    }

    [Benchmark]
    public void Q4_0Tile8x8() =>
        Q4BatchDot.TileAvx2(_q4.Weights, (nint)_q4.RowBytes, Rows, _a0, Cols / 32 * Q8_0Format.BlockBytes, _bias, Acts, Cols / 32, _y, Rows);

    [Benchmark]
    public void Q4_KTile8x8()
    {
        // The plain rows' tile with the integer steps this CPU has (Q4KBatchDot.Tile itself is the AVX-VNNI one).
        nint s = (nint)_q4k.RowBytes;
        byte* w = _q4k.Weights;
        nint aStride = Cols / 256 * Q8_KFormat.BlockBytes;
        if (System.Runtime.Intrinsics.X86.AvxVnni.IsSupported)
            Q4KBatchDot.Tile<Q4KBatchDot.RowsLayout, IntegerDots.Vnni>(w, w + s, w + 2 * s, w + 3 * s, w + 4 * s, w + 5 * s, w + 6 * s, w + 7 * s, Rows, _ak, aStride, Acts, Cols / 256, _y, Rows);
        else
            Q4KBatchDot.Tile<Q4KBatchDot.RowsLayout, IntegerDots.NoVnni>(w, w + s, w + 2 * s, w + 3 * s, w + 4 * s, w + 5 * s, w + 6 * s, w + 7 * s, Rows, _ak, aStride, Acts, Cols / 256, _y, Rows);
    }

    [Benchmark]
    public void Q4_KRows8x8()
    {
        for (int r = 0; r < Rows; r++)
            KQuantDot.Q4Avx2Rows8(_q4k.Weights + r * _q4k.RowBytes, _ak, Cols / 256 * Q8_KFormat.BlockBytes, Cols / 256, _y + r, Rows);
    }
}
