using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Cria.Numerics.Formats;
using Cria.Numerics.Threading;

namespace Cria.Numerics.Kernels;

/// <summary>How the rows of a <see cref="WeightMatrix"/> are laid out.</summary>
public enum WeightLayout
{
    /// <summary>Rows back to back, as in a GGUF file.</summary>
    Rows,
    /// <summary>Q4_0 rows repacked into groups of eight (<see cref="Q4_0x8Format"/>), groups back to back.</summary>
    Q4_0x8,
    /// <summary>Q4_K rows repacked into groups of eight (<see cref="Q4_Kx8Format"/>), groups back to back; CPUs with AVX2 and FMA only.</summary>
    Q4_Kx8,
    /// <summary>Q8_0 rows repacked into groups of eight (<see cref="Q8_0x8Format"/>), groups back to back.</summary>
    Q8_0x8,
    /// <summary>Q6_K rows repacked into groups of eight (<see cref="Q6_Kx8Format"/>), groups back to back; CPUs with AVX2 and FMA only.</summary>
    Q6_Kx8,
}

/// <summary>
/// A weight matrix in memory, laid out like a ggml 2-D tensor with ne0 = <see cref="Cols"/> and
/// ne1 = <see cref="Rows"/>: <see cref="Rows"/> rows (output features), each holding
/// <see cref="Cols"/> elements encoded in <see cref="Type"/>'s blocks, rows back to back
/// <see cref="RowBytes"/> apart — or, for the repacked layouts (<see cref="WeightLayout.Q4_0x8"/>, <see cref="WeightLayout.Q4_Kx8"/>,
/// <see cref="WeightLayout.Q8_0x8"/>, <see cref="WeightLayout.Q6_Kx8"/>), groups of eight rows
/// 8·<see cref="RowBytes"/> apart. The memory is not owned (a mapped model file or a repacked copy).
/// </summary>
public readonly unsafe struct WeightMatrix
{
    /// <summary>Describes <paramref name="rows"/> × <paramref name="cols"/> elements of <paramref name="type"/> at <paramref name="data"/>.</summary>
    public WeightMatrix(GgmlType type, byte* data, int rows, int cols) : this(type, data, rows, cols, WeightLayout.Rows) { }

    /// <summary>As the plain constructor, with the rows in <paramref name="layout"/> (a repacked layout: its type only, rows a multiple of 8).</summary>
    public WeightMatrix(GgmlType type, byte* data, int rows, int cols, WeightLayout layout)
    {
        if (!GgmlTypeInfo.IsKnown(type)) throw new ArgumentException($"unknown ggml type id {(uint)type}", nameof(type));
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegative(cols);
        if (data == null && rows > 0 && cols > 0) throw new ArgumentNullException(nameof(data));
        if (layout != WeightLayout.Rows)
        {
            GgmlType holds = layout switch
            {
                WeightLayout.Q4_0x8 => GgmlType.Q4_0,
                WeightLayout.Q4_Kx8 => GgmlType.Q4_K,
                WeightLayout.Q8_0x8 => GgmlType.Q8_0,
                WeightLayout.Q6_Kx8 => GgmlType.Q6_K,
                _ => throw new ArgumentOutOfRangeException(nameof(layout)),
            };
            if (type != holds || rows % 8 != 0)
                throw new ArgumentException($"the {layout} layout holds {GgmlTypeInfo.Name(holds)} matrices whose row count is a multiple of 8, not {GgmlTypeInfo.Name(type)} × {rows} rows", nameof(layout));
            if (layout is WeightLayout.Q4_Kx8 or WeightLayout.Q6_Kx8 && !CpuFeatures.Avx2Fma)
                throw new NotSupportedException($"the {layout} layout needs a CPU with AVX2 and FMA");
        }
        Type = type;
        Data = data;
        Rows = rows;
        Cols = cols;
        Layout = layout;
        RowBytes = GgmlTypeInfo.RowBytes(type, cols); // throws unless cols is whole blocks
    }

    /// <summary>Element type.</summary>
    public GgmlType Type { get; }

    /// <summary>How the rows are laid out.</summary>
    public WeightLayout Layout { get; }

    /// <summary>First byte of row 0.</summary>
    public byte* Data { get; }

    /// <summary>Number of rows (outputs of a product).</summary>
    public int Rows { get; }

    /// <summary>Elements per row (inputs of a product).</summary>
    public int Cols { get; }

    /// <summary>Bytes per row.</summary>
    public long RowBytes { get; }

    /// <summary>First byte of row <paramref name="row"/> (rows layout only: a repacked row is not contiguous).</summary>
    public byte* Row(int row) => Layout == WeightLayout.Rows
        ? Data + row * RowBytes
        : throw new InvalidOperationException("a repacked matrix has no contiguous rows; use MatMul.GetRow");
}

/// <summary>
/// Matrix products y = W·x for the weight types the engine computes with (F32, F16, BF16, Q8_0,
/// Q4_0, Q5_0, Q4_1, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS), reproducing ggml's CPU results bit for bit (AVX2 build):
/// <list type="bullet">
/// <item>Q5_0 weights: as Q4_0 (Q8_0 activations, same kernel structure, see <see cref="LegacyDot"/>).</item>
/// <item>Q4_1 / Q5_1 weights: activations quantized to Q8_1 (<see cref="Q8_1Format"/>), then ggml's
/// vec_dot per output (<see cref="LegacyDot"/>); llamafile has no kernel for these on x86.</item>
/// <item>Q2_K / Q3_K / Q4_K / Q5_K / Q6_K weights: activations quantized to Q8_K (<see cref="Q8_KFormat"/>), then
/// ggml's vec_dot per output (<see cref="KQuantDot"/>) — except Q4_K with two or more activation rows on
/// CPUs with AVX-VNNI, Q6_K with two or more on every AVX2+FMA CPU, and Q4_K and Q6_K repacked at load (any number of rows), which
/// sum each super-block to one int32 per output (<see cref="Q4KBatchDot"/>, <see cref="Q6KBatchDot"/>, <see cref="Q4Kx8Dot"/>,
/// <see cref="Q6Kx8Dot"/>; the order of llama.cpp's repacked kernels).</item>
/// <item>IQ4_NL weights: Q8_0 activations. ggml's AVX2 vec_dot (used for one activation row) keeps two
/// accumulators over alternating blocks, llamafile's tinyBLAS (two or more rows) one; both orders
/// are reproduced by batch size (<see cref="IQ4Dot"/>).</item>
/// <item>IQ4_XS weights: Q8_K activations, ggml's vec_dot per output (<see cref="IQ4Dot"/>).</item>
/// <item>Q8_0 / Q4_0 weights: each activation row is first quantized to Q8_0 with ggml's runtime
/// quantizer, then every output is the block-wise integer dot product of <see cref="QuantDot"/>
/// (ggml's vec_dot and llamafile's tinyBLAS agree for these, so one order serves every batch) —
/// except Q4_0 with two or more activation rows, and Q8_0 with two or more on CPUs with AVX-VNNI,
/// which sum each block to one int32 before the conversion (the order of llama.cpp's repacked
/// kernels, see <see cref="Q4BatchDot"/>, <see cref="Q8BatchDot"/>): equal to the one-row result up
/// to float rounding, not bit for bit.</item>
/// <item>F16 / BF16 weights: activations are rounded to F16 / BF16 (ggml's vec_dot_type) and kept as
/// floats; F32 weights use the activations as they are. With one activation row, or when the
/// row length is not a multiple of 8, or the row count not a multiple of 4, outputs use ggml's
/// vec_dot order; otherwise (what ggml hands to llamafile's sgemm) the blocked order. See
/// <see cref="FloatDot"/>.</item>
/// </list>
/// Work is split over the pool by chunks of rows; with several activation rows each chunk walks
/// the batch in tiles (2×2 / 4×2 register tiles inside), so a chunk of weights is read from cache
/// for a whole tile of activations. An instance owns reusable scratch (it only grows), so
/// steady-state calls allocate nothing; it is not thread-safe (one product at a time).
/// </summary>
public sealed unsafe class MatMul : IDisposable
{
    private readonly WorkerPool _pool;
    private readonly ProductJob _product;
    private readonly ProductJob[] _sharedInputProducts; // the products of one MultiplySharedInput call
    private readonly SequenceJob _sequence;
    private readonly PrepareJob _prepare;

