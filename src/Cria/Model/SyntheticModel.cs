using Cria.Gguf;
using Cria.Numerics;
using Cria.Numerics.Formats;
using Cria.Tokenizers;

namespace Cria.Model;

/// <summary>
/// Writes Llama-architecture GGUF files with random weights: any shape, any of the weight types Cria
/// computes with, with the metadata and tensor names llama.cpp's converters produce, so that
/// llama.cpp loads them too. Used to compare Cria's forward pass with llama.cpp's on shapes no
/// published model has (grouped-query attention, tied embeddings, every weight type) and to
/// benchmark without downloading anything.
/// </summary>
public static class SyntheticModel
{
    /// <summary>The shape and weight type of a synthetic model.</summary>
    public sealed record SyntheticModelSpec
    {
        /// <summary>Width of the residual stream (llama.embedding_length).</summary>
        public required int EmbeddingLength { get; init; }
        /// <summary>Hidden width of the feed-forward block (llama.feed_forward_length).</summary>
        public required int FeedForwardLength { get; init; }
        public required int BlockCount { get; init; }
        public required int HeadCount { get; init; }
        /// <summary>Key/value heads: equal to <see cref="HeadCount"/>, or a divisor of it for grouped-query attention.</summary>
        public required int KvHeadCount { get; init; }
        public int ContextLength { get; init; } = 2048;
        public float RopeFreqBase { get; init; } = 10000;
        /// <summary>Llama 3.1's RoPE frequency factors, written as <c>rope_freqs.weight</c> (head size / 2 values); null for none.</summary>
        public float[]? RopeFrequencyFactors { get; init; }
        public float RmsEpsilon { get; init; } = 1e-5f;
        /// <summary>When true the file has no output.weight: the output projection reuses token_embd.weight.</summary>
        public bool TiedEmbeddings { get; init; }
        /// <summary>Type of the matrices (F32, F16, BF16, Q8_0 or Q4_0); the norm vectors are always F32.</summary>
        public GgmlType Type { get; init; } = GgmlType.F32;
        /// <summary>Seed of the weight generator: the same spec always gives the same file.</summary>
        public ulong Seed { get; init; } = 1;
    }

    /// <summary>Standard deviation of the matrix weights (typical of trained Llama models).</summary>
    public const float MatrixStd = 0.02f;

    /// <summary>Standard deviation of the norm weights around 1.</summary>
    public const float NormStd = 0.05f;

    /// <summary>
    /// Writes the model to <paramref name="path"/> (atomically: a temporary file renamed into place).
    /// </summary>
    /// <param name="vocabularySource">a GGUF file whose <c>tokenizer.*</c> metadata is copied (its vocabulary
    /// size sets the embedding and output shapes); null for the built-in <see cref="ByteLevelVocabulary"/>.</param>
    /// <exception cref="ArgumentException">the spec is inconsistent, or the source has no vocabulary</exception>
    public static void Write(SyntheticModelSpec spec, string path, GgufFile? vocabularySource = null)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentException.ThrowIfNullOrEmpty(path);
        Validate(spec);

        int vocab = ByteLevelVocabulary.Count;
        if (vocabularySource is not null)
        {
            if (vocabularySource.GetArray("tokenizer.ggml.tokens") is not { Count: > 0 } tokens)
                throw new ArgumentException("the vocabulary source has no tokenizer.ggml.tokens array", nameof(vocabularySource));
            vocab = tokens.Count;
        }

        int embd = spec.EmbeddingLength, ff = spec.FeedForwardLength;
        int headSize = embd / spec.HeadCount, kvDim = headSize * spec.KvHeadCount;

