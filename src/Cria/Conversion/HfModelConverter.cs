using System.Text.Json;
using Cria.Gguf;
using Cria.Numerics;
using Cria.Numerics.Formats;

namespace Cria.Conversion;

/// <summary>
/// Converts a Hugging Face Llama folder (<c>config.json</c> with <c>LlamaForCausalLM</c>, <c>model.safetensors</c> or
/// sharded <c>model-0000X-of-0000N.safetensors</c> with <c>model.safetensors.index.json</c>, a SentencePiece
/// <c>tokenizer.model</c> (Llama 1/2, Code Llama) or a byte-level BPE <c>tokenizer.json</c> (Llama 3), plus
/// <c>tokenizer_config.json</c>, <c>added_tokens.json</c> and <c>generation_config.json</c> when present) to GGUF, laid
/// out as llama.cpp's <c>convert_hf_to_gguf.py</c> (LlamaModel) writes it.
/// </summary>
/// <remarks>
/// <para>Metadata: <c>general.architecture</c> "llama", <c>general.name</c> (the folder name),
/// <c>llama.block_count</c>, <c>context_length</c> (max_position_embeddings), <c>embedding_length</c>,
/// <c>feed_forward_length</c>, <c>attention.head_count</c>, <c>attention.head_count_kv</c>, <c>rope.freq_base</c>
/// (rope_theta), <c>attention.layer_norm_rms_epsilon</c>, <c>general.file_type</c>, <c>llama.vocab_size</c>,
/// <c>rope.dimension_count</c>, for linear rope_scaling <c>rope.scaling.type</c>/<c>rope.scaling.factor</c>, the
/// <c>general.sampling.*</c> settings of generation_config.json (<see cref="HfGenerationConfig"/>), the tokenizer and
/// <c>general.quantization_version</c> 2.</para>
/// <para>Tokenizer, in llama.cpp's order of preference: <c>tokenizer.model</c> when it is a SentencePiece model
/// (<see cref="SentencePieceVocabConverter"/>; a tiktoken file of that name, as Llama 3 ships, is passed over), else
/// <c>tokenizer.json</c> (<see cref="HfTokenizerConverter"/>, padded with "[PAD{id}]" UNUSED tokens up to
/// vocab_size); or the file given as <c>tokenizerPath</c>. Special ids the tokenizer files leave open come from
/// config.json's <c>{type}_token_id</c> integers (gguf-py's SpecialVocab), then generation_config.json. As in
/// LlamaModel.set_vocab, a vocab_size of 32016 (Code Llama) sets the EOT id to 32010 (llama.cpp finds Code Llama's
/// &lt;PRE&gt; &lt;SUF&gt; &lt;MID&gt; by their text), and tokenizer_config.json's <c>add_prefix_space</c> becomes
/// <c>tokenizer.ggml.add_space_prefix</c>.</para>
/// <para>Tensors: <c>model.embed_tokens</c> → <c>token_embd</c>, <c>model.layers.N.self_attn.{q,k,v,o}_proj</c> →
/// <c>blk.N.attn_{q,k,v,output}</c>, <c>mlp.{gate,up,down}_proj</c> → <c>ffn_{gate,up,down}</c>,
/// <c>input_layernorm</c> → <c>attn_norm</c>, <c>post_attention_layernorm</c> → <c>ffn_norm</c>, <c>model.norm</c>
/// → <c>output_norm</c>, <c>lm_head</c> → <c>output</c> (dropped when tie_word_embeddings). Q and K rows are
/// permuted from Hugging Face's rotate-half layout to the adjacent-pair layout (llama.cpp's <c>permute</c>:
/// reshape(n_head, 2, rows/n_head/2, cols) → swapaxes(1, 2) → reshape, with n_kv_head for K). For
/// <c>rope_scaling.rope_type</c> "llama3" the <c>rope_freqs.weight</c> factors are generated as
/// <c>LlamaModel.generate_extra_tensors</c> does (in float32).</para>
/// <para>Types: matrices in the requested type (F32, F16, BF16, Q8_0; a Q8_0 matrix whose rows are not a multiple
/// of 32 falls back to F16), norms and <c>rope_freqs</c> F32. Tensors are streamed from the memory-mapped
/// safetensors into the output; the output is written to a temporary file and renamed, so a failure leaves
/// nothing behind.</para>
/// <para>Differences from the Python converter: missing <c>rms_norm_eps</c> / <c>rope_theta</c> are written with
/// Hugging Face's Llama defaults (1e-6, 10000) instead of being left out; the llama3 factors take
/// original_max_position_embeddings from the top level of config.json like the Python script, falling back to
/// rope_scaling's value (which Hugging Face uses) and then to 8192; generation_config.json's ids fill in what
/// tokenizer_config.json and config.json leave open (the Python script reads only its sampling settings); only
/// safetensors weights (no pytorch_model.bin) are supported, and a tokenizer.json that is SentencePiece-style (Llama 2
/// without its tokenizer.model, which the Python script reads through transformers) is not.</para>
/// </remarks>
public static class HfModelConverter
{
    /// <summary>The hyper-parameters read from config.json.</summary>
    public sealed record HfLlamaConfig
    {
        public required int HiddenSize { get; init; }
        public required int IntermediateSize { get; init; }
        public required int Layers { get; init; }
        public required int Heads { get; init; }
        public required int KvHeads { get; init; }
        public required int VocabSize { get; init; }
        public int? MaxPositionEmbeddings { get; init; }
        public double RopeTheta { get; init; } = 10000;
        public double RmsNormEps { get; init; } = 1e-6;
        public bool TieWordEmbeddings { get; init; }
        /// <summary>"linear", "llama3" or null.</summary>
        public string? RopeScalingType { get; init; }
        public double RopeScalingFactor { get; init; } = 1;
        public double LowFreqFactor { get; init; } = 1;
        public double HighFreqFactor { get; init; } = 4;
        public double OriginalMaxPositionEmbeddings { get; init; } = 8192;
        public int HeadSize => HiddenSize / Heads;
    }