    private byte* _activations;       // prepared activation rows
    private long _activationCapacity;
    private int* _bias;               // −8·Σa per Q8_0 activation block (Q4_0 batched path)
    private long _biasCapacity;       // ints
    private float* _threadScratch;    // per-thread converted weight rows (F16/BF16 blocked path)
    private byte* _tileState;         // per-thread accumulators of the 512-bit F16/BF16 tiles between k-blocks

    /// <summary>Elements of k per pass of the 512-bit F16/BF16 tiles (4 rows × 128 floats of weights, 48 × 128 of activations: L1-sized).</summary>
    private const int PairedKBlock = 128;
    /// <summary>Most 6-column tiles per batch tile (the batch tile of the 512-bit path is at most 48 rows) and most row groups per chunk (64 rows).</summary>
    private const int PairedMaxTiles = 8, PairedMaxGroups = 16;
    /// <summary>512-bit accumulators of tile state per thread.</summary>
    private const int PairedStateVectors = PairedMaxTiles * PairedMaxGroups * 12;
    private long _threadScratchFloats; // floats per thread
    private bool _disposed;

    /// <param name="pool">the threads to run on (not owned).</param>
    public MatMul(WorkerPool pool)
    {
        _pool = pool ?? throw new ArgumentNullException(nameof(pool));
        _product = new ProductJob(this);
        _sharedInputProducts = [new ProductJob(this), new ProductJob(this), new ProductJob(this)];
        _sequence = new SequenceJob();
        _prepare = new PrepareJob();
    }

    /// <summary>The pool products run on.</summary>
    public WorkerPool Pool => _pool;

    /// <summary>
    /// y[b·rows + r] = Σ_c W[r, c] · x[b·cols + c] for b in [0, batch): x holds <paramref name="batch"/>
    /// activation rows of w.Cols floats, y receives batch rows of w.Rows floats. x and y must not overlap.
    /// </summary>
    public void Multiply(in WeightMatrix w, float* x, int batch, float* y)
    {
        if (!Check(w, x, batch, y)) return;
        byte* act = PrepareActivations(w.Type, TakesBias(w, batch), x, batch, w.Cols, out long actRowBytes);
        int chunks = Configure(_product, w, act, actRowBytes, batch, y);
        _pool.Run(_product, chunks);
    }

    /// <summary>
    /// The products of one input <paramref name="x"/> (<paramref name="batch"/> rows) with two matrices
    /// (y0 = W0·x, y1 = W1·x): the same outputs, bit for bit, as two <see cref="Multiply"/> calls. For one
    /// activation row (decode) with matrices of the same width whose activations take the same form, the
    /// input is prepared once and both products run as one pool run: one wait for the slowest thread
    /// instead of two (the gate and up projections).
    /// </summary>
    public void MultiplySharedInput(float* x, int batch, in WeightMatrix w0, float* y0, in WeightMatrix w1, float* y1) =>
        SharedInput(x, batch, w0, y0, w1, y1, w1, null);

    /// <summary>As <see cref="MultiplySharedInput(float*, int, in WeightMatrix, float*, in WeightMatrix, float*)"/> with three matrices (the query, key and value projections).</summary>
    public void MultiplySharedInput(float* x, int batch, in WeightMatrix w0, float* y0, in WeightMatrix w1, float* y1, in WeightMatrix w2, float* y2)
    {
        ArgumentNullException.ThrowIfNull(y2);
        SharedInput(x, batch, w0, y0, w1, y1, w2, y2);
    }

    /// <summary>Two products, or three when <paramref name="y2"/> is set.</summary>
    private void SharedInput(float* x, int batch, in WeightMatrix w0, float* y0, in WeightMatrix w1, float* y1, in WeightMatrix w2, float* y2)
    {
        bool three = y2 != null;
        if (!CanShare(batch, w0, w1) || three && !CanShare(batch, w0, w2))
        {
            Multiply(w0, x, batch, y0);
            Multiply(w1, x, batch, y1);
            if (three) Multiply(w2, x, batch, y2);
            return;
        }
        bool run = Check(w0, x, batch, y0) & Check(w1, x, batch, y1) & (!three || Check(w2, x, batch, y2));
        if (!run) return; // (CanShare ruled out empty products)
        bool q4 = TakesBias(w0, batch) || TakesBias(w1, batch) || three && TakesBias(w2, batch);
        byte* act = PrepareActivations(w0.Type, q4, x, batch, w0.Cols, out long actRowBytes);
        ProductJob[] jobs = _sharedInputProducts;
        int n0 = Configure(jobs[0], w0, act, actRowBytes, batch, y0);
        int n1 = Configure(jobs[1], w1, act, actRowBytes, batch, y1);
        if (three) _sequence.Set(jobs[0], n0, jobs[1], n1, jobs[2], Configure(jobs[2], w2, act, actRowBytes, batch, y2));
        else _sequence.Set(jobs[0], n0, jobs[1], n1);
        _pool.Run(_sequence, _sequence.ItemCount);
    }

    /// <summary>One pool run serves both products: one activation row, the same width, activations prepared the same way, nothing empty.</summary>
    private static bool CanShare(int batch, in WeightMatrix a, in WeightMatrix b) =>
        batch == 1 && a.Cols == b.Cols && a.Cols > 0 && a.Rows > 0 && b.Rows > 0
        && GgmlTypeInfo.CanCompute(a.Type) && GgmlTypeInfo.CanCompute(b.Type)
        && ActivationForm(a.Type) == ActivationForm(b.Type);

    /// <summary>Which prepared activations a weight type multiplies with (for one activation row; <see cref="PrepareActivations"/> adapts F16 and Q4_0/Q8_0 to several); null for F32 (the activations as they are).</summary>
    private static PrepareKind? ActivationForm(GgmlType t) => t switch
    {
        GgmlType.Q8_0 or GgmlType.Q4_0 or GgmlType.Q5_0 or GgmlType.IQ4_NL => PrepareKind.Q8_0,
        GgmlType.Q4_1 or GgmlType.Q5_1 => PrepareKind.Q8_1,
        GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K or GgmlType.IQ4_XS => PrepareKind.Q8_K,
        GgmlType.F16 => PrepareKind.RoundF16Rebiased,
        GgmlType.BF16 => PrepareKind.RoundBF16,
        _ => null, // F32: the activations as they are
    };

    /// <summary>True when the kernel for <paramref name="w"/> takes −8·Σa per activation block: Q4_0 in one int32 per block (repacked, or several rows).</summary>
    private static bool TakesBias(in WeightMatrix w, int batch) => w.Type == GgmlType.Q4_0 && (batch > 1 || w.Layout == WeightLayout.Q4_0x8);

