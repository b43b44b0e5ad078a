using System.Runtime.CompilerServices;
using Cria.Numerics.Formats;
using Cria.Numerics.Kernels;
using Cria.Numerics.Threading;

namespace Cria.Model;

/// <summary>
/// Causal multi-head attention of a batch of query tokens over the KV cache, one (token, head)
/// pair per work item; with grouped-query attention, query head h reads KV head h / groupSize.
/// <para>
/// The arithmetic follows llama.cpp's (non-flash) attention graph step by step, so that both
/// engines produce the same bits: scores = K·q, then softmax(scale · scores + causal mask) over
/// the KV length padded to a multiple of 32, then out = Vᵀ·p with V stored transposed. With an F16
/// cache ggml multiplies in half precision — the query is rounded to F16 before K·q and the
/// softmax weights before Vᵀ·p — and a product over two or more tokens goes through the
/// llamafile (tinyBLAS) kernels, whose summation order differs from the single-token dot.
/// </para>
/// </summary>
internal sealed unsafe class Attention : IParallelJob
{
    /// <summary>llama.cpp pads the number of KV cells it attends over to a multiple of this.</summary>
    public const int KvPadding = 32;

    private readonly LlamaConfig _c;
    private readonly float[] _scratch; // per thread, for each query head of a group: scores [ctx], half-rounded weights [ctx], query [headSize]
    private readonly int _contextSize;
    private readonly int _perThread;
    // Batched F16 attention: the cache rows widened to float once per layer and batch (exact), so
    // each (token, head) pair runs plain float dots, in the same tinyBLAS order, on them.
    private readonly float[] _keysWide, _valuesWide;

    // Per-call state (set by Run/RunSequences, read by Execute on the worker threads).
    private float* _q, _out;
    private KvCache? _cache;
    private int _layer, _firstPosition, _batch, _kvLength;
    // Batched F16 attention on widened rows: one work item per (token, KV head) runs all the query
    // heads that share the KV head together (ExecuteGroup).
    private bool _grouped;
    // Set for a batch whose rows belong to different sequences (one token each, own cache and position).
    private KvCache[]? _rowCaches;
    private int[]? _rowPositions;

    public Attention(LlamaConfig config, int contextSize, int threads)
    {
        _c = config;
        _contextSize = contextSize;
        _perThread = Math.Max(1, config.GroupSize) * (2 * contextSize + config.HeadSize);
        _scratch = GC.AllocateArray<float>(_perThread * Math.Max(1, threads), pinned: true);
        _keysWide = GC.AllocateArray<float>(contextSize * config.KvDimension, pinned: true);
        _valuesWide = GC.AllocateArray<float>(contextSize * config.KvDimension, pinned: true);
    }

    /// <summary>Number of cache cells llama.cpp attends over when the cache holds <paramref name="used"/>.</summary>
    public static int PaddedLength(int used, int contextSize) =>
        Math.Min(contextSize, Math.Max(KvPadding, (used + KvPadding - 1) / KvPadding * KvPadding));

    /// <param name="q">[batch, heads * headSize] queries, already rotated.</param>
    /// <param name="output">[batch, heads * headSize] attention output.</param>
    /// <param name="firstPosition">position of the batch's first token; token b sees positions 0..firstPosition+b.</param>
    public void Run(WorkerPool pool, KvCache cache, int layer, float* q, float* output, int batch, int firstPosition)
    {
        _q = q; _out = output; _cache = cache; _layer = layer; _firstPosition = firstPosition; _batch = batch;
        _kvLength = PaddedLength(firstPosition + batch, cache.ContextSize);
        if (batch >= 2 && cache.Type == KvCacheType.F16) WidenCache();
        _grouped = batch >= 2 && cache.Type == KvCacheType.F16 && _c.HeadSize % 8 == 0 && _kvLength % 8 == 0;
        try { pool.Run(this, batch * (_grouped ? _c.KvHeadCount : _c.HeadCount)); }
        finally { _grouped = false; _cache = null; }
    }

