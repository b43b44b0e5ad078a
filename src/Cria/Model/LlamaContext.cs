using Cria.Numerics.Kernels;

namespace Cria.Model;

/// <summary>Options for an inference context.</summary>
public sealed record ContextOptions
{
    /// <summary>
    /// Context size in tokens; 0 means the model's training context length, capped at
    /// <see cref="DefaultMaximum"/> so that a 128K-context model does not allocate a 128K cache
    /// unless asked to.
    /// </summary>
    public int ContextSize { get; init; }

    /// <summary>Upper bound of the default context size (an explicit ContextSize may exceed it).</summary>
    public const int DefaultMaximum = 4096;
    /// <summary>Most tokens evaluated in one forward pass (prompts are split into batches of this size).</summary>
    public int BatchSize { get; init; } = 512;
    public KvCacheType KvCacheType { get; init; } = KvCacheType.F16;
}

/// <summary>
/// One sequence being evaluated: the KV cache plus the scratch buffers of the forward pass. Not
/// thread-safe; create one per concurrent conversation.
/// </summary>
public sealed unsafe class LlamaContext : IDisposable
{
    private readonly LlamaModel _model;
    private readonly LlamaConfig _c;
    private readonly LlamaWeights _w;
    private readonly MatMul _matmul;
    private readonly Attention _attention;
    private readonly int _batchCapacity;

    // Activations, each [batch, width], pinned for the kernels.
    private readonly float[] _x, _xNorm, _q, _k, _v, _attn, _proj, _gate, _up;
    private readonly float[] _ropeCos, _ropeSin;
    private readonly float[] _logits;

    internal LlamaContext(LlamaModel model, ContextOptions options)
    {
        _model = model;
        _c = model.Config;
        _w = model.Weights;
        int ctx = options.ContextSize == 0 ? Math.Min(_c.ContextLength, ContextOptions.DefaultMaximum) : options.ContextSize;
        if (ctx < 1) throw new ArgumentOutOfRangeException(nameof(options), $"context size {ctx} must be positive");
        if (options.BatchSize < 1) throw new ArgumentOutOfRangeException(nameof(options), "batch size must be positive");
        ContextSize = ctx;
        _batchCapacity = Math.Min(options.BatchSize, ctx);
        Cache = new KvCache(_c.BlockCount, ctx, _c.KvDimension, options.KvCacheType);
        _matmul = new MatMul(model.Pool);
        _attention = new Attention(_c, ctx, model.Threads);

        int B = _batchCapacity, d = _c.EmbeddingLength, qd = _c.HeadCount * _c.HeadSize;
        _x = Pinned(B * d);
        _xNorm = Pinned(B * Math.Max(d, qd));
        _q = Pinned(B * qd);
        _k = Pinned(B * _c.KvDimension);
        _v = Pinned(B * _c.KvDimension);
        _attn = Pinned(B * qd);
        _proj = Pinned(B * d);
        _gate = Pinned(B * _c.FeedForwardLength);
        _up = Pinned(B * _c.FeedForwardLength);
        _ropeCos = Pinned(B * _c.RopeDimensionCount / 2);
        _ropeSin = Pinned(B * _c.RopeDimensionCount / 2);
        _logits = Pinned(B * _c.VocabularySize);
    }

    private static float[] Pinned(int n) => GC.AllocateArray<float>(Math.Max(n, 1), pinned: true);
    private static float* P(float[] a) => (float*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref a[0]);

    public LlamaModel Model => _model;
    public KvCache Cache { get; }
    public int ContextSize { get; }
    /// <summary>Number of tokens already in the KV cache.</summary>
    public int Position => Cache.Length;
    public int BatchSize => _batchCapacity;

    /// <summary>The logits after the most recently evaluated token (valid until the next call).</summary>
    public ReadOnlySpan<float> LastLogits => new(_logits, _lastLogitsRow * _c.VocabularySize, _c.VocabularySize);
    private int _lastLogitsRow;

