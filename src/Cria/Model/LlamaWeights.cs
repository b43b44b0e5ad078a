using Cria.Gguf;
using Cria.Numerics;
using Cria.Numerics.Formats;
using Cria.Numerics.Kernels;

namespace Cria.Model;

/// <summary>The weights of one transformer block.</summary>
public sealed class LlamaBlockWeights
{
    public required float[] AttentionNorm { get; init; }
    public required WeightMatrix Query { get; init; }
    public required WeightMatrix Key { get; init; }
    public required WeightMatrix Value { get; init; }
    public required WeightMatrix AttentionOutput { get; init; }
    public required float[] FeedForwardNorm { get; init; }
    public required WeightMatrix Gate { get; init; }
    public required WeightMatrix Up { get; init; }
    public required WeightMatrix Down { get; init; }
}

/// <summary>
/// All tensors of a Llama model, looked up by llama.cpp's tensor names. Matrices point into the
/// memory-mapped file, except Q4_0, Q8_0, Q4_K and Q6_K matrices when repacking is asked for: those are copied at load
/// into eight-row groups (<see cref="Q4_0x8Format"/>, <see cref="Q8_0x8Format"/>, <see cref="Q4_Kx8Format"/>,
/// <see cref="Q6_Kx8Format"/>; Q4_K and Q6_K on CPUs with AVX2 and FMA), read past the mapping so the process keeps one
/// copy), which the decode and prompt kernels read faster than plain rows. The token embedding is
/// not repacked (it is read a row at a time); an output projection tied to it gets its own repacked copy.
/// The small norm vectors are read into arrays. Dispose frees the repacked copies.
/// </summary>
public sealed class LlamaWeights : IDisposable
{
    private WeightRepacker? _repacked;

    public required WeightMatrix TokenEmbedding { get; init; }
    public required LlamaBlockWeights[] Blocks { get; init; }
    public required float[] OutputNorm { get; init; }
    /// <summary>The output projection; the token embedding when the file has no output.weight (tied).</summary>
    public required WeightMatrix Output { get; init; }
    public bool OutputIsTied { get; init; }
    /// <summary>
    /// Llama 3.1's RoPE frequency factors (<c>rope_freqs.weight</c>, RoPE dimensions / 2 values), or null when the
    /// file has none. Each pair's rotation angle is divided by its factor.
    /// </summary>
    public float[]? RopeFrequencyFactors { get; init; }

    /// <summary>Bytes of weights held in repacked layouts, in memory or mapped from the repack cache (0 when nothing was repacked).</summary>
    public long RepackedBytes { get; private init; }

    /// <summary>What became of the repack cache at load.</summary>
    public RepackCacheState RepackCacheState { get; private set; }

    /// <summary>The repack cache's path and what happened to it at load, for the user; null when none was asked for.</summary>
    public string? RepackCacheMessage { get; private set; }

    /// <summary>The weights of <paramref name="file"/>, all pointing into its mapping.</summary>
    public static LlamaWeights FromGguf(GgufFile file, LlamaConfig c) => FromGguf(file, c, repackThreads: 0);

    /// <summary>
    /// The weights of <paramref name="file"/>; with <paramref name="repackThreads"/> ≥ 1 the matrices
    /// <see cref="WeightRepacker.CanRepack"/> accepts are repacked on that many threads, or mapped from a
    /// <see cref="RepackCache"/> file in <paramref name="repackCacheDirectory"/> when one was made from this file (and
    /// written there when not).
    /// </summary>
    public static LlamaWeights FromGguf(GgufFile file, LlamaConfig c, int repackThreads, string? repackCacheDirectory = null)
    {
        if (file.Tensors.Count == 0)
            throw new ModelLoadException("the file has no tensors: it is a vocabulary-only GGUF, which can tokenize but not run");
        WeightRepacker? repacker = null;
        try
        {
            if (repackThreads >= 1) repacker = new WeightRepacker(file, repackThreads, repackCacheDirectory);
            var weights = Read(file, c, repacker);
            if (repacker is not null)
            {
                repacker.Finish();
                weights.RepackCacheState = repacker.CacheState;
                weights.RepackCacheMessage = repacker.CacheMessage;
            }
            return weights;
        }
        catch
        {
            repacker?.Dispose();
            throw;
        }
    }

    /// <summary>Frees the repacked copies; matrices of this object must not be used afterwards.</summary>
    public void Dispose()
    {
        _repacked?.Dispose();
        _repacked = null;
    }