        // Metadata in the order convert_hf_to_gguf.py writes it, the tokenizer keys last.
        var w = new GgufWriter();
        w.Set("general.architecture", "llama")
         .Set("general.type", "model")
         .Set("general.name", $"synthetic-llama-{embd}x{spec.BlockCount}-{GgmlTypeInfo.Name(spec.Type)}")
         .Set("llama.block_count", (uint)spec.BlockCount)
         .Set("llama.context_length", (uint)spec.ContextLength)
         .Set("llama.embedding_length", (uint)embd)
         .Set("llama.feed_forward_length", (uint)ff)
         .Set("llama.attention.head_count", (uint)spec.HeadCount)
         .Set("llama.attention.head_count_kv", (uint)spec.KvHeadCount)
         .Set("llama.rope.freq_base", spec.RopeFreqBase)
         .Set("llama.attention.layer_norm_rms_epsilon", spec.RmsEpsilon)
         .Set("general.file_type", FileType(spec.Type))
         .Set("llama.vocab_size", (uint)vocab)
         .Set("llama.rope.dimension_count", (uint)headSize);
        if (spec.Type is GgmlType.Q8_0 or GgmlType.Q4_0) w.Set("general.quantization_version", 2u);
        if (vocabularySource is null) ByteLevelVocabulary.WriteTo(w);
        else w.CopyMetadataFrom(vocabularySource, key => key.StartsWith("tokenizer.", StringComparison.Ordinal));

        // Each tensor draws from its own generator (seeded by the spec's seed and the tensor's
        // index) and is generated only when the writer streams it out, so memory stays at one
        // tensor however large the model.
        int index = 0;
        void AddMatrix(string name, int cols, int rows)
        {
            var rng = new NormalRandom(spec.Seed, index++);
            w.AddTensor(name, spec.Type, [cols, rows], s => s.Write(Matrix(rng, cols, rows, spec.Type)));
        }
        void AddNorm(string name)
        {
            var rng = new NormalRandom(spec.Seed, index++);
            w.AddTensor(name, GgmlType.F32, [embd], s => s.Write(Norm(rng, embd)));
        }