    /// <summary>Converts the Hugging Face model folder <paramref name="modelDirectory"/> to the GGUF file <paramref name="output"/>.</summary>
    /// <param name="outputType">F32, F16, BF16 or Q8_0 for the matrices.</param>
    /// <param name="tokenizerPath">a tokenizer.model (SentencePiece) or tokenizer.json to use instead of the folder's, or null</param>
    /// <exception cref="InvalidDataException">a file is missing, malformed or inconsistent with config.json, or the model is not supported</exception>
    /// <exception cref="SentencePieceModelException">the tokenizer.model is not a well-formed SentencePiece model</exception>
    public static void Convert(string modelDirectory, string output, GgmlType outputType = GgmlType.F32, IProgress<string>? progress = null,
        string? tokenizerPath = null)
    {
        ArgumentNullException.ThrowIfNull(modelDirectory);
        ArgumentNullException.ThrowIfNull(output);
        if (outputType is not (GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 or GgmlType.Q8_0))
            throw new ArgumentException($"output type {GgmlTypeInfo.Name(outputType)} is not supported (f32, f16, bf16, q8_0)", nameof(outputType));
        if (!Directory.Exists(modelDirectory))
            throw new DirectoryNotFoundException($"model folder not found: {modelDirectory}");

        string configPath = Path.Combine(modelDirectory, "config.json");
        var cfg = ReadConfig(configPath);
        var tokenizer = FindTokenizer(modelDirectory, tokenizerPath, progress);
        var generation = HfGenerationConfig.Read(Path.Combine(modelDirectory, "generation_config.json"), m => progress?.Report("warning: " + m));
        HfTokenIds ids;
        using (var configDoc = ParseJson(configPath))
            ids = new HfTokenIds(HfTokenIds.FromConfigJson(configDoc.RootElement), generation.TokenIds);

        var shards = OpenWeights(modelDirectory);
        try
        {
            var w = new GgufWriter();
            WriteMetadata(w, cfg, Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(modelDirectory))), outputType);
            foreach (var (key, value) in generation.Sampling) w.Set(key, value);
            AddTokenizer(w, modelDirectory, tokenizer, ids, cfg.VocabSize);
            w.Set("general.quantization_version", 2u);
            AddTensors(w, cfg, shards, outputType, progress);
            progress?.Report("writing");
            w.Write(output);
        }
        finally
        {
            foreach (var s in shards.Files) s.Dispose();
        }
    }

    // ---- config.json ----

    /// <summary>Reads and checks config.json.</summary>
    public static HfLlamaConfig ReadConfig(string configPath)
    {
        if (!File.Exists(configPath))
            throw new InvalidDataException($"{Path.GetDirectoryName(configPath)} has no config.json: it is not a Hugging Face model folder");
        using var doc = ParseJson(configPath);
        var root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object) throw new InvalidDataException("config.json must be a JSON object");

        string[] archs = root.TryGetProperty("architectures", out var a) && a.ValueKind == JsonValueKind.Array
            ? a.EnumerateArray().Where(e => e.ValueKind == JsonValueKind.String).Select(e => e.GetString()!).ToArray()
            : Array.Empty<string>();
        if (archs.Length == 0)
            throw new InvalidDataException("config.json has no \"architectures\" list; cannot tell which model this is");
        if (!archs.Contains("LlamaForCausalLM"))
            throw new InvalidDataException($"unsupported architecture {string.Join(", ", archs)}: Cria converts LlamaForCausalLM models only");

        int Int(string key, int? fallback = null)
        {
            if (!root.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null)
                return fallback ?? throw new InvalidDataException($"config.json has no \"{key}\"");
            if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out int i) || i <= 0)
                throw new InvalidDataException($"config.json: \"{key}\" = {v.GetRawText()} is not a positive integer");
            return i;
        }
        double Num(JsonElement obj, string key, double fallback, string where = "config.json")
        {
            if (!obj.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) return fallback;
            if (v.ValueKind != JsonValueKind.Number) throw new InvalidDataException($"{where}: \"{key}\" = {v.GetRawText()} is not a number");
            return v.GetDouble();
        }

        int hidden = Int("hidden_size"), heads = Int("num_attention_heads");
        int kvHeads = Int("num_key_value_heads", heads);
        if (hidden % heads != 0) throw new InvalidDataException($"config.json: hidden_size {hidden} is not a multiple of num_attention_heads {heads}");
        if (heads % kvHeads != 0) throw new InvalidDataException($"config.json: num_attention_heads {heads} is not a multiple of num_key_value_heads {kvHeads}");
        int headSize = hidden / heads;
        if (headSize % 2 != 0) throw new InvalidDataException($"config.json: the head size {headSize} must be even for RoPE");
        int headDim = Int("head_dim", headSize);
        if (headDim != headSize)
            throw new InvalidDataException($"config.json: head_dim {headDim} differs from hidden_size / num_attention_heads = {headSize}, which Cria does not support");
        int? ctx = root.TryGetProperty("max_position_embeddings", out _) ? Int("max_position_embeddings") : null;

        double theta = Num(root, "rope_theta", 10000);
        if (!(theta > 1)) throw new InvalidDataException($"config.json: rope_theta {theta} must be greater than 1");
        double eps = Num(root, "rms_norm_eps", 1e-6);
        if (!(eps > 0)) throw new InvalidDataException($"config.json: rms_norm_eps {eps} must be positive");
        bool tied = root.TryGetProperty("tie_word_embeddings", out var t) && t.ValueKind == JsonValueKind.True;

        var c = new HfLlamaConfig
        {
            HiddenSize = hidden,
            IntermediateSize = Int("intermediate_size"),
            Layers = Int("num_hidden_layers"),
            Heads = heads,
            KvHeads = kvHeads,
            VocabSize = Int("vocab_size"),
            MaxPositionEmbeddings = ctx,
            RopeTheta = theta,
            RmsNormEps = eps,
            TieWordEmbeddings = tied,
        };

        if (root.TryGetProperty("rope_scaling", out var rs) && rs.ValueKind != JsonValueKind.Null)
        {
            if (rs.ValueKind != JsonValueKind.Object) throw new InvalidDataException("config.json: rope_scaling must be an object or null");
            string? type = (rs.TryGetProperty("rope_type", out var rt) || rs.TryGetProperty("type", out rt)) && rt.ValueKind == JsonValueKind.String
                ? rt.GetString()!.ToLowerInvariant() : null;
            const string where = "config.json rope_scaling";
            switch (type)
            {
                case null or "default":
                    break;
                case "linear":
                {
                    double f = Num(rs, "factor", 1, where);
                    if (!(f > 0)) throw new InvalidDataException($"{where}: factor {f} must be positive");
                    c = c with { RopeScalingType = "linear", RopeScalingFactor = f };
                    break;
                }
                case "llama3":
                {
                    double f = Num(rs, "factor", 8, where), lo = Num(rs, "low_freq_factor", 1, where), hi = Num(rs, "high_freq_factor", 4, where);
                    double orig = Num(root, "original_max_position_embeddings", Num(rs, "original_max_position_embeddings", 8192, where));
                    if (!(f > 0) || !(lo > 0) || !(hi > 0) || !(orig > 0))
                        throw new InvalidDataException($"{where}: factor {f}, low_freq_factor {lo}, high_freq_factor {hi} and original_max_position_embeddings {orig} must be positive");
                    if (lo == hi) throw new InvalidDataException($"{where}: low_freq_factor and high_freq_factor are both {lo}");
                    c = c with { RopeScalingType = "llama3", RopeScalingFactor = f, LowFreqFactor = lo, HighFreqFactor = hi, OriginalMaxPositionEmbeddings = orig };
                    break;
                }
                default:
                    throw new InvalidDataException($"{where}: type '{type}' is not supported (Cria supports linear and llama3 scaling)");
            }
        }
        return c;
    }

    private static JsonDocument ParseJson(string path)
    {
        try
        {
            return JsonDocument.Parse(File.ReadAllBytes(path), new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{Path.GetFileName(path)} is not valid JSON: {e.Message}", e);
        }
    }

    /// <summary>
    /// Llama 3.1's RoPE frequency factors, as convert_hf_to_gguf.py's LlamaModel.generate_extra_tensors computes them
    /// (float32 arithmetic, like its torch tensors): 1 for wavelengths below original/high_freq_factor, factor above
    /// original/low_freq_factor, and 1 / ((1 - smooth) / factor + smooth) in between.
    /// </summary>
    public static float[] Llama3RopeFactors(int headSize, double ropeTheta, double factor, double lowFreqFactor, double highFreqFactor, double originalContext)
    {
        var result = new float[headSize / 2];
        double lowWavelen = originalContext / lowFreqFactor, highWavelen = originalContext / highFreqFactor;
        for (int i = 0; i < result.Length; i++)
        {
            float exponent = (float)(2 * i) / headSize;
            float freq = 1.0f / MathF.Pow((float)ropeTheta, exponent);
            float wavelen = (float)(2 * Math.PI) / freq;
            if (wavelen < highWavelen) result[i] = 1;
            else if (wavelen > lowWavelen) result[i] = (float)factor;
            else
            {
                float smooth = ((float)originalContext / wavelen - (float)lowFreqFactor) / (float)(highFreqFactor - lowFreqFactor);
                result[i] = 1 / ((1 - smooth) / (float)factor + smooth);
            }
        }
        return result;
    }

    private static void WriteMetadata(GgufWriter w, HfLlamaConfig c, string name, GgmlType outputType)
    {
        w.Set("general.architecture", "llama");
        w.Set("general.name", string.IsNullOrEmpty(name) ? "llama" : name);
        w.Set("llama.block_count", (uint)c.Layers);
        if (c.MaxPositionEmbeddings is int ctx) w.Set("llama.context_length", (uint)ctx);
        w.Set("llama.embedding_length", (uint)c.HiddenSize);
        w.Set("llama.feed_forward_length", (uint)c.IntermediateSize);
        w.Set("llama.attention.head_count", (uint)c.Heads);
        w.Set("llama.attention.head_count_kv", (uint)c.KvHeads);
        w.Set("llama.rope.freq_base", (float)c.RopeTheta);
        w.Set("llama.attention.layer_norm_rms_epsilon", (float)c.RmsNormEps);
        w.Set("general.file_type", outputType switch
        {
            GgmlType.F32 => 0u, GgmlType.F16 => 1u, GgmlType.BF16 => 32u, _ => 7u,
        });
        w.Set("llama.vocab_size", (uint)c.VocabSize);
        w.Set("llama.rope.dimension_count", (uint)c.HeadSize);
        if (c.RopeScalingType == "linear")
        {
            w.Set("llama.rope.scaling.type", "linear");
            w.Set("llama.rope.scaling.factor", (float)c.RopeScalingFactor);
        }
    }

    private sealed record TokenizerSource(string Path, bool SentencePiece, SentencePieceModelFile? Model);

    /// <summary>
    /// The tokenizer to convert: <paramref name="explicitPath"/> (a .json file is a tokenizer.json, anything else a
    /// SentencePiece model), else the folder's tokenizer.model (llama.cpp tries SentencePiece first) unless it is a
    /// tiktoken file and a tokenizer.json is there, else the folder's tokenizer.json.
    /// </summary>
    private static TokenizerSource FindTokenizer(string dir, string? explicitPath, IProgress<string>? progress)
    {
        if (explicitPath != null)
        {
            if (!File.Exists(explicitPath)) throw new FileNotFoundException($"tokenizer not found: {explicitPath}", explicitPath);
            return explicitPath.EndsWith(".json", StringComparison.OrdinalIgnoreCase)
                ? new TokenizerSource(explicitPath, false, null)
                : new TokenizerSource(explicitPath, true, SentencePieceModelFile.Read(explicitPath));
        }
        string model = Path.Combine(dir, "tokenizer.model"), json = Path.Combine(dir, "tokenizer.json");
        if (File.Exists(model))
        {
            bool tiktoken;
            using (var fs = File.OpenRead(model))
            {
                var head = new byte[512];
                tiktoken = SentencePieceModelFile.LooksLikeTiktoken(head.AsSpan(0, fs.ReadAtLeast(head, head.Length, throwOnEndOfStream: false)));
            }
            if (!tiktoken) return new TokenizerSource(model, true, SentencePieceModelFile.Read(model));
            if (!File.Exists(json))
                throw new InvalidDataException($"{dir}: tokenizer.model is a tiktoken file (Llama 3's original tokenizer), not a SentencePiece model, and there is no tokenizer.json");
            progress?.Report("note: tokenizer.model is a tiktoken file, not SentencePiece; using tokenizer.json");
        }
        if (File.Exists(json)) return new TokenizerSource(json, false, null);
        throw new InvalidDataException($"{dir} has no tokenizer: neither tokenizer.model (SentencePiece) nor tokenizer.json");
    }

    private static void AddTokenizer(GgufWriter w, string dir, TokenizerSource source, HfTokenIds ids, int vocabSize)
    {
        string? Optional(string name) => File.Exists(Path.Combine(dir, name)) ? Path.Combine(dir, name) : null;
        string? tokenizerConfig = Optional("tokenizer_config.json");
        if (source.SentencePiece)
        {
            SentencePieceVocabConverter.Build(source.Model!, vocabSize, Optional("added_tokens.json"), tokenizerConfig,
                Optional("tokenizer.json"), ids).WriteTo(w);
        }
        else
        {
            AddBpeTokenizer(w, source.Path, tokenizerConfig, ids, vocabSize);
        }

        // LlamaModel.set_vocab: Code Llama's EOT, and tokenizer_config.json's add_prefix_space
        if (vocabSize == 32016) w.Set("tokenizer.ggml.eot_token_id", 32010u);
        if (tokenizerConfig != null)
        {
            using var doc = ParseJson(tokenizerConfig);
            if (doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("add_prefix_space", out var aps)
                && aps.ValueKind is JsonValueKind.True or JsonValueKind.False)
                w.Set("tokenizer.ggml.add_space_prefix", aps.GetBoolean());
        }
    }

    private static void AddBpeTokenizer(GgufWriter w, string tokenizerJson, string? tokenizerConfig, HfTokenIds ids, int vocabSize)
    {
        // Convert into a scratch file so the token list can be padded to the model's vocabulary size.
        var scratch = new GgufWriter();
        HfTokenizerConverter.AddTo(scratch, tokenizerJson, tokenizerConfig, ids);
        using var ms = new MemoryStream();
        scratch.WriteTo(ms);
        using var tok = GgufFile.FromBytes(ms.ToArray());
        var tokens = tok.GetArray("tokenizer.ggml.tokens") ?? throw new InvalidDataException("tokenizer.json produced no tokens");
        if (tokens.Count > vocabSize)
            throw new InvalidDataException($"tokenizer.json has {tokens.Count} tokens but config.json's vocab_size is {vocabSize}");
        foreach (var kv in tok.MetadataList)
        {
            if (kv.Key == "general.alignment") continue;
            var value = kv.Value;
            if (tokens.Count < vocabSize && kv.Key == "tokenizer.ggml.tokens" && value.Value is GgufArray { Items: string[] names })
            {
                var padded = new string[vocabSize];
                names.CopyTo(padded, 0);
                for (int i = names.Length; i < vocabSize; i++) padded[i] = $"[PAD{i}]";
                value = GgufValue.Of(GgufArray.Of(padded));
            }
            else if (tokens.Count < vocabSize && kv.Key == "tokenizer.ggml.token_type" && value.Value is GgufArray { Items: int[] types })
            {
                var padded = new int[vocabSize];
                types.CopyTo(padded, 0);
                for (int i = types.Length; i < vocabSize; i++) padded[i] = 5; // UNUSED
                value = GgufValue.Of(GgufArray.Of(padded));
            }
            w.Set(kv.Key, value);
        }
    }

    // ---- weights ----

    private sealed record Weights(List<SafetensorsFile> Files, Dictionary<string, (SafetensorsFile File, SafetensorsTensor Tensor)> Tensors);

    private static Weights OpenWeights(string dir)
    {
        var files = new List<SafetensorsFile>();
        try
        {
            string index = Path.Combine(dir, "model.safetensors.index.json");
            string single = Path.Combine(dir, "model.safetensors");
            Dictionary<string, string>? weightMap = null;
            List<string> paths;
            if (File.Exists(index))
            {
                using var doc = ParseJson(index);
                if (doc.RootElement.ValueKind != JsonValueKind.Object
                    || !doc.RootElement.TryGetProperty("weight_map", out var wm) || wm.ValueKind != JsonValueKind.Object)
                    throw new InvalidDataException("model.safetensors.index.json has no \"weight_map\" object");
                weightMap = new Dictionary<string, string>(StringComparer.Ordinal);
                foreach (var p in wm.EnumerateObject())
                {
                    if (p.Value.ValueKind != JsonValueKind.String) throw new InvalidDataException($"model.safetensors.index.json: the file of '{p.Name}' is not a string");
                    string f = p.Value.GetString()!;
                    if (f.Contains('/') || f.Contains('\\') || f == ".." )
                        throw new InvalidDataException($"model.safetensors.index.json: '{f}' is not a file name in the model folder");
                    weightMap[p.Name] = f;
                }
                paths = weightMap.Values.Distinct().Order(StringComparer.Ordinal).Select(f => Path.Combine(dir, f)).ToList();
                foreach (string p in paths)
                    if (!File.Exists(p)) throw new InvalidDataException($"model.safetensors.index.json names {Path.GetFileName(p)}, which is missing from {dir}");
            }
            else if (File.Exists(single)) paths = new List<string> { single };
            else
            {
                paths = Directory.GetFiles(dir, "model-*-of-*.safetensors").Order(StringComparer.Ordinal).ToList();
                if (paths.Count == 0)
                    throw new InvalidDataException(File.Exists(Path.Combine(dir, "pytorch_model.bin")) || Directory.GetFiles(dir, "pytorch_model-*.bin").Length > 0
                        ? $"{dir} holds PyTorch .bin weights; only safetensors weights are supported"
                        : $"{dir} has no weights (model.safetensors or model-0000X-of-0000N.safetensors)");
            }

            var tensors = new Dictionary<string, (SafetensorsFile, SafetensorsTensor)>(StringComparer.Ordinal);
            foreach (string p in paths)
            {
                var f = SafetensorsFile.Open(p);
                files.Add(f);
                foreach (var t in f.Tensors)
                    if (!tensors.TryAdd(t.Name, (f, t)))
                        throw new InvalidDataException($"tensor '{t.Name}' appears in both {Path.GetFileName(tensors[t.Name].Item1.Path)} and {Path.GetFileName(p)}");
            }
            if (weightMap != null)
                foreach (var (tensor, file) in weightMap)
                    if (!tensors.TryGetValue(tensor, out var found) || Path.GetFileName(found.Item1.Path) != file)
                        throw new InvalidDataException($"model.safetensors.index.json puts '{tensor}' in {file}, but it is not there");
            return new Weights(files, tensors);
        }
        catch
        {
            foreach (var f in files) f.Dispose();
            throw;
        }
    }

    private enum Permute { None, Query, Key }

    private sealed record Plan(string GgufName, string HfName, long[] Shape, bool IsVector, Permute Permute);

    private static void AddTensors(GgufWriter w, HfLlamaConfig c, Weights weights, GgmlType outputType, IProgress<string>? progress)
    {
        int d = c.HiddenSize, ff = c.IntermediateSize, hs = c.HeadSize, V = c.VocabSize;
        int qRows = c.Heads * hs, kvRows = c.KvHeads * hs;
        var plans = new List<Plan> { new("token_embd.weight", "model.embed_tokens.weight", new long[] { V, d }, false, Permute.None) };
        for (int l = 0; l < c.Layers; l++)
        {
            string hf = $"model.layers.{l}.", gg = $"blk.{l}.";
            plans.Add(new(gg + "attn_norm.weight", hf + "input_layernorm.weight", new long[] { d }, true, Permute.None));
            plans.Add(new(gg + "attn_q.weight", hf + "self_attn.q_proj.weight", new long[] { qRows, d }, false, Permute.Query));
            plans.Add(new(gg + "attn_k.weight", hf + "self_attn.k_proj.weight", new long[] { kvRows, d }, false, Permute.Key));
            plans.Add(new(gg + "attn_v.weight", hf + "self_attn.v_proj.weight", new long[] { kvRows, d }, false, Permute.None));
            plans.Add(new(gg + "attn_output.weight", hf + "self_attn.o_proj.weight", new long[] { d, qRows }, false, Permute.None));
            plans.Add(new(gg + "ffn_norm.weight", hf + "post_attention_layernorm.weight", new long[] { d }, true, Permute.None));
            plans.Add(new(gg + "ffn_gate.weight", hf + "mlp.gate_proj.weight", new long[] { ff, d }, false, Permute.None));
            plans.Add(new(gg + "ffn_up.weight", hf + "mlp.up_proj.weight", new long[] { ff, d }, false, Permute.None));
            plans.Add(new(gg + "ffn_down.weight", hf + "mlp.down_proj.weight", new long[] { d, ff }, false, Permute.None));
        }
        plans.Add(new("output_norm.weight", "model.norm.weight", new long[] { d }, true, Permute.None));
        bool hasHead = weights.Tensors.ContainsKey("lm_head.weight");
        if (hasHead && !c.TieWordEmbeddings)
            plans.Add(new("output.weight", "lm_head.weight", new long[] { V, d }, false, Permute.None));

        // Every tensor must be accounted for, and every expected one present with the right shape and a float dtype.
        var known = new HashSet<string>(plans.Select(p => p.HfName), StringComparer.Ordinal) { "lm_head.weight" };
        foreach (string name in weights.Tensors.Keys)
            if (!known.Contains(name) && !name.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal))
                throw new InvalidDataException($"unexpected tensor '{name}': it has no llama.cpp name (is config.json's num_hidden_layers {c.Layers} right?)");
        foreach (var p in plans)
        {
            if (!weights.Tensors.TryGetValue(p.HfName, out var src))
                throw new InvalidDataException($"tensor '{p.HfName}' is missing from the safetensors files");
            if (!src.Tensor.Shape.SequenceEqual(p.Shape))
                throw new InvalidDataException($"tensor '{p.HfName}' has shape [{string.Join(", ", src.Tensor.Shape)}], but config.json implies [{string.Join(", ", p.Shape)}]");
            if (!SafetensorsFile.IsFloat(src.Tensor.DType))
                throw new InvalidDataException($"tensor '{p.HfName}' has dtype {src.Tensor.DType}; only F32, F16, BF16 and F64 weights can be converted");
        }

        if (c.RopeScalingType == "llama3")
        {
            float[] factors = Llama3RopeFactors(hs, c.RopeTheta, c.RopeScalingFactor, c.LowFreqFactor, c.HighFreqFactor, c.OriginalMaxPositionEmbeddings);
            w.AddTensor("rope_freqs.weight", factors, new long[] { factors.Length });
        }

        int done = 0;
        foreach (var p in plans)
        {
            var (file, tensor) = weights.Tensors[p.HfName];
            int index = ++done;
            if (p.IsVector)
            {
                int n = (int)p.Shape[0];
                w.AddTensor(p.GgufName, GgmlType.F32, new long[] { n }, s =>
                {
                    progress?.Report($"[{index}/{plans.Count}] {p.GgufName}");
                    var buf = new float[n];
                    file.ReadFloats(tensor, 0, buf);
                    s.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(buf.AsSpan()));
                });
                continue;
            }
            int rows = (int)p.Shape[0], cols = (int)p.Shape[1];
            var type = outputType;
            if (cols % GgmlTypeInfo.BlockSize(type) != 0) type = GgmlType.F16;
            int heads = p.Permute == Permute.Query ? c.Heads : c.KvHeads;
            var permute = p.Permute;
            w.AddTensor(p.GgufName, type, new long[] { cols, rows }, s =>
            {
                progress?.Report($"[{index}/{plans.Count}] {p.GgufName}");
                WriteMatrix(s, file, tensor, rows, cols, type, permute == Permute.None ? 0 : heads);
            });
        }
    }

    /// <summary>The Hugging Face row that becomes GGUF row <paramref name="row"/> under llama.cpp's Q/K permutation.</summary>
    public static int PermutedSourceRow(int row, int rows, int heads)
    {
        int headSize = rows / heads, half = headSize / 2;
        int h = row / headSize, r = row % headSize;
        int i = r / 2, j = r % 2;
        return h * headSize + j * half + i;
    }

    private static void WriteMatrix(Stream s, SafetensorsFile file, SafetensorsTensor tensor, int rows, int cols, GgmlType type, int permuteHeads)
    {
        int chunkRows = Math.Max(1, Math.Min(rows, (1 << 20) / cols));
        var values = new float[chunkRows * cols];
        var bytes = new byte[GgmlTypeInfo.RowBytes(type, cols) * chunkRows];
        for (int r0 = 0; r0 < rows; r0 += chunkRows)
        {
            int n = Math.Min(chunkRows, rows - r0);
            for (int k = 0; k < n; k++)
            {
                int r = r0 + k;
                int src = permuteHeads > 0 ? PermutedSourceRow(r, rows, permuteHeads) : r;
                file.ReadFloats(tensor, (long)src * cols, values.AsSpan(k * cols, cols));
            }
            var v = new ReadOnlySpan<float>(values, 0, n * cols);
            int byteCount = (int)GgmlTypeInfo.RowBytes(type, cols) * n;
            var dst = bytes.AsSpan(0, byteCount);
            RowEncoder.Encode(type, v, dst);
            s.Write(dst);
        }
    }
}