    private static LlamaWeights Read(GgufFile file, LlamaConfig c, WeightRepacker? repacker)
    {
        int embd = c.EmbeddingLength;
        var blocks = new LlamaBlockWeights[c.BlockCount];
        for (int i = 0; i < c.BlockCount; i++)
        {
            string p = $"blk.{i}.";
            blocks[i] = new LlamaBlockWeights
            {
                AttentionNorm = Vector(file, p + "attn_norm.weight", embd, repacker),
                Query = Matrix(file, p + "attn_q.weight", embd, c.HeadCount * c.HeadSize, repacker),
                Key = Matrix(file, p + "attn_k.weight", embd, c.KvDimension, repacker),
                Value = Matrix(file, p + "attn_v.weight", embd, c.KvDimension, repacker),
                AttentionOutput = Matrix(file, p + "attn_output.weight", c.HeadCount * c.HeadSize, embd, repacker),
                FeedForwardNorm = Vector(file, p + "ffn_norm.weight", embd, repacker),
                Gate = Matrix(file, p + "ffn_gate.weight", embd, c.FeedForwardLength, repacker),
                Up = Matrix(file, p + "ffn_up.weight", embd, c.FeedForwardLength, repacker),
                Down = Matrix(file, p + "ffn_down.weight", c.FeedForwardLength, embd, repacker),
            };
        }
        var embedding = Matrix(file, "token_embd.weight", embd, c.VocabularySize, repacker: null);
        bool tied = !file.TryGetTensor("output.weight", out _);
        // A tied output projection reads every embedding row per token: it gets a repacked copy of its own, while
        // lookups keep reading single rows of the mapping (only the rows of tokens seen are ever paged in).
        var output = tied
            ? repacker?.Repack(Find(file, "token_embd.weight"), embedding) ?? embedding
            : Matrix(file, "output.weight", embd, c.VocabularySize, repacker);
        return new LlamaWeights
        {
            TokenEmbedding = embedding,
            Blocks = blocks,
            OutputNorm = Vector(file, "output_norm.weight", embd, repacker),
            Output = output,
            OutputIsTied = tied,
            RopeFrequencyFactors = file.TryGetTensor("rope_freqs.weight", out _)
                ? RopeFactors(file, c.RopeDimensionCount / 2, repacker)
                : null,
            _repacked = repacker,
            RepackedBytes = repacker?.RepackedBytes ?? 0,
        };
    }

    private static float[] RopeFactors(GgufFile file, int length, WeightRepacker? reader)
    {
        float[] f = Vector(file, "rope_freqs.weight", length, reader);
        foreach (float v in f)
            if (!(v > 0) || !float.IsFinite(v))
                throw new ModelLoadException($"tensor 'rope_freqs.weight' holds {v}; RoPE frequency factors must be positive and finite");
        return f;
    }

    private static GgufTensorInfo Find(GgufFile file, string name) =>
        file.TryGetTensor(name, out var t) ? t : throw new ModelLoadException($"tensor '{name}' is missing from the model file");

    private static unsafe WeightMatrix Matrix(GgufFile file, string name, int cols, int rows, WeightRepacker? repacker)
    {
        var t = Find(file, name);
        if (t.Dimensions.Length != 2 || t.Dimensions[0] != cols || t.Dimensions[1] != rows)
            throw new ModelLoadException($"tensor '{name}' has shape [{string.Join(", ", t.Dimensions)}], expected [{cols}, {rows}]");
        if (!GgmlTypeInfo.CanCompute(t.Type))
            throw new ModelLoadException($"tensor '{name}' has type {GgmlTypeInfo.Name(t.Type)}, which Cria cannot run yet");
        var m = new WeightMatrix(t.Type, file.GetTensorData(t), rows, cols);
        return repacker is null ? m : repacker.Repack(t, m);
    }

    /// <summary>
    /// A small F32/F16 vector, read through the mapping, or with <paramref name="reader"/> (when repacking) by a
    /// positional read: the page cache maps a file in large folios, so touching a norm vector through the mapping
    /// would also map megabytes of the repacked tensors around it into the process.
    /// </summary>
    private static unsafe float[] Vector(GgufFile file, string name, int length, WeightRepacker? reader)
    {
        var t = Find(file, name);
        if (t.ElementCount != length || t.Dimensions[0] != length)
            throw new ModelLoadException($"tensor '{name}' has shape [{string.Join(", ", t.Dimensions)}], expected [{length}]");
        if (!GgmlTypeInfo.CanCompute(t.Type))
            throw new ModelLoadException($"tensor '{name}' has type {GgmlTypeInfo.Name(t.Type)}, which Cria cannot run yet");
        var result = new float[length];
        if (reader is null)
        {
            MatMul.GetRow(new WeightMatrix(t.Type, file.GetTensorData(t), 1, length), 0, result);
            return result;
        }
        byte[] bytes = reader.ReadTensor(t);
        fixed (byte* b = bytes)
            MatMul.GetRow(new WeightMatrix(t.Type, b, 1, length), 0, result);
        return result;
    }
}