        AddMatrix("token_embd.weight", embd, vocab);
        for (int i = 0; i < spec.BlockCount; i++)
        {
            string p = $"blk.{i}.";
            AddNorm(p + "attn_norm.weight");
            AddMatrix(p + "attn_q.weight", embd, embd);
            AddMatrix(p + "attn_k.weight", embd, kvDim);
            AddMatrix(p + "attn_v.weight", embd, kvDim);
            AddMatrix(p + "attn_output.weight", embd, embd);
            AddNorm(p + "ffn_norm.weight");
            AddMatrix(p + "ffn_gate.weight", embd, ff);
            AddMatrix(p + "ffn_up.weight", embd, ff);
            AddMatrix(p + "ffn_down.weight", ff, embd);
        }
        AddNorm("output_norm.weight");
        if (spec.RopeFrequencyFactors is { } factors)
        {
            if (factors.Length != headSize / 2)
                throw new ArgumentException($"{factors.Length} RoPE frequency factors given; the head size {headSize} needs {headSize / 2}", nameof(spec));
            w.AddTensor("rope_freqs.weight", factors, new long[] { factors.Length });
        }
        if (!spec.TiedEmbeddings) AddMatrix("output.weight", embd, vocab);
        w.Write(path);
    }

    /// <summary>llama.cpp's <c>llama_ftype</c> for a file whose matrices are all of one type.</summary>
    public static uint FileType(GgmlType type) => type switch
    {
        GgmlType.F32 => 0,   // LLAMA_FTYPE_ALL_F32
        GgmlType.F16 => 1,   // LLAMA_FTYPE_MOSTLY_F16
        GgmlType.Q4_0 => 2,  // LLAMA_FTYPE_MOSTLY_Q4_0
        GgmlType.Q8_0 => 7,  // LLAMA_FTYPE_MOSTLY_Q8_0
        GgmlType.BF16 => 32, // LLAMA_FTYPE_MOSTLY_BF16
        _ => throw new ArgumentException($"synthetic models support F32, F16, BF16, Q8_0 and Q4_0 weights, not {GgmlTypeInfo.Name(type)}", nameof(type)),
    };

    private static void Validate(SyntheticModelSpec s)
    {
        void Positive(int v, string name)
        {
            if (v <= 0) throw new ArgumentException($"{name} must be positive, got {v}", "spec");
        }
        Positive(s.EmbeddingLength, nameof(s.EmbeddingLength));
        Positive(s.FeedForwardLength, nameof(s.FeedForwardLength));
        Positive(s.BlockCount, nameof(s.BlockCount));
        Positive(s.HeadCount, nameof(s.HeadCount));
        Positive(s.KvHeadCount, nameof(s.KvHeadCount));
        Positive(s.ContextLength, nameof(s.ContextLength));
        if (!(s.RopeFreqBase > 1) || float.IsInfinity(s.RopeFreqBase))
            throw new ArgumentException($"RopeFreqBase must be a finite number greater than 1, got {s.RopeFreqBase}", "spec");
        if (!(s.RmsEpsilon > 0) || float.IsInfinity(s.RmsEpsilon))
            throw new ArgumentException($"RmsEpsilon must be a finite positive number, got {s.RmsEpsilon}", "spec");
        if (s.EmbeddingLength % s.HeadCount != 0)
            throw new ArgumentException($"HeadCount {s.HeadCount} does not divide EmbeddingLength {s.EmbeddingLength}", "spec");
        if (s.HeadCount % s.KvHeadCount != 0)
            throw new ArgumentException($"KvHeadCount {s.KvHeadCount} does not divide HeadCount {s.HeadCount}", "spec");
        if (s.EmbeddingLength / s.HeadCount % 2 != 0)
            throw new ArgumentException($"the head size {s.EmbeddingLength / s.HeadCount} must be even (RoPE rotates pairs)", "spec");
        _ = FileType(s.Type); // rejects unsupported types
        int block = GgmlTypeInfo.BlockSize(s.Type);
        if (s.EmbeddingLength % block != 0)
            throw new ArgumentException($"EmbeddingLength {s.EmbeddingLength} is not a multiple of the {GgmlTypeInfo.Name(s.Type)} block size {block}", "spec");
        if (s.FeedForwardLength % block != 0)
            throw new ArgumentException($"FeedForwardLength {s.FeedForwardLength} is not a multiple of the {GgmlTypeInfo.Name(s.Type)} block size {block}", "spec");
    }

    /// <summary>rows × cols weights, N(0, MatrixStd²), in the requested type (cols is the row length).</summary>
    private static byte[] Matrix(NormalRandom rng, int cols, int rows, GgmlType type)
    {
        var values = new float[(long)cols * rows];
        for (long i = 0; i < values.LongLength; i++) values[i] = MatrixStd * rng.Next();
        return RowEncoder.Encode(type, values, cols);
    }

    /// <summary>A norm weight vector: 1 + N(0, NormStd²), always F32 (as llama.cpp's converters store norms).</summary>
    private static byte[] Norm(NormalRandom rng, int n)
    {
        var v = new float[n];
        for (int i = 0; i < n; i++) v[i] = 1 + NormStd * rng.Next();
        var bytes = new byte[n * sizeof(float)];
        Buffer.BlockCopy(v, 0, bytes, 0, bytes.Length);
        return bytes;
    }

    /// <summary>
    /// Standard normal numbers from SplitMix64 through the Box-Muller transform, one independent
    /// stream per (seed, tensor index). Kept private and self-contained so the files a given seed
    /// produces never change.
    /// </summary>
    private sealed class NormalRandom(ulong seed, int stream)
    {
        private ulong _state = Mix(seed + 0x9E3779B97F4A7C15UL * (ulong)(stream + 1));
        private double _spare;
        private bool _hasSpare;

        private ulong NextUInt64() => Mix(_state += 0x9E3779B97F4A7C15UL);

        // SplitMix64's output function.
        private static ulong Mix(ulong z)
        {
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return z ^ (z >> 31);
        }

        /// <summary>Uniform in (0, 1]: never 0, so the logarithm is finite.</summary>
        private double NextUnit() => ((NextUInt64() >> 11) + 1) * (1.0 / (1UL << 53));

        public float Next()
        {
            if (_hasSpare)
            {
                _hasSpare = false;
                return (float)_spare;
            }
            double r = Math.Sqrt(-2.0 * Math.Log(NextUnit()));
            double theta = 2.0 * Math.PI * NextUnit();
            _spare = r * Math.Sin(theta);
            _hasSpare = true;
            return (float)(r * Math.Cos(theta));
        }
    }
}
