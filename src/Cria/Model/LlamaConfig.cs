using Cria.Gguf;

namespace Cria.Model;

/// <summary>
/// The hyper-parameters of a Llama-architecture model, read from the <c>llama.*</c> metadata keys
/// that llama.cpp's converters write.
/// </summary>
public sealed record LlamaConfig
{
    public required string Architecture { get; init; }
    /// <summary>Width of the residual stream (llama.embedding_length).</summary>
    public required int EmbeddingLength { get; init; }
    /// <summary>Hidden width of the SwiGLU feed-forward block (llama.feed_forward_length).</summary>
    public required int FeedForwardLength { get; init; }
    public required int BlockCount { get; init; }
    public required int HeadCount { get; init; }
    /// <summary>Key/value heads; fewer than <see cref="HeadCount"/> means grouped-query attention.</summary>
    public required int KvHeadCount { get; init; }
    public required float RmsEpsilon { get; init; }
    /// <summary>How many leading dimensions of each head RoPE rotates (usually the head size).</summary>
    public required int RopeDimensionCount { get; init; }
    public required float RopeFrequencyBase { get; init; }
    /// <summary>Linear RoPE scaling: positions are multiplied by this (1 / llama.rope.scaling.factor).</summary>
    public float RopeFrequencyScale { get; init; } = 1f;
    /// <summary>The context length the model was trained with (llama.context_length).</summary>
    public required int ContextLength { get; init; }
    public required int VocabularySize { get; init; }

    public int HeadSize => EmbeddingLength / HeadCount;
    public int KvDimension => HeadSize * KvHeadCount;
    public int GroupSize => HeadCount / KvHeadCount;

    public static LlamaConfig FromGguf(GgufFile file)
    {
        string arch = file.GetString("general.architecture")
            ?? throw new ModelLoadException("the file has no general.architecture key; it is not a model file (a vocabulary-only file?)");
        if (arch != "llama")
            throw new ModelLoadException($"unsupported architecture '{arch}' (Cria runs 'llama')");

        int Int(string key, int? fallback = null)
        {
            long? v = file.GetInt($"{arch}.{key}");
            if (v is null)
                return fallback ?? throw new ModelLoadException($"missing metadata key {arch}.{key}");
            if (v <= 0 || v > int.MaxValue)
                throw new ModelLoadException($"metadata {arch}.{key} = {v} is out of range");
            return (int)v.Value;
        }

        int embd = Int("embedding_length");
        int heads = Int("attention.head_count");
        int kvHeads = Int("attention.head_count_kv", heads);
        if (embd % heads != 0)
            throw new ModelLoadException($"embedding length {embd} is not a multiple of the head count {heads}");
        if (heads % kvHeads != 0)
            throw new ModelLoadException($"head count {heads} is not a multiple of the KV head count {kvHeads}");
        int headSize = embd / heads;
        int ropeDims = Int("rope.dimension_count", headSize);
        if (ropeDims > headSize || ropeDims % 2 != 0)
            throw new ModelLoadException($"RoPE dimension count {ropeDims} must be even and at most the head size {headSize}");

        float eps = (float)(file.GetFloat($"{arch}.attention.layer_norm_rms_epsilon") ?? 1e-5);
        if (!(eps > 0)) throw new ModelLoadException($"RMS epsilon {eps} must be positive");
        float theta = (float)(file.GetFloat($"{arch}.rope.freq_base") ?? 10000.0);
        if (!(theta > 1)) throw new ModelLoadException($"RoPE frequency base {theta} must be greater than 1");

        float freqScale = 1f;
        string? scalingType = file.GetString($"{arch}.rope.scaling.type");
        double? factor = file.GetFloat($"{arch}.rope.scaling.factor");
        if (factor is > 0 && factor != 1 && scalingType is null or "linear")
            freqScale = (float)(1.0 / factor.Value);
        else if (scalingType == "yarn")
            throw new ModelLoadException("RoPE scaling type 'yarn' (llama.rope.scaling.type) is not supported: Cria implements linear scaling and Llama 3.1's rope_freqs factors only");
        else if (scalingType is not (null or "none" or "linear"))
            throw new ModelLoadException($"RoPE scaling type '{scalingType}' is not supported yet");

        int vocab = file.GetArray("tokenizer.ggml.tokens")?.Count
            ?? Int("vocab_size");

        return new LlamaConfig
        {
            Architecture = arch,
            EmbeddingLength = embd,
            FeedForwardLength = Int("feed_forward_length"),
            BlockCount = Int("block_count"),
            HeadCount = heads,
            KvHeadCount = kvHeads,
            RmsEpsilon = eps,
            RopeDimensionCount = ropeDims,
            RopeFrequencyBase = theta,
            RopeFrequencyScale = freqScale,
            ContextLength = Int("context_length", 2048),
            VocabularySize = vocab,
        };
    }
}
