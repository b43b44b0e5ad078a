using Cria.Numerics.Formats;
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
    // Which cache and position each batch row belongs to (see DecodeBatch).
    private readonly KvCache[] _rowCaches;
    private readonly int[] _rowPositions;

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
        _rowCaches = new KvCache[B];
        _rowPositions = new int[B];
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
    /// Evaluates the next token of several sequences in one forward pass (continuous batching):
    /// <paramref name="tokens"/>[i] is appended to <paramref name="sequences"/>[i], whose
    /// <see cref="LastLogits"/> then hold that token's logits. The weights are read once for all of
    /// them; each sequence attends over its own cache. The sequences must be distinct contexts of one
    /// model with the same context size; the first lends its scratch buffers.
    /// </summary>
    public static void DecodeBatch(ReadOnlySpan<LlamaContext> sequences, ReadOnlySpan<int> tokens)
    {
        if (sequences.Length != tokens.Length) throw new ArgumentException("one token per sequence is needed", nameof(tokens));
        if (sequences.IsEmpty) return;
        var lead = sequences[0];
        if (sequences.Length > lead._batchCapacity)
            throw new ArgumentException($"at most {lead._batchCapacity} sequences can be decoded together (the batch size)", nameof(sequences));
        for (int i = 0; i < sequences.Length; i++)
        {
            var s = sequences[i];
            if (s._model != lead._model) throw new ArgumentException("the sequences belong to different models", nameof(sequences));
            if (s.ContextSize != lead.ContextSize) throw new ArgumentException("the sequences have different context sizes", nameof(sequences));
            if (s.Position >= s.ContextSize) throw new ContextOverflowException(s.Position + 1, s.ContextSize);
            for (int j = 0; j < i; j++)
                if (sequences[j] == s) throw new ArgumentException("a sequence appears twice in the batch", nameof(sequences));
            lead._rowCaches[i] = s.Cache;
            lead._rowPositions[i] = s.Position;
        }
        lead.Forward(tokens, lead._rowCaches, lead._rowPositions, RowOutput.Logits);
        int V = lead._c.VocabularySize;
        for (int i = 0; i < sequences.Length; i++)
        {
            // Row 0 is already the lead's own; every other row goes to its sequence (distinct contexts).
            if (i > 0) Array.Copy(lead._logits, (long)i * V, sequences[i]._logits, 0, V);
            sequences[i]._lastLogitsRow = 0;
        }
        Array.Clear(lead._rowCaches, 0, sequences.Length);
    }

    /// <summary>
    /// Runs the tokens through the model from an empty cache and returns each token's final hidden
    /// state (after the output norm, before the output projection): [tokens, embedding length]. The
    /// cache is left holding the tokens.
    /// </summary>
    public float[] EmbedAll(ReadOnlySpan<int> tokens)
    {
        if (tokens.IsEmpty) throw new ArgumentException("no tokens to embed", nameof(tokens));
        if (tokens.Length > ContextSize) throw new ContextOverflowException(tokens.Length, ContextSize);
        Reset();
        int d = _c.EmbeddingLength;
        var all = new float[(long)tokens.Length * d];
        int done = 0;
        while (done < tokens.Length)
        {
            int n = Math.Min(_batchCapacity, tokens.Length - done);
            Forward(tokens.Slice(done, n), allLogits: true, RowOutput.Hidden);
            Array.Copy(_xNorm, 0, all, (long)done * d, (long)n * d);
            done += n;
        }
        return all;
    }

    private enum RowOutput { Logits, Hidden }

    /// <summary>A batch of this context's next tokens (consecutive positions from <see cref="Position"/>).</summary>
    private void Forward(ReadOnlySpan<int> tokens, bool allLogits, RowOutput output = RowOutput.Logits)
    {
        int pos0 = Cache.Length;
        if (pos0 + tokens.Length > ContextSize)
            throw new ContextOverflowException(pos0 + tokens.Length, ContextSize);
        for (int b = 0; b < tokens.Length; b++) _rowPositions[b] = pos0 + b;
        Forward(tokens, null, _rowPositions, output, lastRowOnly: !allLogits);
    }

    /// <summary>
    /// The transformer, for a batch of tokens. Row b is the token at position
    /// <paramref name="positions"/>[b] of the sequence whose cache is <paramref name="caches"/>[b];
    /// with <paramref name="caches"/> null every row belongs to this context (consecutive positions).
    /// </summary>
    private void Forward(ReadOnlySpan<int> tokens, KvCache[]? caches, int[] positions, RowOutput output, bool lastRowOnly = false)
    {
        int n = tokens.Length;
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
                Rope.Angles(positions[b], _c.RopeDimensionCount, _c.RopeFrequencyBase, _c.RopeFrequencyScale,
                    _ropeCos.AsSpan(b * half, half), _ropeSin.AsSpan(b * half, half), _w.RopeFrequencyFactors);

            for (int l = 0; l < _c.BlockCount; l++)
            {
                var blk = _w.Blocks[l];

                // Attention: x += Wo · Attention(RoPE(Wq·h), RoPE(Wk·h), Wv·h), h = RMSNorm(x)
                RmsNormRows(x, blk.AttentionNorm, xn, n, d);
                _matmul.MultiplySharedInput(xn, n, blk.Query, q, blk.Key, k, blk.Value, v);
                for (int b = 0; b < n; b++)
                {
                    float* c = P(_ropeCos) + b * half, s = P(_ropeSin) + b * half;
                    Rope.Apply(q + (long)b * qd, _c.HeadCount, _c.HeadSize, _c.RopeDimensionCount, c, s);
                    Rope.Apply(k + (long)b * kvd, _c.KvHeadCount, _c.HeadSize, _c.RopeDimensionCount, c, s);
                }
                if (caches is null)
                {
                    StoreKeysAndValues(Cache, l, k, v, n, positions[0]);
                    _attention.Run(_model.Pool, Cache, l, q, attn, n, positions[0]);
                }
                else
                {
                    for (int b = 0; b < n; b++)
                        StoreKeysAndValues(caches[b], l, k + (long)b * kvd, v + (long)b * kvd, 1, positions[b]);
                    _attention.RunSequences(_model.Pool, caches, positions, l, q, attn, n);
                }
                _matmul.Multiply(blk.AttentionOutput, attn, n, proj);
                VectorOps.Add(new ReadOnlySpan<float>(proj, n * d), new Span<float>(x, n * d));

                // Feed-forward: x += W_down · (SiLU(W_gate·h) ⊙ W_up·h), h = RMSNorm(x)
                RmsNormRows(x, blk.FeedForwardNorm, xn, n, d);
                _matmul.MultiplySharedInput(xn, n, blk.Gate, gate, blk.Up, up);
                VectorOps.SiluMul(new ReadOnlySpan<float>(gate, n * ff), new ReadOnlySpan<float>(up, n * ff), new Span<float>(gate, n * ff), rowLength: ff);
                _matmul.Multiply(blk.Down, gate, n, proj);
                VectorOps.Add(new ReadOnlySpan<float>(proj, n * d), new Span<float>(x, n * d));
            }
            if (caches is null) Cache.Length = positions[0] + n;
            else
                for (int b = 0; b < n; b++) caches[b].Length = positions[b] + 1;

            // Final norm and the output projection (only the last row unless all are wanted).
            int first = lastRowOnly ? n - 1 : 0;
            int rows = n - first;
            RmsNormRows(x + (long)first * d, _w.OutputNorm, xn, rows, d);
            if (output == RowOutput.Logits)
            {
                _matmul.Multiply(_w.Output, xn, rows, P(_logits));
                _lastLogitsRow = rows - 1;
            }
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
    private void StoreKeysAndValues(KvCache cache, int layer, float* k, float* v, int n, int pos0)
    {
        int kvd = _c.KvDimension, ctx = cache.ContextSize;
        if (cache.Type == KvCacheType.F32)
        {
            Buffer.MemoryCopy(k, cache.Keys32(layer) + (long)pos0 * kvd, (long)n * kvd * 4, (long)n * kvd * 4);
            float* vt = cache.Values32(layer);
            for (int b = 0; b < n; b++)
                for (int j = 0; j < kvd; j++)
                    vt[(long)j * ctx + pos0 + b] = v[(long)b * kvd + j];
        }
        else
        {
            Fp16Format.FromSingle(k, (ushort*)(cache.Keys16(layer) + (long)pos0 * kvd), n * kvd);
            ushort* vt = (ushort*)cache.Values16(layer);
            for (int b = 0; b < n; b++)
                for (int j = 0; j < kvd; j++)
                    vt[(long)j * ctx + pos0 + b] = Fp16Format.FromSingle(v[(long)b * kvd + j]);
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