    /// <summary>
    /// Evaluates tokens at the next positions and returns the logits of the last one (a view of an
    /// internal buffer, valid until the next call).
    /// </summary>
    public ReadOnlySpan<float> Evaluate(ReadOnlySpan<int> tokens)
    {
        if (tokens.IsEmpty) throw new ArgumentException("no tokens to evaluate", nameof(tokens));
        if (Position + tokens.Length > ContextSize) throw new ContextOverflowException(Position + tokens.Length, ContextSize);
        int done = 0;
        while (done < tokens.Length)
        {
            int n = Math.Min(_batchCapacity, tokens.Length - done);
            Forward(tokens.Slice(done, n), allLogits: false);
            done += n;
        }
        return LastLogits;
    }

    /// <summary>
    /// Evaluates tokens and returns the logits of every one of them ([tokens, vocab], row-major).
    /// The tokens go through in batches of at most <see cref="BatchSize"/>.
    /// </summary>
    public float[] EvaluateAll(ReadOnlySpan<int> tokens)
    {
        int V = _c.VocabularySize;
        if (Position + tokens.Length > ContextSize) throw new ContextOverflowException(Position + tokens.Length, ContextSize);
        var all = new float[(long)tokens.Length * V];
        int done = 0;
        while (done < tokens.Length)
        {
            int n = Math.Min(_batchCapacity, tokens.Length - done);
            Forward(tokens.Slice(done, n), allLogits: true);
            Array.Copy(_logits, 0, all, (long)done * V, (long)n * V);
            done += n;
        }
        return all;
    }

    /// <summary>Drops cached positions from <paramref name="length"/> on (0 clears the context).</summary>
    public void Truncate(int length) => Cache.Truncate(length);

    public void Reset() => Cache.Clear();

    /// <summary>
    /// The transformer, for a batch of tokens at positions Position .. Position + n - 1.
    /// </summary>
    private void Forward(ReadOnlySpan<int> tokens, bool allLogits)
    {
        int n = tokens.Length;
        int pos0 = Cache.Length;
        if (pos0 + n > ContextSize)
            throw new ContextOverflowException(pos0 + n, ContextSize);
        int V = _c.VocabularySize;
        foreach (int t in tokens)
            if ((uint)t >= (uint)V) throw new ArgumentOutOfRangeException(nameof(tokens), $"token id {t} is outside the vocabulary (0..{V - 1})");

        int d = _c.EmbeddingLength, qd = _c.HeadCount * _c.HeadSize, kvd = _c.KvDimension, ff = _c.FeedForwardLength;
        float* x = P(_x), xn = P(_xNorm), q = P(_q), k = P(_k), v = P(_v), attn = P(_attn), proj = P(_proj), gate = P(_gate), up = P(_up);

        lock (_model.ComputeLock)
        {
            // Token embeddings.
            for (int b = 0; b < n; b++)
                MatMul.GetRow(_w.TokenEmbedding, tokens[b], new Span<float>(x + (long)b * d, d));

            // Rotation angles, shared by every layer and head.
            int half = _c.RopeDimensionCount / 2;
            for (int b = 0; b < n; b++)
                Rope.Angles(pos0 + b, _c.RopeDimensionCount, _c.RopeFrequencyBase, _c.RopeFrequencyScale,
                    _ropeCos.AsSpan(b * half, half), _ropeSin.AsSpan(b * half, half), _w.RopeFrequencyFactors);

            for (int l = 0; l < _c.BlockCount; l++)
            {
                var blk = _w.Blocks[l];

                // Attention: x += Wo · Attention(RoPE(Wq·h), RoPE(Wk·h), Wv·h), h = RMSNorm(x)
                RmsNormRows(x, blk.AttentionNorm, xn, n, d);
                _matmul.Multiply(blk.Query, xn, n, q);
                _matmul.Multiply(blk.Key, xn, n, k);
                _matmul.Multiply(blk.Value, xn, n, v);
                for (int b = 0; b < n; b++)
                {
                    float* c = P(_ropeCos) + b * half, s = P(_ropeSin) + b * half;
                    Rope.Apply(q + (long)b * qd, _c.HeadCount, _c.HeadSize, _c.RopeDimensionCount, c, s);
                    Rope.Apply(k + (long)b * kvd, _c.KvHeadCount, _c.HeadSize, _c.RopeDimensionCount, c, s);
                }
                StoreKeysAndValues(l, k, v, n, pos0);
                _attention.Run(_model.Pool, Cache, l, q, attn, n, pos0);
                _matmul.Multiply(blk.AttentionOutput, attn, n, proj);
                VectorOps.Add(new ReadOnlySpan<float>(proj, n * d), new Span<float>(x, n * d));

                // Feed-forward: x += W_down · (SiLU(W_gate·h) ⊙ W_up·h), h = RMSNorm(x)
                RmsNormRows(x, blk.FeedForwardNorm, xn, n, d);
                _matmul.Multiply(blk.Gate, xn, n, gate);
                _matmul.Multiply(blk.Up, xn, n, up);
                VectorOps.SiluMul(new ReadOnlySpan<float>(gate, n * ff), new ReadOnlySpan<float>(up, n * ff), new Span<float>(gate, n * ff), rowLength: ff);
                _matmul.Multiply(blk.Down, gate, n, proj);
                VectorOps.Add(new ReadOnlySpan<float>(proj, n * d), new Span<float>(x, n * d));
            }
            Cache.Length = pos0 + n;

            // Final norm and the output projection (only the last row unless all are wanted).
            int first = allLogits ? 0 : n - 1;
            int rows = n - first;
            RmsNormRows(x + (long)first * d, _w.OutputNorm, xn, rows, d);
            _matmul.Multiply(_w.Output, xn, rows, P(_logits));
            _lastLogitsRow = rows - 1;
        }
    }