    /// <summary>
    /// Attention for a batch whose row b is the next token of its own sequence: it attends over
    /// <paramref name="caches"/>[b] up to and including <paramref name="positions"/>[b]. Each row is
    /// computed exactly as a single-token decode of that sequence would be.
    /// </summary>
    public void RunSequences(WorkerPool pool, KvCache[] caches, int[] positions, int layer, float* q, float* output, int batch)
    {
        _q = q; _out = output; _layer = layer; _batch = batch;
        _rowCaches = caches; _rowPositions = positions;
        try { pool.Run(this, batch * _c.HeadCount); }
        finally { _rowCaches = null; _rowPositions = null; }
    }

    private void WidenCache()
    {
        int kvDim = _c.KvDimension, used = _firstPosition + _batch, nKv = _kvLength;
        fixed (float* kw = _keysWide, vw = _valuesWide)
        {
            Fp16Format.ToSingle((ushort*)_cache!.Keys16(_layer), kw, used * kvDim);
            ushort* vt = (ushort*)_cache.Values16(_layer);
            for (int j = 0; j < kvDim; j++)
                Fp16Format.ToSingle(vt + (long)j * _contextSize, vw + (long)j * nKv, nKv);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Execute(int start, int end, int threadIndex)
    {
        if (_grouped)
        {
            for (int item = start; item < end; item++) ExecuteGroup(item, threadIndex);
            return;
        }
        int hs = _c.HeadSize, heads = _c.HeadCount, kvDim = _c.KvDimension, ctx = _contextSize, nKv = _kvLength;
        float scale = 1.0f / MathF.Sqrt(hs);
        float* scores = (float*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref _scratch[threadIndex * _perThread]);
        float* weights = scores + ctx;
        float* query = weights + ctx;
        var rowCaches = _rowCaches;
        // ggml hands products with two or more activation columns to tinyBLAS (needs k % 8 == 0);
        // rows of different sequences are each a one-token product.
        bool batched = _batch >= 2 && rowCaches is null;
        // One-row F16 dots on AMD: the query and the softmax weights (both F16-rounded) multiplied by 2^112 once,
        // exactly, so each dot needs only the cheaper half conversion; the same bits (FloatDot.F16Rebiased).
        bool rebias = FloatDot.RebiasedF16Dots;

        for (int item = start; item < end; item++)
        {
            int b = item / heads, h = item % heads;
            int kvHead = h / _c.GroupSize;
            var cache = rowCaches is null ? _cache! : rowCaches[b];
            int visible = rowCaches is null ? _firstPosition + b + 1 : _rowPositions![b] + 1;
            if (rowCaches is not null) nKv = PaddedLength(visible, ctx);
            bool f16 = cache.Type == KvCacheType.F16;
            bool blockedKq = batched && f16 && hs % 8 == 0; // an F32 query is a non-contiguous view: plain vec_dot
            bool blockedV = batched && nKv % 8 == 0;
            float* q = _q + (long)b * heads * hs + h * hs;
            float* o = _out + (long)b * heads * hs + h * hs;

            // scores[t] = k_t · q
            if (f16)
            {
                Fp16Format.Round(q, query, hs); // ggml multiplies an F16 cache with an F16 copy of the query
                if (blockedKq)
                {
                    float* keys = (float*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref _keysWide[0]) + kvHead * hs;
                    FloatDot.F32BlockedMany(keys, kvDim, visible, query, hs, scores);
                }
                else
                {
                    ushort* keys = (ushort*)cache.Keys16(_layer) + kvHead * hs;
                    if (rebias) VectorOps.Scale(new Span<float>(query, hs), Fp16Format.RebiasScale);
                    for (int t = 0; t < visible; t++)
                        scores[t] = rebias ? FloatDot.F16Rebiased(keys + (long)t * kvDim, query, hs) : FloatDot.F16(keys + (long)t * kvDim, query, hs);
                }
            }
            else
            {
                float* keys = cache.Keys32(_layer) + kvHead * hs;
                for (int t = 0; t < visible; t++) scores[t] = FloatDot.F32(keys + (long)t * kvDim, q, hs);
            }

            // p = softmax(scale · scores + mask); masked cells (t >= visible) get exactly 0.
            Softmax(scores, visible, scale);

            // o[d] = Σ_t p_t V[d, t] over all nKv cells (the masked ones contribute 0).
            if (f16)
            {
                HalfWeights(scores, weights, visible, nKv);
                if (blockedV)
                {
                    // Widened rows with a compact stride of nKv (see WidenCache).
                    float* vw = (float*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref _valuesWide[0]);
                    FloatDot.F32BlockedMany(vw + (long)kvHead * hs * nKv, nKv, hs, weights, nKv, o);
                }
                else
                {
                    ushort* vt = (ushort*)cache.Values16(_layer);
                    if (rebias) VectorOps.Scale(new Span<float>(weights, nKv), Fp16Format.RebiasScale);
                    for (int d = 0; d < hs; d++)
                        o[d] = rebias ? FloatDot.F16Rebiased(vt + (long)(kvHead * hs + d) * ctx, weights, nKv) : FloatDot.F16(vt + (long)(kvHead * hs + d) * ctx, weights, nKv);
                }
            }
            else
            {
                for (int t = visible; t < nKv; t++) scores[t] = 0f;
                float* vt = cache.Values32(_layer);
                for (int d = 0; d < hs; d++)
                {
                    float* row = vt + (long)(kvHead * hs + d) * ctx;
                    o[d] = blockedV ? FloatDot.F32Blocked(row, scores, nKv) : FloatDot.F32(row, scores, nKv);
                }
            }
        }
    }

    /// <summary>
    /// Work item (token b, KV head) of a batch with an F16 cache widened to float: the GroupSize query
    /// heads that read this KV head are done together, K·q and Vᵀ·p as register tiles over the shared
    /// rows (<see cref="FloatDot.F32BlockedTile"/>). Each output gets the same steps, in the same order,
    /// as the per-head path in <see cref="Execute"/> (blocked K·q and Vᵀ·p), so the same bits.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void ExecuteGroup(int item, int threadIndex)
    {
        int hs = _c.HeadSize, heads = _c.HeadCount, kvDim = _c.KvDimension, ctx = _contextSize, nKv = _kvLength;
        int group = _c.GroupSize, kvHeads = _c.KvHeadCount;
        float scale = 1.0f / MathF.Sqrt(hs);
        float* scores = (float*)Unsafe.AsPointer(ref _scratch[threadIndex * _perThread]); // [group][ctx]
        float* weights = scores + (long)group * ctx;                                      // [group][ctx]
        float* queries = weights + (long)group * ctx;                                     // [group][hs]
        int b = item / kvHeads, kvHead = item % kvHeads;
        int visible = _firstPosition + b + 1;
        float* q = _q + (long)b * heads * hs + kvHead * group * hs; // the group's heads are adjacent
        float* o = _out + (long)b * heads * hs + kvHead * group * hs;

        Fp16Format.Round(q, queries, group * hs); // ggml multiplies an F16 cache with an F16 copy of the query
        float* keys = (float*)Unsafe.AsPointer(ref _keysWide[0]) + kvHead * hs;
        FloatDot.F32BlockedTile(keys, kvDim, visible, queries, hs, group, hs, scores, ctx);
        for (int g = 0; g < group; g++)
        {
            Softmax(scores + (long)g * ctx, visible, scale);
            HalfWeights(scores + (long)g * ctx, weights + (long)g * ctx, visible, nKv);
        }
        float* values = (float*)Unsafe.AsPointer(ref _valuesWide[0]) + (long)kvHead * hs * nKv;
        FloatDot.F32BlockedTile(values, nKv, hs, weights, ctx, group, nKv, o, hs);
    }

    /// <summary>scores[0..visible) ← softmax(scale · scores) (the causal mask leaves the rest out).</summary>
    private static void Softmax(float* scores, int visible, float scale)
    {
        for (int t = 0; t < visible; t++) scores[t] *= scale;
        VectorOps.Softmax(new Span<float>(scores, visible), paddedRow: true);
    }

    /// <summary>The softmax weights as ggml multiplies them with an F16 cache: rounded to F16, and exactly 0 for the masked cells up to <paramref name="nKv"/>.</summary>
    private static void HalfWeights(float* probabilities, float* weights, int visible, int nKv)
    {
        Fp16Format.Round(probabilities, weights, visible);
        new Span<float>(weights + visible, nKv - visible).Clear();
    }
}