    /// <summary>Argument checks; false when there is nothing to run (an empty product, whose output is cleared if it has rows).</summary>
    private bool Check(in WeightMatrix w, float* x, int batch, float* y)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!GgmlTypeInfo.CanCompute(w.Type)) throw new NotSupportedException($"matrix products with {GgmlTypeInfo.Name(w.Type)} weights are not supported");
        ArgumentOutOfRangeException.ThrowIfNegative(batch);
        int rows = w.Rows, cols = w.Cols;
        if (batch == 0 || rows == 0) return false;
        if (x == null) throw new ArgumentNullException(nameof(x));
        if (y == null) throw new ArgumentNullException(nameof(y));
        if (cols == 0)
        {
            new Span<float>(y, checked(batch * rows)).Clear();
            return false;
        }
        return true;
    }

    /// <summary>
    /// The activation rows in the form ggml multiplies <paramref name="t"/> weights with (<see cref="ActivationForm"/>);
    /// with <paramref name="q4Bias"/> (Q8_0 form only) also −8·Σa per block, which the Q4_0 kernels take.
    /// </summary>
    private byte* PrepareActivations(GgmlType t, bool q4Bias, float* x, int batch, int cols, out long actRowBytes)
    {
        switch (ActivationForm(t))
        {
            case PrepareKind.Q8_0:
            {
                actRowBytes = (long)cols / Q8_0Format.BlockSize * Q8_0Format.BlockBytes;
                if (q4Bias) EnsureBias((long)batch * (cols / Q8_0Format.BlockSize));
                // Q8_0 with several rows on VNNI tiles takes its activations in offset form (Q8BatchDot).
                bool offset = t == GgmlType.Q8_0 && batch > 1 && CpuFeatures.VnniTiles;
                return Prepare(PrepareKind.Q8_0, x, batch, cols, actRowBytes, q4Bias ? _bias : null, offset);
            }
            case PrepareKind.Q8_1:
                actRowBytes = (long)cols / Q8_1Format.BlockSize * Q8_1Format.BlockBytes;
                return Prepare(PrepareKind.Q8_1, x, batch, cols, actRowBytes);
            case PrepareKind.Q8_K:
                actRowBytes = (long)cols / Q8_KFormat.BlockSize * Q8_KFormat.BlockBytes;
                return Prepare(PrepareKind.Q8_K, x, batch, cols, actRowBytes);
            case PrepareKind.RoundF16Rebiased:
                // F16 decode (one row) multiplies the rounded activations by 2^112 as well (FloatDot.F16Rows2).
                actRowBytes = (long)cols * sizeof(float);
                return Prepare(batch == 1 ? PrepareKind.RoundF16Rebiased : PrepareKind.RoundF16, x, batch, cols, actRowBytes);
            case PrepareKind.RoundBF16:
                actRowBytes = (long)cols * sizeof(float);
                return Prepare(PrepareKind.RoundBF16, x, batch, cols, actRowBytes);
            default: // F32
                actRowBytes = (long)cols * sizeof(float);
                return (byte*)x;
        }
    }

    /// <summary>Sets <paramref name="job"/> up for y = W·act (accumulation order and work split); returns its number of row chunks.</summary>
    private int Configure(ProductJob job, in WeightMatrix w, byte* act, long actRowBytes, int batch, float* y)
    {
        GgmlType t = w.Type;
        int rows = w.Rows, cols = w.Cols;
        bool floatType = t is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16;
        bool blocked = floatType && batch >= 2 && cols % 8 == 0 && rows % 4 == 0;
        long weightChunkRowBytes = blocked ? (long)cols * sizeof(float) : w.RowBytes;
        int threads = _pool.ThreadCount;
        // The 512-bit F16/BF16 tiles walk k in blocks, so their widened chunk may fill L2 (more rows per
        // pass over the activations); the other paths keep a chunk of weights near L1 size.
        bool paired = blocked && t != GgmlType.F32 && System.Runtime.Intrinsics.X86.Avx512DQ.IsSupported && CpuFeatures.Avx2Fma;
        int rowsPerChunk = 16;
        if (batch > 1) rowsPerChunk = (int)Math.Clamp((paired ? 512 : 48) * 1024 / Math.Max(1, weightChunkRowBytes), 4, paired ? 4 * PairedMaxGroups : 64);
        rowsPerChunk = Math.Min(rowsPerChunk, Math.Max(4, rows / (2 * threads)));
        rowsPerChunk = Math.Max(4, rowsPerChunk & ~3);
        bool batchTiles = BatchTiles(t, batch);
        bool q4Tiles = t == GgmlType.Q4_0 && batch > 1;
        if (q4Tiles || batchTiles || w.Layout != WeightLayout.Rows) rowsPerChunk = Math.Max(8, rowsPerChunk & ~7); // whole 8-row tiles / groups
        int chunks = (rows + rowsPerChunk - 1) / rowsPerChunk;
        int batchTile = batch == 1 ? 1 : (int)Math.Clamp(96 * 1024 / actRowBytes, 2, batch);
        batchTile = batchTile >= 3 ? batchTile / 3 * 3 : Math.Max(1, batchTile & ~1); // whole 4×3 / 2×2 tiles
        if (paired) // whole 4×6 tiles, k-blocked (FloatDot.PairedTile4x6)
        {
            batchTile = Math.Min(batch, 6 * PairedMaxTiles);
            EnsureTileState();
        }
        if (t is GgmlType.Q4_K or GgmlType.Q5_K && batch > 1) // whole 1×8 / 1×4 tiles (KQuantDot.*Rows8, *Rows4; the 8 × 16 tiles below)
            batchTile = Math.Min(batch, Math.Max(8, batchTile & ~7));
        if (batchTiles) // whole 8×16 tiles (Q4KBatchDot, Q6KBatchDot, Q8BatchDot)
        {
            int width = BatchTileColumns(t);
            batchTile = Math.Min(batch, Math.Max(width, batchTile / width * width));
        }
        if (q4Tiles) // whole 8×8 tiles (Q4BatchDot, Q4x8Dot)
        {
            int width = Q4BatchDot.TileColumns;
            batchTile = Math.Min(batch, Math.Max(width, batchTile / width * width));
        }

        if (blocked && t != GgmlType.F32) EnsureThreadScratch((long)rowsPerChunk * cols);

        job.Weights = w;
        job.Activations = act;
        job.ActivationRowBytes = actRowBytes;
        job.Batch = batch;
        job.Output = y;
        job.Blocked = blocked;
        job.RowsPerChunk = rowsPerChunk;
        job.BatchTile = batchTile;
        job.Bias = _bias;
        return chunks;
    }

    /// <summary>Dequantizes row <paramref name="row"/> of <paramref name="w"/> into <paramref name="dst"/> (length w.Cols); exact.</summary>
    public static void GetRow(in WeightMatrix w, int row, Span<float> dst)
    {
        if ((uint)row >= (uint)w.Rows) throw new ArgumentOutOfRangeException(nameof(row), row, $"row must be in [0, {w.Rows})");
        if (dst.Length != w.Cols) throw new ArgumentException($"destination holds {dst.Length} floats, the row has {w.Cols}", nameof(dst));
        if (w.Layout != WeightLayout.Rows) // eight-row groups: unpack the row's lane a block at a time, read it as a plain block
        {
            const int groupRows = 8;
            int blockBytes = GgmlTypeInfo.BlockBytes(w.Type), blockSize = GgmlTypeInfo.BlockSize(w.Type);
            byte* group = w.Data + row / groupRows * w.RowBytes * groupRows; // a group column is as large as the eight blocks it holds
            byte* block = stackalloc byte[blockBytes];
            for (int i = 0; i < w.Cols / blockSize; i++, group += groupRows * blockBytes)
            {
                switch (w.Layout)
                {
                    case WeightLayout.Q4_0x8: Q4_0x8Format.UnpackRow(group, row % groupRows, block, 1); break;
                    case WeightLayout.Q4_Kx8: Q4_Kx8Format.UnpackRow(group, row % groupRows, block, 1); break;
                    case WeightLayout.Q6_Kx8: Q6_Kx8Format.UnpackRow(group, row % groupRows, block, 1); break;
                    default: Q8_0x8Format.UnpackRow(group, row % groupRows, block, 1); break;
                }
                GetRow(new WeightMatrix(w.Type, block, 1, blockSize), 0, dst.Slice(i * blockSize, blockSize));
            }
            return;
        }
        byte* src = w.Row(row);
        int n = w.Cols;
        fixed (float* d = dst)
        {
            switch (w.Type)
            {
                case GgmlType.F32: new ReadOnlySpan<float>(src, n).CopyTo(dst); break;
                case GgmlType.F16: Fp16Format.ToSingle((ushort*)src, d, n); break;
                case GgmlType.BF16: Bf16Format.ToSingle((ushort*)src, d, n); break;
                case GgmlType.Q8_0: Q8_0Format.Dequantize(src, d, n / Q8_0Format.BlockSize); break;
                case GgmlType.Q4_0: Q4_0Format.Dequantize(src, d, n / Q4_0Format.BlockSize); break;
                case GgmlType.Q4_1: Q4_1Format.Dequantize(src, d, n / Q4_1Format.BlockSize); break;
                case GgmlType.Q5_0: Q5_0Format.Dequantize(src, d, n / Q5_0Format.BlockSize); break;
                case GgmlType.Q5_1: Q5_1Format.Dequantize(src, d, n / Q5_1Format.BlockSize); break;
                case GgmlType.Q2_K: Q2_KFormat.Dequantize(src, d, n / Q2_KFormat.BlockSize); break;
                case GgmlType.Q3_K: Q3_KFormat.Dequantize(src, d, n / Q3_KFormat.BlockSize); break;
                case GgmlType.Q4_K: Q4_KFormat.Dequantize(src, d, n / Q4_KFormat.BlockSize); break;
                case GgmlType.Q5_K: Q5_KFormat.Dequantize(src, d, n / Q5_KFormat.BlockSize); break;
                case GgmlType.Q6_K: Q6_KFormat.Dequantize(src, d, n / Q6_KFormat.BlockSize); break;
                case GgmlType.IQ4_NL: IQ4_NLFormat.Dequantize(src, d, n / IQ4_NLFormat.BlockSize); break;
                case GgmlType.IQ4_XS: IQ4_XSFormat.Dequantize(src, d, n / IQ4_XSFormat.BlockSize); break;
                default: throw new NotSupportedException($"reading rows of {GgmlTypeInfo.Name(w.Type)} tensors is not supported");
            }
        }
    }

    /// <summary>Frees the scratch memory.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (_activations != null) NativeMemory.AlignedFree(_activations);
        if (_threadScratch != null) NativeMemory.AlignedFree(_threadScratch);
        if (_bias != null) NativeMemory.AlignedFree(_bias);
        if (_tileState != null) NativeMemory.AlignedFree(_tileState);
        _tileState = null;
        _activations = null;
        _bias = null;
        _threadScratch = null;
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases the scratch memory if Dispose was not called.</summary>
    ~MatMul()
    {
        if (_activations != null) NativeMemory.AlignedFree(_activations);
        if (_threadScratch != null) NativeMemory.AlignedFree(_threadScratch);
        if (_bias != null) NativeMemory.AlignedFree(_bias);
        if (_tileState != null) NativeMemory.AlignedFree(_tileState);
    }

    /// <summary>
    /// True when a product of <paramref name="batch"/> activation rows with <paramref name="t"/> weights in rows runs on the
    /// 8 × 16 tiles (Q4KBatchDot, Q6KBatchDot, Q8BatchDot): with AVX-VNNI for Q4_K, Q6_K and Q8_0; Q6_K on every AVX2+FMA CPU.
    /// </summary>
    internal static bool BatchTiles(GgmlType t, int batch) =>
        batch > 1 && (t is GgmlType.Q4_K or GgmlType.Q6_K or GgmlType.Q8_0 && CpuFeatures.VnniTiles || t == GgmlType.Q6_K && CpuFeatures.Avx2Fma);

    /// <summary>Activation rows per call of the 8 × 16 tile for <paramref name="t"/> (Q4_K, Q6_K or Q8_0).</summary>
    private static int BatchTileColumns(GgmlType t) =>
        t == GgmlType.Q4_K ? Q4KBatchDot.TileColumns : t == GgmlType.Q6_K ? Q6KBatchDot.TileColumns : Q8BatchDot.TileColumns;

    // ------------------------------------------------------------------ activation preparation

    private enum PrepareKind { Q8_0, Q8_1, Q8_K, RoundF16, RoundF16Rebiased, RoundBF16 }

    private byte* Prepare(PrepareKind kind, float* x, int batch, int cols, long rowBytes, int* bias = null, bool offsetCodes = false)
    {
        long need = rowBytes * batch;
        if (need > _activationCapacity)
        {
            if (_activations != null) NativeMemory.AlignedFree(_activations);
            long cap = Math.Max(need, _activationCapacity * 2);
            _activations = (byte*)NativeMemory.AlignedAlloc((nuint)cap, 64);
            _activationCapacity = cap;
        }
        var p = _prepare;
        p.Kind = kind; p.Source = x; p.Cols = cols; p.Destination = _activations; p.RowBytes = rowBytes; p.Bias = bias; p.OffsetCodes = offsetCodes;
        if (batch > 1 && (long)batch * cols >= 32 * 1024) _pool.Run(p, batch);
        else p.Execute(0, batch, 0);
        return _activations;
    }

    /// <summary>Room for <paramref name="need"/> ints of −8·Σa (one per activation block, <see cref="Q4BatchDot"/>); grow-only.</summary>
    private void EnsureBias(long need)
    {
        if (need <= _biasCapacity) return;
        if (_bias != null) NativeMemory.AlignedFree(_bias);
        long cap = Math.Max(need, _biasCapacity * 2);
        _bias = (int*)NativeMemory.AlignedAlloc((nuint)(cap * sizeof(int)), 64);
        _biasCapacity = cap;
    }

    private sealed class PrepareJob : IParallelJob
    {
        public PrepareKind Kind;
        public float* Source;
        public int Cols;
        public byte* Destination;
        public long RowBytes;
        public int* Bias; // Q8_0 only: when set, also −8·Σa per block (Q4BatchDot)
        public bool OffsetCodes; // Q8_0 only: store the codes + 128 (Q8BatchDot)

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Execute(int start, int end, int threadIndex)
        {
            for (int b = start; b < end; b++)
            {
                float* src = Source + (long)b * Cols;
                byte* dst = Destination + b * RowBytes;
                switch (Kind)
                {
                    case PrepareKind.Q8_0:
                        Q8_0Format.QuantizeActivations(src, dst, Cols / Q8_0Format.BlockSize);
                        if (Bias != null) Q4BatchDot.ActivationBias(dst, Cols / Q8_0Format.BlockSize, Bias + (long)b * (Cols / Q8_0Format.BlockSize));
                        if (OffsetCodes) Q8BatchDot.ToOffsetForm(dst, Cols / Q8_0Format.BlockSize);
                        break;
                    case PrepareKind.Q8_1:
                        Q8_1Format.QuantizeActivations(src, dst, Cols / Q8_1Format.BlockSize);
                        break;
                    case PrepareKind.Q8_K:
                        Q8_KFormat.Quantize(src, dst, Cols / Q8_KFormat.BlockSize);
                        break;
                    case PrepareKind.RoundF16:
                        Fp16Format.Round(src, (float*)dst, Cols);
                        break;
                    case PrepareKind.RoundF16Rebiased:
                        Fp16Format.Round(src, (float*)dst, Cols);
                        for (int i = 0; i < Cols; i++) ((float*)dst)[i] *= Fp16Format.RebiasScale;
                        break;
                    default:
                        for (int i = 0; i < Cols; i++) ((float*)dst)[i] = Bf16Format.Round(src[i]);
                        break;
                }
            }
        }
    }

    /// <summary>The 512-bit tiles' accumulator state, <see cref="PairedStateVectors"/> vectors per thread (allocated once).</summary>
    private void EnsureTileState()
    {
        if (_tileState != null) return;
        _tileState = (byte*)NativeMemory.AlignedAlloc((nuint)((long)PairedStateVectors * 64 * _pool.ThreadCount), 64);
    }

    private void EnsureThreadScratch(long floatsPerThread)
    {
        if (floatsPerThread <= _threadScratchFloats && _threadScratch != null) return;
        if (_threadScratch != null) NativeMemory.AlignedFree(_threadScratch);
        long per = Math.Max(floatsPerThread, _threadScratchFloats * 2);
        per = (per + 15) & ~15L; // keep each thread's slice 64-byte aligned
        _threadScratch = (float*)NativeMemory.AlignedAlloc((nuint)(per * _pool.ThreadCount * sizeof(float)), 64);
        _threadScratchFloats = per;
    }

    // ------------------------------------------------------------------ the product

    /// <summary>Up to three product jobs run as one item space (job 0's chunks, then job 1's, then job 2's).</summary>
    private sealed class SequenceJob : IParallelJob
    {
        private readonly ProductJob?[] _jobs = new ProductJob?[3];
        private readonly int[] _ends = new int[3];
        private int _count;

        public int ItemCount => _count == 0 ? 0 : _ends[_count - 1];

        public void Set(ProductJob a, int aItems, ProductJob b, int bItems, ProductJob? c = null, int cItems = 0)
        {
            _jobs[0] = a; _ends[0] = aItems;
            _jobs[1] = b; _ends[1] = aItems + bItems;
            _jobs[2] = c; _ends[2] = aItems + bItems + cItems;
            _count = c is null ? 2 : 3;
        }

        public void Execute(int start, int end, int threadIndex)
        {
            int begin = 0;
            for (int j = 0; j < _count && start < end; j++)
            {
                int stop = _ends[j];
                if (start < stop)
                {
                    int to = Math.Min(end, stop);
                    _jobs[j]!.Execute(start - begin, to - begin, threadIndex);
                    start = to;
                }
                begin = stop;
            }
        }
    }

    private sealed class ProductJob : IParallelJob
    {
        private readonly MatMul _owner;
        public WeightMatrix Weights;
        public byte* Activations;
        public long ActivationRowBytes;
        public int Batch;
        public float* Output;
        public bool Blocked;
        public int RowsPerChunk;
        public int BatchTile;
        public int* Bias;

        public ProductJob(MatMul owner) => _owner = owner;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Execute(int start, int end, int threadIndex)
        {
            int rows = Weights.Rows;
            for (int chunk = start; chunk < end; chunk++)
            {
                int r0 = chunk * RowsPerChunk;
                int r1 = Math.Min(rows, r0 + RowsPerChunk);
                switch (Weights.Type)
                {
                    case GgmlType.Q8_0:
                        // Repacked: one int32 per block and output (Q8x8Dot). Rows layout, one activation row: ggml's
                        // vec_dot; several (with VNNI): one int32 per block and output (Q8BatchDot).
                        if (Weights.Layout == WeightLayout.Q8_0x8) Q8Groups(r0, r1);
                        else if (BatchTiles(Weights.Type, Batch)) Tiles8x16(r0, r1);
                        else Quantized<Q8Weights>(r0, r1);
                        break;
                    case GgmlType.Q4_0:
                        // Repacked: one int32 per block and output (Q4x8Dot). Rows layout, one activation row:
                        // ggml's vec_dot; several: one int32 per block and output (Q4BatchDot).
                        if (Weights.Layout == WeightLayout.Q4_0x8) Q4Groups(r0, r1);
                        else if (Batch == 1) Quantized<Q4Weights>(r0, r1);
                        else Q4Batched(r0, r1);
                        break;
                    case GgmlType.Q5_0: Quantized<Q5Weights>(r0, r1); break;
                    case GgmlType.IQ4_NL:
                        // One activation row: ggml's vec_dot (two accumulators); several: tinyBLAS (one).
                        if (Batch == 1) RowDots(r0, r1);
                        else Quantized<IQ4NLWeights>(r0, r1);
                        break;
                    case GgmlType.Q4_K:
                    case GgmlType.Q6_K:
                        // Repacked: one int32 per super-block and output (Q4Kx8Dot, Q6Kx8Dot). Rows layout, one activation row:
                        // ggml's vec_dot; several: one int32 per super-block and output (Q4KBatchDot, Q6KBatchDot).
                        if (Weights.Layout == WeightLayout.Q4_Kx8) KQuantGroups<Q4Kx8Dot.Kernel>(r0, r1);
                        else if (Weights.Layout == WeightLayout.Q6_Kx8) KQuantGroups<Q6Kx8Dot.Kernel>(r0, r1);
                        else if (BatchTiles(Weights.Type, Batch)) Tiles8x16(r0, r1);
                        else RowDots(r0, r1);
                        break;
                    case GgmlType.Q4_1:
                    case GgmlType.Q5_1:
                    case GgmlType.Q2_K:
                    case GgmlType.Q3_K:
                    case GgmlType.Q5_K:
                    case GgmlType.IQ4_XS:
                        RowDots(r0, r1);
                        break;
                    case GgmlType.F32: Float(r0, r1, threadIndex); break;
                    case GgmlType.F16: Float(r0, r1, threadIndex); break;
                    case GgmlType.BF16: Float(r0, r1, threadIndex); break;
                }
            }
        }

        /// <summary>Batches up to this size are weight-bound and get software prefetching in the tile loops.</summary>
        private const int SmallBatch = 16;

        private void Quantized<TW>(int r0, int r1) where TW : struct, IQ8Weights
        {
            int blocks = Weights.Cols / Q8_0Format.BlockSize;
            nint wStride = (nint)Weights.RowBytes, aStride = (nint)ActivationRowBytes, rows = Weights.Rows;
            byte* w = Weights.Data;
            byte* a = Activations;
            float* y = Output;
            if (!CpuFeatures.Avx2Fma)
            {
                for (int b = 0; b < Batch; b++)
                    for (int r = r0; r < r1; r++)
                        y[b * rows + r] = QuantDot.Dot1<TW>(w + r * wStride, a + b * aStride, blocks);
                return;
            }
            if (Batch == 1)
            {
                int r = r0;
                for (; r + 4 <= r1; r += 4) QuantDot.Rows4Avx2<TW>(w + r * wStride, wStride, a, blocks, y + r);
                for (; r < r1; r++) y[r] = QuantDot.Dot1<TW>(w + r * wStride, a, blocks);
                return;
            }
            for (int b0 = 0; b0 < Batch; b0 += BatchTile)
            {
                int b1 = Math.Min(Batch, b0 + BatchTile);
                int r = r0;
                // 4×3 register tiles; leftover activation rows of a 4-row group go to 2×2 / 4×1.
                // A few activation rows (decoding several sequences at once) leave the product bound by
                // reading the weights, as in decode: fetch the next 4-row group ahead of the tiles.
                bool prefetch = Batch <= SmallBatch;
                for (; r + 4 <= r1; r += 4)
                {
                    byte* wr = w + r * wStride;
                    if (prefetch) PrefetchRow(wr + 4 * wStride, 4 * wStride);
                    int b = b0;
                    for (; b + 3 <= b1; b += 3)
                        QuantDot.Tile4x3Avx2<TW>(wr, wStride, a + b * aStride, aStride, blocks, y + b * rows + r, rows);
                    if (b + 2 <= b1)
                    {
                        QuantDot.Tile2x2Avx2<TW>(wr, wStride, a + b * aStride, aStride, blocks, y + b * rows + r, rows);
                        QuantDot.Tile2x2Avx2<TW>(wr + 2 * wStride, wStride, a + b * aStride, aStride, blocks, y + b * rows + r + 2, rows);
                    }
                    else if (b < b1)
                        QuantDot.Rows4Avx2<TW>(wr, wStride, a + b * aStride, blocks, y + b * rows + r);
                }
                for (; r + 2 <= r1; r += 2)
                {
                    byte* wr = w + r * wStride;
                    int b = b0;
                    for (; b + 2 <= b1; b += 2)
                        QuantDot.Tile2x2Avx2<TW>(wr, wStride, a + b * aStride, aStride, blocks, y + b * rows + r, rows);
                    if (b < b1)
                    {
                        y[b * rows + r] = QuantDot.Dot1<TW>(wr, a + b * aStride, blocks);
                        y[b * rows + r + 1] = QuantDot.Dot1<TW>(wr + wStride, a + b * aStride, blocks);
                    }
                }
                if (r < r1)
                {
                    byte* wr = w + r * wStride;
                    int b = b0;
                    for (; b + 2 <= b1; b += 2)
                        QuantDot.Tile1x2Avx2<TW>(wr, a + b * aStride, aStride, blocks, y + b * rows + r, rows);
                    if (b < b1) y[b * rows + r] = QuantDot.Dot1<TW>(wr, a + b * aStride, blocks);
                }
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Q4Batched(int r0, int r1)
        {
            int blocks = Weights.Cols / Q8_0Format.BlockSize;
            nint wStride = (nint)Weights.RowBytes, aStride = (nint)ActivationRowBytes, rows = Weights.Rows;
            byte* w = Weights.Data;
            byte* a = Activations;
            float* y = Output;
            if (!CpuFeatures.Avx2Fma)
            {
                for (int b = 0; b < Batch; b++)
                    for (int r = r0; r < r1; r++)
                        y[b * rows + r] = Q4BatchDot.DotScalar(w + r * wStride, a + b * aStride, blocks);
                return;
            }
            int width = Q4BatchDot.TileColumns;
            for (int b0 = 0; b0 < Batch; b0 += BatchTile)
            {
                int b1 = Math.Min(Batch, b0 + BatchTile);
                for (int r = r0; r < r1; r += 8)
                {
                    int nr = Math.Min(8, r1 - r);
                    for (int b = b0; b < b1; b += width)
                        Q4BatchDot.TileAvx2(w + r * wStride, wStride, nr, a + b * aStride, aStride, Bias + (long)b * blocks,
                            Math.Min(width, b1 - b), blocks, y + b * rows + r, rows);
                }
            }
        }

        /// <summary>Q4_0 weights repacked into eight-row groups (Q4x8Dot): decode one group at a time, batches in 8 × 8 tiles.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Q4Groups(int r0, int r1)
        {
            int blocks = Weights.Cols / Q8_0Format.BlockSize;
            nint groupBytes = (nint)Weights.RowBytes * Q4_0x8Format.GroupRows, aStride = (nint)ActivationRowBytes, rows = Weights.Rows;
            byte* w = Weights.Data;
            byte* a = Activations;
            float* y = Output;
            if (!CpuFeatures.Avx2Fma)
            {
                for (int b = 0; b < Batch; b++)
                    for (int r = r0; r < r1; r += Q4_0x8Format.GroupRows)
                        Q4x8Dot.GroupScalar(w + r / Q4_0x8Format.GroupRows * groupBytes, a + b * aStride, blocks, y + b * rows + r);
                return;
            }
            if (Batch == 1)
            {
                for (int r = r0; r < r1; r += Q4_0x8Format.GroupRows)
                    Q4x8Dot.GroupAvx2(w + r / Q4_0x8Format.GroupRows * groupBytes, a, Bias, blocks, y + r);
                return;
            }
            int width = Q4BatchDot.TileColumns;
            for (int b0 = 0; b0 < Batch; b0 += BatchTile)
            {
                int b1 = Math.Min(Batch, b0 + BatchTile);
                for (int r = r0; r < r1; r += Q4_0x8Format.GroupRows)
                    for (int b = b0; b < b1; b += width)
                        Q4x8Dot.TileAvx2(w + r / Q4_0x8Format.GroupRows * groupBytes, a + b * aStride, aStride, Bias + (long)b * blocks,
                            Math.Min(width, b1 - b), blocks, y + b * rows + r, rows);
            }
        }

        /// <summary>
        /// K-quant weights repacked into eight-row groups (<see cref="Q4Kx8Dot"/>, <see cref="Q6Kx8Dot"/>, chosen by
        /// <typeparamref name="TK"/>): decode one group at a time, batches in 8 × 16 tiles (the same bits).
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void KQuantGroups<TK>(int r0, int r1) where TK : struct, IGroupKernel
        {
            const int groupRows = 8;
            int blocks = Weights.Cols / TK.BlockSize;
            nint groupBytes = (nint)Weights.RowBytes * groupRows, aStride = (nint)ActivationRowBytes, rows = Weights.Rows;
            byte* w = Weights.Data;
            float* y = Output;
            if (Batch == 1)
            {
                for (int r = r0; r < r1; r += groupRows)
                    TK.Group(w + r / groupRows * groupBytes, Activations, blocks, y + r);
                return;
            }
            int width = TK.TileColumns;
            for (int b0 = 0; b0 < Batch; b0 += BatchTile)
            {
                int b1 = Math.Min(Batch, b0 + BatchTile);
                for (int r = r0; r < r1; r += groupRows)
                    for (int b = b0; b < b1; b += width)
                        TK.Tile(w + r / groupRows * groupBytes, Activations + b * aStride, aStride, Math.Min(width, b1 - b), blocks, y + b * rows + r, rows);
            }
        }

        /// <summary>Q8_0 weights repacked into eight-row groups (Q8x8Dot): decode one group at a time, batches in 8 × 16 tiles.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Q8Groups(int r0, int r1)
        {
            int blocks = Weights.Cols / Q8_0Format.BlockSize;
            nint groupBytes = (nint)Weights.RowBytes * Q8_0x8Format.GroupRows, aStride = (nint)ActivationRowBytes, rows = Weights.Rows;
            byte* w = Weights.Data;
            float* y = Output;
            if (!CpuFeatures.Avx2Fma)
            {
                for (int b = 0; b < Batch; b++)
                    for (int r = r0; r < r1; r += Q8_0x8Format.GroupRows)
                        Q8x8Dot.GroupScalar(w + r / Q8_0x8Format.GroupRows * groupBytes, Activations + b * aStride, blocks, y + b * rows + r);
                return;
            }
            if (Batch == 1)
            {
                for (int r = r0; r < r1; r += Q8_0x8Format.GroupRows)
                    Q8x8Dot.GroupAvx2(w + r / Q8_0x8Format.GroupRows * groupBytes, Activations, blocks, y + r);
                return;
            }
            // Several activation rows: offset form and Q8BatchDot's tile with AVX-VNNI, normal form and Q8x8Dot's without.
            bool vnni = CpuFeatures.VnniTiles;
            int width = vnni ? Q8BatchDot.TileColumns : Q8x8Dot.TileColumns;
            for (int b0 = 0; b0 < Batch; b0 += BatchTile)
            {
                int b1 = Math.Min(Batch, b0 + BatchTile);
                for (int r = r0; r < r1; r += Q8_0x8Format.GroupRows)
                    for (int b = b0; b < b1; b += width)
                    {
                        byte* g = w + r / Q8_0x8Format.GroupRows * groupBytes;
                        if (vnni) Q8x8Dot.Tile(g, Activations + b * aStride, aStride, Math.Min(width, b1 - b), blocks, y + b * rows + r, rows);
                        else Q8x8Dot.TileNormal<Q8x8Dot.NoVnni>(g, Activations + b * aStride, aStride, Math.Min(width, b1 - b), blocks, y + b * rows + r, rows);
                    }
            }
        }

        /// <summary>Batched Q8_0, Q4_K and Q6_K products on the 8 × 16 tiles (Q8BatchDot, Q4KBatchDot, Q6KBatchDot; see <see cref="BatchTiles"/>).</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Tiles8x16(int r0, int r1)
        {
            GgmlType t = Weights.Type;
            int blocks = Weights.Cols / GgmlTypeInfo.BlockSize(t);
            nint wStride = (nint)Weights.RowBytes, aStride = (nint)ActivationRowBytes, rows = Weights.Rows;
            byte* w = Weights.Data;
            float* y = Output;
            int width = BatchTileColumns(t);
            bool vnni = CpuFeatures.VnniTiles;
            for (int b0 = 0; b0 < Batch; b0 += BatchTile)
            {
                int b1 = Math.Min(Batch, b0 + BatchTile);
                for (int r = r0; r < r1; r += Q4KBatchDot.TileRows)
                {
                    int nr = Math.Min(Q4KBatchDot.TileRows, r1 - r);
                    for (int b = b0; b < b1; b += width)
                    {
                        byte* ab = Activations + b * aStride;
                        int nc = Math.Min(width, b1 - b);
                        if (t == GgmlType.Q8_0) Q8BatchDot.Tile(w + r * wStride, wStride, nr, ab, aStride, nc, blocks, y + b * rows + r, rows);
                        else if (t == GgmlType.Q6_K && !vnni) Q6KBatchDot.Tile<IntegerDots.NoVnni>(w + r * wStride, wStride, nr, ab, aStride, nc, blocks, y + b * rows + r, rows);
                        else if (t == GgmlType.Q6_K) Q6KBatchDot.Tile(w + r * wStride, wStride, nr, ab, aStride, nc, blocks, y + b * rows + r, rows);
                        else Q4KBatchDot.Tile(w + r * wStride, wStride, nr, ab, aStride, nc, blocks, y + b * rows + r, rows);
                    }
                }
            }
        }

        /// <summary>
        /// One dot product per output for the types without register tiles (Q4_1, Q5_1, K-quants):
        /// the batch is walked in tiles so a chunk of weight rows stays in cache for several
        /// activation rows.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void RowDots(int r0, int r1)
        {
            GgmlType t = Weights.Type;
            int blocks = Weights.Cols / GgmlTypeInfo.BlockSize(t);
            nint wStride = (nint)Weights.RowBytes, aStride = (nint)ActivationRowBytes, rows = Weights.Rows;
            byte* w = Weights.Data;
            byte* a = Activations;
            float* y = Output;
            // Decode reads each weight row once, straight from memory: fetch a row two rows ahead
            // while this one is computed (the hardware prefetcher stops at every 4 KiB page).
            bool prefetch = Batch == 1;
            // Q4_K/Q5_K with several activation rows: each weight super-block is unpacked once for eight or four
            // activation rows (same bits as the single-row kernel for every output). Q6_K never gets here with several:
            // on AVX2+FMA CPUs it takes the 8 × 16 tile (BatchTiles).
            bool rows4 = Batch >= 4 && CpuFeatures.Avx2Fma && t is GgmlType.Q4_K or GgmlType.Q5_K;
            // With AVX-512 the JIT has 32 vector registers: Q4_K's 1 × 8 tiles keep all accumulators in registers.
            bool rows8 = rows4 && System.Runtime.Intrinsics.X86.Avx512BW.VL.IsSupported && t == GgmlType.Q4_K;
            for (int b0 = 0; b0 < Batch; b0 += BatchTile)
            {
                int b1 = Math.Min(Batch, b0 + BatchTile);
                for (int r = r0; r < r1; r++)
                {
                    byte* wr = w + r * wStride;
                    // Q4_K / Q6_K prefetch inside their kernels, a few lines per block (a burst per row stalls on the fill buffers).
                    bool inKernel = prefetch && CpuFeatures.Avx2Fma && t is GgmlType.Q4_K or GgmlType.Q6_K;
                    if (prefetch && !inKernel) PrefetchRow(wr + 2 * wStride, wStride);
                    int bStart = b0;
                    if (rows4)
                    {
                        if (rows8)
                            for (; bStart + 8 <= b1; bStart += 8)
                            {
                                byte* ab = a + bStart * aStride;
                                float* yb = y + bStart * rows + r;
                                KQuantDot.Q4Avx2Rows8(wr, ab, aStride, blocks, yb, rows);
                            }
                        for (; bStart + 4 <= b1; bStart += 4)
                        {
                            byte* ab = a + bStart * aStride;
                            float* yb = y + bStart * rows + r;
                            if (t == GgmlType.Q4_K) KQuantDot.Q4Avx2Rows4(wr, ab, aStride, blocks, yb, rows);
                            else KQuantDot.Q5Avx2Rows4(wr, ab, aStride, blocks, yb, rows);
                        }
                    }
                    for (int b = bStart; b < b1; b++)
                    {
                        byte* ab = a + b * aStride;
                        y[b * rows + r] = t switch
                        {
                            GgmlType.Q4_1 => LegacyDot.Dot1<Q41Weights>(wr, ab, blocks),
                            GgmlType.Q5_1 => LegacyDot.Dot1<Q51Weights>(wr, ab, blocks),
                            GgmlType.Q2_K => KQuantDot.Q2_KQ8_K(wr, ab, blocks),
                            GgmlType.Q3_K => KQuantDot.Q3_KQ8_K(wr, ab, blocks),
                            GgmlType.Q4_K => inKernel ? KQuantDot.Q4_KQ8_KPrefetch(wr, ab, blocks, 2 * wStride) : KQuantDot.Q4_KQ8_K(wr, ab, blocks),
                            GgmlType.Q5_K => KQuantDot.Q5_KQ8_K(wr, ab, blocks),
                            GgmlType.IQ4_NL => IQ4Dot.IQ4_NLQ8_0(wr, ab, blocks),
                            GgmlType.IQ4_XS => IQ4Dot.IQ4_XSQ8_K(wr, ab, blocks),
                            _ => inKernel ? KQuantDot.Q6_KQ8_KPrefetch(wr, ab, blocks, 2 * wStride) : KQuantDot.Q6_KQ8_K(wr, ab, blocks),
                        };
                    }
                }
            }
        }

        /// <summary>Software-prefetches <paramref name="bytes"/> bytes from <paramref name="p"/> (prefetches never fault, so reading past the matrix is harmless).</summary>
        private static void PrefetchRow(byte* p, nint bytes)
        {
            if (!System.Runtime.Intrinsics.X86.Sse.IsSupported) return;
            for (nint o = 0; o < bytes; o += 64) System.Runtime.Intrinsics.X86.Sse.Prefetch0(p + o);
        }

        /// <summary>
        /// The blocked order with AVX-512 registers (F16/BF16 weights): the chunk's rows widened in pairs
        /// (FloatDot.WidenPair), then 4 × 6 tiles whose 16-lane accumulators hold two outputs each — the
        /// same bits as the 256-bit tiles, twice the multiply-adds per instruction. The tiles walk k in
        /// blocks of <see cref="PairedKBlock"/> elements (accumulators carried in this thread's tile state),
        /// every row group and activation tile of the batch tile per k-block, so the weights and
        /// activations a tile reads come from L1 rather than L2.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void PairedFloat(int r0, int r1, int threadIndex)
        {
            int cols = Weights.Cols;
            nint rows = Weights.Rows, pairStride = 2 * (nint)cols;
            float* y = Output;
            float* a = (float*)Activations;
            bool bf16 = Weights.Type == GgmlType.BF16;
            float* wf = _owner._threadScratch + threadIndex * _owner._threadScratchFloats;
            var state = (System.Runtime.Intrinsics.Vector512<float>*)_owner._tileState + (nint)threadIndex * PairedStateVectors;
            for (int r = r0; r < r1; r += 2) // chunks hold whole groups of four rows
                FloatDot.WidenPair((ushort*)Weights.Row(r), (ushort*)Weights.Row(r + 1), wf + (nint)(r - r0) * cols, cols, bf16);
            for (int b0 = 0; b0 < Batch; b0 += BatchTile)
            {
                int b1 = Math.Min(Batch, b0 + BatchTile);
                int tiles = (b1 - b0) / 6;
                for (int k0 = 0; k0 < cols; k0 += PairedKBlock)
                {
                    int k1 = Math.Min(cols, k0 + PairedKBlock);
                    bool first = k0 == 0, last = k1 == cols;
                    for (int r = r0, g = 0; r < r1; r += 4, g++)
                    {
                        float* wr = wf + (nint)(r - r0) * cols;
                        for (int t = 0; t < tiles; t++)
                        {
                            int b = b0 + 6 * t;
                            FloatDot.PairedTile4x6(wr, pairStride, a + (nint)b * cols, cols, k0, k1, state + (g * PairedMaxTiles + t) * 12,
                                first, last, y + b * rows + r, rows);
                        }
                    }
                }
                for (int r = r0; r < r1; r += 4)
                    for (int b = b0 + 6 * tiles; b < b1; b++)
                        FloatDot.PairedTile4x1(wf + (nint)(r - r0) * cols, pairStride, a + (nint)b * cols, cols, y + b * rows + r);
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Float(int r0, int r1, int threadIndex)
        {
            int cols = Weights.Cols;
            nint rows = Weights.Rows;
            float* y = Output;
            float* a = (float*)Activations;
            GgmlType t = Weights.Type;
            if (!Blocked)
            {
                if (t == GgmlType.F16 && Batch == 1)
                {
                    // Decode: rows in pairs (same bits as one row at a time, fewer activation loads, prefetched
                    // weights); the activations were multiplied by 2^112 (PrepareKind.RoundF16Rebiased).
                    int r = r0;
                    for (; r + 2 <= r1; r += 2)
                        FloatDot.F16Rows2((ushort*)Weights.Row(r), (nint)(Weights.RowBytes / 2), a, cols, y + r);
                    if (r < r1)
                    {
                        float* pair = stackalloc float[2];
                        FloatDot.F16Rows2((ushort*)Weights.Row(r), 0, a, cols, pair); // the odd last row, twice
                        y[r] = pair[0];
                    }
                    return;
                }
                for (int b = 0; b < Batch; b++)
                {
                    float* ab = a + (nint)b * cols;
                    for (int r = r0; r < r1; r++)
                    {
                        byte* wr = Weights.Row(r);
                        y[b * rows + r] = t switch
                        {
                            GgmlType.F32 => FloatDot.F32((float*)wr, ab, cols),
                            GgmlType.F16 => FloatDot.F16((ushort*)wr, ab, cols),
                            _ => FloatDot.BF16((ushort*)wr, ab, cols),
                        };
                    }
                }
                return;
            }

            // Blocked order. F16/BF16 rows are widened (exactly) into this thread's scratch first,
            // once per chunk, then everything runs on floats.
            if (t != GgmlType.F32 && System.Runtime.Intrinsics.X86.Avx512DQ.IsSupported && CpuFeatures.Avx2Fma)
            {
                PairedFloat(r0, r1, threadIndex);
                return;
            }
            float* wf;
            nint wStride = cols;
            if (t == GgmlType.F32) wf = (float*)Weights.Row(r0);
            else
            {
                wf = _owner._threadScratch + threadIndex * _owner._threadScratchFloats;
                for (int r = r0; r < r1; r++)
                {
                    ushort* src = (ushort*)Weights.Row(r);
                    float* dst = wf + (nint)(r - r0) * cols;
                    if (t == GgmlType.F16) Fp16Format.ToSingle(src, dst, cols);
                    else Bf16Format.ToSingle(src, dst, cols);
                }
            }
            if (!System.Runtime.Intrinsics.X86.Fma.IsSupported)
            {
                for (int b = 0; b < Batch; b++)
                    for (int r = r0; r < r1; r++)
                        y[b * rows + r] = FloatDot.F32Blocked(wf + (nint)(r - r0) * wStride, a + (nint)b * cols, cols);
                return;
            }
            for (int b0 = 0; b0 < Batch; b0 += BatchTile)
            {
                int b1 = Math.Min(Batch, b0 + BatchTile);
                for (int r = r0; r < r1; r += 4) // the blocked path only runs when rows % 4 == 0
                {
                    float* wr = wf + (nint)(r - r0) * wStride;
                    int b = b0;
                    for (; b + 3 <= b1; b += 3)
                        FloatDot.BlockedTile4x3(wr, wStride, a + (nint)b * cols, cols, cols, y + b * rows + r, rows);
                    for (; b + 2 <= b1; b += 2)
                        FloatDot.BlockedTile4x2(wr, wStride, a + (nint)b * cols, cols, cols, y + b * rows + r, rows);
                    if (b < b1)
                        FloatDot.BlockedTile4x1(wr, wStride, a + (nint)b * cols, cols, y + b * rows + r);
                }
            }
        }
    }
}