    private void RmsNormRows(float* x, float[] weight, float* dst, int rows, int width)
    {
        for (int r = 0; r < rows; r++)
            VectorOps.RmsNorm(new ReadOnlySpan<float>(x + (long)r * width, width), weight, _c.RmsEpsilon, new Span<float>(dst + (long)r * width, width));
    }

    /// <summary>
    /// Writes the batch's keys (position-major) and values (transposed: one row per value
    /// dimension, positions along it, as llama.cpp stores V for its non-flash attention).
    /// </summary>
    private void StoreKeysAndValues(int layer, float* k, float* v, int n, int pos0)
    {
        int kvd = _c.KvDimension, ctx = ContextSize;
        if (Cache.Type == KvCacheType.F32)
        {
            Buffer.MemoryCopy(k, Cache.Keys32(layer) + (long)pos0 * kvd, (long)n * kvd * 4, (long)n * kvd * 4);
            float* vt = Cache.Values32(layer);
            for (int b = 0; b < n; b++)
                for (int j = 0; j < kvd; j++)
                    vt[(long)j * ctx + pos0 + b] = v[(long)b * kvd + j];
        }
        else
        {
            Half* kc = Cache.Keys16(layer) + (long)pos0 * kvd;
            for (long i = 0; i < (long)n * kvd; i++) kc[i] = (Half)k[i];
            Half* vt = Cache.Values16(layer);
            for (int b = 0; b < n; b++)
                for (int j = 0; j < kvd; j++)
                    vt[(long)j * ctx + pos0 + b] = (Half)v[(long)b * kvd + j];
        }
    }

    public void Dispose() => _matmul.Dispose();
}

/// <summary>The tokens to evaluate do not fit in the context.</summary>
public sealed class ContextOverflowException : Exception
{
    public ContextOverflowException(int needed, int contextSize)
        : base($"the context holds {contextSize} tokens but {needed} are needed; use a larger context (-c)")
    {
        Needed = needed;
        ContextSize = contextSize;
    }

    public int Needed { get; }
    public int ContextSize { get; }
}
