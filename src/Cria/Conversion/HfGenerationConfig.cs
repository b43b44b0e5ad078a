using System.Text.Json;
using Cria.Gguf;

namespace Cria.Conversion;

/// <summary>
/// What a Hugging Face folder's <c>generation_config.json</c> contributes to a converted GGUF file.
/// </summary>
/// <remarks>
/// <para>What llama.cpp does with this file (checked against <c>convert_hf_to_gguf.py</c> and gguf-py):</para>
/// <list type="bullet">
/// <item>gguf-py's <c>Metadata.load</c> copies recommended sampler settings into <c>general.sampling.*</c> keys:
/// <c>top_k</c> → <c>general.sampling.top_k</c> (int32), <c>top_p</c> / <c>min_p</c> / <c>temperature</c> →
/// <c>general.sampling.top_p</c> / <c>min_p</c> / <c>temp</c> (float32), and its own names <c>sequence</c> (string),
/// <c>xtc_probability</c>, <c>xtc_threshold</c>, <c>penalty_repeat</c>, <c>mirostat_tau</c>, <c>mirostat_eta</c>
/// (float32), <c>penalty_last_n</c>, <c>mirostat</c> (int32). Null values are skipped; a file that is not valid JSON
/// is ignored. (These keys are newer than the reference build c392e509; readers that do not know them ignore them, and
/// Cria's own samplers do not read them.) Cria does the same; a value of the wrong type is an error.</item>
/// <item>Special ids are <b>not</b> taken from it for Llama models: gguf-py's <c>SpecialVocab</c> reads
/// tokenizer_config.json (through tokenizer.json's added tokens) and config.json's <c>{type}_token_id</c>, and its
/// <c>_set_special_token</c> ignores anything that is not an int — so a list such as Llama 3.1's
/// <c>"eos_token_id": [128001, 128008, 128009]</c> sets nothing. The GGUF holds a single EOS; the other members of such
/// a list still end generation at run time because llama.cpp (and Cria's <c>Vocabulary</c>) recognise end-of-generation
/// tokens by their text (&lt;|eot_id|&gt;, &lt;|eom_id|&gt;, &lt;|end_of_text|&gt;, &lt;/s&gt;, ...). (Only a few other
/// architectures' converters read generation_config.json for ids, e.g. HunYuan takes a list's first entry as EOT.)</item>
/// </list>
/// <para>Cria's one addition: ids that tokenizer_config.json and config.json leave unset are taken from here —
/// <c>bos_token_id</c> and <c>eos_token_id</c> (for a list, its first entry) — so that a folder whose config.json lacks
/// them still gets its BOS/EOS instead of the tokenizer's built-in defaults. When tokenizer_config.json or config.json
/// names them (the usual case) the result is exactly llama.cpp's. (<c>pad_token_id</c> is not taken: Llama 2's
/// generation_config.json sets it to 0, the &lt;unk&gt; token, which llama.cpp never writes as the padding id.)</para>
/// </remarks>
internal sealed class HfGenerationConfig
{
    public static HfGenerationConfig Empty => new();

    /// <summary>bos / eos ids (for a list, its first entry).</summary>
    public Dictionary<string, long> TokenIds { get; } = new(StringComparer.Ordinal);

    /// <summary>The <c>general.sampling.*</c> keys to write, in gguf-py's order.</summary>
    public List<(string Key, GgufValue Value)> Sampling { get; } = [];

    private enum Kind { Int, Float, String }

    // gguf-py Metadata: generation_config.json key -> GGUF key and value type
    private static readonly (string Json, string Key, Kind Kind)[] SamplingKeys =
    [
        ("sequence", "general.sampling.sequence", Kind.String),
        ("top_k", "general.sampling.top_k", Kind.Int),
        ("top_p", "general.sampling.top_p", Kind.Float),
        ("min_p", "general.sampling.min_p", Kind.Float),
        ("xtc_probability", "general.sampling.xtc_probability", Kind.Float),
        ("xtc_threshold", "general.sampling.xtc_threshold", Kind.Float),
        ("temperature", "general.sampling.temp", Kind.Float),
        ("penalty_last_n", "general.sampling.penalty_last_n", Kind.Int),
        ("penalty_repeat", "general.sampling.penalty_repeat", Kind.Float),
        ("mirostat", "general.sampling.mirostat", Kind.Int),
        ("mirostat_tau", "general.sampling.mirostat_tau", Kind.Float),
        ("mirostat_eta", "general.sampling.mirostat_eta", Kind.Float),
    ];

    /// <summary>Reads <paramref name="path"/>; a missing file, or one that is not a JSON object, gives <see cref="Empty"/>.</summary>
    /// <param name="warn">told when the file is ignored because it is not valid JSON</param>
    /// <exception cref="InvalidDataException">a sampling value or a token id has the wrong type</exception>
    public static HfGenerationConfig Read(string path, Action<string>? warn = null)
    {
        if (!File.Exists(path)) return Empty;
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(File.ReadAllBytes(path), new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
        }
        catch (JsonException e)
        {
            warn?.Invoke($"{Path.GetFileName(path)} is not valid JSON and is ignored ({e.Message})");
            return Empty;
        }
        using (doc)
        {
            JsonElement root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                warn?.Invoke($"{Path.GetFileName(path)} is not a JSON object and is ignored");
                return Empty;
            }
            return FromJson(root, Path.GetFileName(path));
        }
    }

    internal static HfGenerationConfig FromJson(JsonElement root, string name)
    {
        var result = new HfGenerationConfig();
        foreach (var (json, key, kind) in SamplingKeys)
        {
            if (!root.TryGetProperty(json, out JsonElement v) || v.ValueKind == JsonValueKind.Null) continue;
            GgufValue value = kind switch
            {
                Kind.Int when v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i) => GgufValue.Of(i),
                Kind.Float when v.ValueKind == JsonValueKind.Number => GgufValue.Of((float)v.GetDouble()),
                Kind.String when v.ValueKind == JsonValueKind.String => GgufValue.Of(v.GetString()!),
                _ => throw new InvalidDataException(
                    $"{name}: \"{json}\" must be {(kind == Kind.Int ? "an integer" : kind == Kind.Float ? "a number" : "a string")}, not {v.GetRawText()}"),
            };
            result.Sampling.Add((key, value));
        }
        foreach (string type in (string[])["bos", "eos"])
        {
            if (!root.TryGetProperty(type + "_token_id", out JsonElement v) || v.ValueKind == JsonValueKind.Null) continue;
            JsonElement first = v;
            if (v.ValueKind == JsonValueKind.Array)
            {
                if (v.GetArrayLength() == 0) continue;
                first = v[0];
            }
            if (first.ValueKind != JsonValueKind.Number || !first.TryGetInt64(out long id) || id < 0)
                throw new InvalidDataException($"{name}: \"{type}_token_id\" must be a token id or a list of them, not {v.GetRawText()}");
            result.TokenIds[type] = id;
        }
        return result;
    }
}
