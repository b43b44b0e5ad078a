using System.Numerics;
using Cria.Numerics.Threading;

namespace Cria.Model;

/// <summary>
/// Causal multi-head attention of a batch of query tokens over the KV cache, one (token, head)
/// pair per work item. With grouped-query attention, query head h reads KV head h / groupSize.
/// Mirrors llama.cpp's arithmetic: scores q·k scaled by 1/sqrt(headSize), softmax accumulated in
/// double, then the weighted sum of values. With an F16 cache llama.cpp multiplies in half
/// precision: the query is rounded to F16 before q·k, and the softmax weights before the value
/// sum; this class does the same so both engines agree.
/// </summary>
internal sealed unsafe class Attention : IParallelJob
{
    private readonly LlamaConfig _c;
    private readonly float[] _scores; // [threads, contextSize]
    private readonly int _contextSize;

    // Per-call state (set by Run, read by Execute on the worker threads).
    private float* _q, _out;
    private KvCache? _cache;
    private int _layer, _firstPosition, _batch;

    public Attention(LlamaConfig config, int contextSize, int threads)
    {
        _c = config;
        _contextSize = contextSize;
        _scores = GC.AllocateArray<float>(contextSize * Math.Max(1, threads), pinned: true);
    }

    /// <param name="q">[batch, heads * headSize] queries, already rotated.</param>
    /// <param name="output">[batch, heads * headSize] attention output.</param>
    /// <param name="firstPosition">position of the batch's first token; token b sees positions 0..firstPosition+b.</param>
    public void Run(WorkerPool pool, KvCache cache, int layer, float* q, float* output, int batch, int firstPosition)
    {
        _q = q; _out = output; _cache = cache; _layer = layer; _firstPosition = firstPosition; _batch = batch;
        pool.Run(this, batch * _c.HeadCount);
        _cache = null;
    }

    public void Execute(int start, int end, int threadIndex)
    {
        int hs = _c.HeadSize, heads = _c.HeadCount, kvDim = _c.KvDimension;
        float scale = 1.0f / MathF.Sqrt(hs);
        float* scores = (float*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref _scores[threadIndex * _contextSize]);
        bool f16 = _cache!.Type == KvCacheType.F16;
        Span<float> qRounded = stackalloc float[hs];
        Span<float> acc = stackalloc float[hs];
        for (int item = start; item < end; item++)
        {
            int b = item / heads, h = item % heads;
            int kvHead = h / _c.GroupSize;
            int n = _firstPosition + b + 1; // causal: positions 0..pos inclusive
            float* q = _q + (long)b * heads * hs + h * hs;
            float* o = _out + (long)b * heads * hs + h * hs;

            // scores[t] = scale * q·k_t
            if (f16)
            {
                for (int d = 0; d < hs; d++) qRounded[d] = (float)(Half)q[d];
                Half* keys = _cache.Keys16(_layer) + kvHead * hs;
                for (int t = 0; t < n; t++)
                {
                    Half* k = keys + (long)t * kvDim;
                    float s = 0;
                    for (int d = 0; d < hs; d++) s += qRounded[d] * (float)k[d];
                    scores[t] = s * scale;
                }
            }
            else
            {
                float* keys = _cache.Keys32(_layer) + kvHead * hs;
                for (int t = 0; t < n; t++)
                    scores[t] = Dot(q, keys + (long)t * kvDim, hs) * scale;
            }

            // softmax over the visible positions
            float max = float.NegativeInfinity;
            for (int t = 0; t < n; t++) max = MathF.Max(max, scores[t]);
            double sum = 0;
            for (int t = 0; t < n; t++)
            {
                float e = MathF.Exp(scores[t] - max);
                scores[t] = e;
                sum += e;
            }
            float inv = (float)(1.0 / sum);
            for (int t = 0; t < n; t++) scores[t] *= inv;

            // o = Σ_t p_t v_t
            acc.Clear();
            if (f16)
            {
                Half* values = _cache.Values16(_layer) + kvHead * hs;
                for (int t = 0; t < n; t++)
                {
                    float p = (float)(Half)scores[t];
                    Half* v = values + (long)t * kvDim;
                    for (int d = 0; d < hs; d++) acc[d] += p * (float)v[d];
                }
            }
            else
            {
                float* values = _cache.Values32(_layer) + kvHead * hs;
                for (int t = 0; t < n; t++)
                {
                    float p = scores[t];
                    float* v = values + (long)t * kvDim;
                    Axpy(p, v, acc, hs);
                }
            }
            for (int d = 0; d < hs; d++) o[d] = acc[d];
        }
    }

    private static float Dot(float* a, float* b, int n)
    {
        int i = 0;
        float s = 0;
        if (Vector.IsHardwareAccelerated && n >= Vector<float>.Count)
        {
            var vs = Vector<float>.Zero;
            for (; i <= n - Vector<float>.Count; i += Vector<float>.Count)
                vs += System.Runtime.CompilerServices.Unsafe.ReadUnaligned<Vector<float>>(a + i) *
                      System.Runtime.CompilerServices.Unsafe.ReadUnaligned<Vector<float>>(b + i);
            s = Vector.Sum(vs);
        }
        for (; i < n; i++) s += a[i] * b[i];
        return s;
    }

    private static void Axpy(float p, float* v, Span<float> acc, int n)
    {
        for (int d = 0; d < n; d++) acc[d] += p * v[d];
    }
}
