using System.Text;
using System.Text.Json;
using Cria.Gguf;

namespace Cria.Conversion;

/// <summary>
/// Special token ids a Hugging Face folder states outside its tokenizer files: <c>config.json</c>'s
/// <c>{type}_token_id</c> integers and <c>generation_config.json</c>'s <c>bos_token_id</c> / <c>eos_token_id</c> /
/// <c>pad_token_id</c>.
/// </summary>
internal sealed class HfTokenIds
{
    public static readonly HfTokenIds None = new(new Dictionary<string, long>(), new Dictionary<string, long>());

    public HfTokenIds(IReadOnlyDictionary<string, long> config, IReadOnlyDictionary<string, long> generation)
    {
        Config = config;
        Generation = generation;
    }

    /// <summary>config.json's <c>{type}_token_id</c> integers by type ("bos", "eos", "pad", ...); lists are left out, as gguf-py does.</summary>
    public IReadOnlyDictionary<string, long> Config { get; }

    /// <summary>generation_config.json's ids by type; for a list, its first entry.</summary>
    public IReadOnlyDictionary<string, long> Generation { get; }

    /// <summary>The <c>{type}_token_id</c> integers of a config.json root (also inside <c>text_config</c>, as gguf-py looks there too).</summary>
    public static Dictionary<string, long> FromConfigJson(JsonElement root)
    {
        var result = new Dictionary<string, long>(StringComparer.Ordinal);
        void Scan(JsonElement obj)
        {
            foreach (JsonProperty p in obj.EnumerateObject())
            {
                if (!p.Name.EndsWith("_token_id", StringComparison.Ordinal) || p.Name.Length == "_token_id".Length) continue;
                // gguf-py's _set_special_token ignores anything that is not an int (a list such as Llama 3.1's
                // eos_token_id [128001, 128008, 128009], null, a string).
                if (p.Value.ValueKind == JsonValueKind.Number && p.Value.TryGetInt64(out long id))
                    result.TryAdd(p.Name[..^"_token_id".Length], id);
            }
        }
        if (root.ValueKind != JsonValueKind.Object) return result;
        Scan(root);
        if (root.TryGetProperty("text_config", out JsonElement text) && text.ValueKind == JsonValueKind.Object) Scan(text);
        return result;
    }
}

/// <summary>
/// gguf-py's <c>SpecialVocab</c> (llama.cpp at c392e509): which special ids, <c>add_*_token</c> flags and chat
/// template(s) a Hugging Face folder's tokenizer.json (when there is one), tokenizer_config.json and config.json give.
/// </summary>
/// <remarks>
/// Order of the id sources, the first one naming a type winning: tokenizer_config.json's <c>{type}_token</c> text
/// looked up among tokenizer.json's added tokens; config.json's <c>{type}_token_id</c> integers; then whatever the
/// caller adds with <see cref="Set"/> (Cria's fallbacks). Ids outside the vocabulary are skipped, as gguf-py does;
/// negative ids are skipped too (gguf-py stops with an error; Hugging Face uses -1 for "none").
/// </remarks>
internal sealed class HfSpecialVocab
{
    private static readonly string[] DefaultTypes = ["bos", "eos", "unk", "sep", "pad", "cls", "mask"];

    private readonly int? _nVocab;
    private readonly List<(string Type, int Id)> _ids = [];
    private readonly Dictionary<string, bool> _add = new(StringComparer.Ordinal);

    private HfSpecialVocab(int? nVocab) => _nVocab = nVocab;

    /// <summary>Special ids in the order they were found.</summary>
    public IReadOnlyList<(string Type, int Id)> Ids => _ids;

    public string? ChatTemplate { get; private set; }
    public List<(string Name, string Template)>? NamedChatTemplates { get; private set; }

    /// <summary>Without tokenizer_config.json: the BOS / EOS texts of tokenizer.json's TemplateProcessing post-processor.</summary>
    public string? UnconfiguredBos { get; private set; }
    public string? UnconfiguredEos { get; private set; }

    public bool Has(string type) => _ids.Exists(x => x.Type == type);

    public bool HasAdd(string type) => _add.ContainsKey(type);

    /// <summary>gguf-py's <c>_set_special_token</c>: the first id of a type stays; ids outside [0, n_vocab) are skipped.</summary>
    public void Set(string type, long? id)
    {
        if (id is not long v || v < 0 || v > int.MaxValue) return;
        if (_nVocab is int n && v >= n) return;
        if (!Has(type)) _ids.Add((type, (int)v));
    }

    public void SetAdd(string type, bool value) => _add[type] = value;

    /// <param name="tokenizerJson">tokenizer.json's root, or null when the folder has none</param>
    /// <param name="added">tokenizer.json's added tokens (id, content), in file order</param>
    /// <param name="config">tokenizer_config.json's root, or null</param>
    /// <param name="nVocab">the vocabulary size ids must stay below, or null for no check</param>
    /// <exception cref="InvalidDataException">tokenizer_config.json's chat_template has the wrong type</exception>
    public static HfSpecialVocab Load(JsonElement? tokenizerJson, IReadOnlyList<(int Id, string Content)> added, JsonElement? config,
        string configName, HfTokenIds ids, int? nVocab)
    {
        var result = new HfSpecialVocab(nVocab);
        var types = new List<string>(DefaultTypes);
        var overrides = new Dictionary<string, string>(StringComparer.Ordinal); // type -> token text decided by the post-processor

        string? bos = TokenContent(config, "bos_token"), cls = TokenContent(config, "cls_token");
        string? eos = TokenContent(config, "eos_token"), sep = TokenContent(config, "sep_token");
        if (tokenizerJson is { } root)
        {
            if (bos is null && cls is not null && config is not null) overrides["bos"] = bos = cls;
            if (eos is null && sep is not null && config is not null) overrides["eos"] = eos = sep;
            if (root.TryGetProperty("post_processor", out JsonElement post) && post.ValueKind == JsonValueKind.Object)
                ReadPostProcessor(post, config is not null, types, overrides, ref bos, ref eos, cls, result);
        }

        int? FindAdded(string? content)
        {
            if (content is null) return null;
            foreach (var (id, text) in added)
                if (text == content) return id;
            return null;
        }

        if (config is { } cfg)
        {
            if (cfg.TryGetProperty("chat_template", out JsonElement ct))
            {
                if (ct.ValueKind == JsonValueKind.String) result.ChatTemplate = ct.GetString();
                else if (ct.ValueKind == JsonValueKind.Array) result.ReadNamedTemplates(ct);
                else if (ct.ValueKind != JsonValueKind.Null)
                    throw new InvalidDataException($"{configName}: chat_template must be a string or a list of {{name, template}}");
            }
            foreach (string type in types)
            {
                if (cfg.TryGetProperty($"add_{type}_token", out JsonElement ae) && ae.ValueKind is JsonValueKind.True or JsonValueKind.False)
                    result._add[type] = ae.GetBoolean();
                string? content = overrides.TryGetValue(type, out string? o) ? o : TokenContent(cfg, $"{type}_token");
                result.Set(type, FindAdded(content));
            }
        }
        else
        {
            result.UnconfiguredBos = bos;
            result.UnconfiguredEos = eos;
        }

        foreach (string type in types)
            if (ids.Config.TryGetValue(type, out long id)) result.Set(type, id);
        return result;
    }

    // Crude reading of the post-processor (gguf-py does the same): RobertaProcessing adds BOS/EOS/SEP; a
    // TemplateProcessing "single" template starting/ending with a special token adds BOS/EOS, and an ending token that
    // differs from tokenizer_config's eos_token becomes the EOS (the old one moving to EOT, then EOM).
    private static void ReadPostProcessor(JsonElement post, bool hasConfig, List<string> types, Dictionary<string, string> overrides,
        ref string? bos, ref string? eos, string? cls, HfSpecialVocab result)
    {
        var processors = post.TryGetProperty("processors", out JsonElement list) && list.ValueKind == JsonValueKind.Array
            ? list.EnumerateArray().ToList() : [post];
        foreach (JsonElement proc in processors)
        {
            if (proc.ValueKind != JsonValueKind.Object) continue;
            string? type = proc.TryGetProperty("type", out JsonElement t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
            if (type == "RobertaProcessing")
            {
                result._add["bos"] = true; result._add["eos"] = true; result._add["sep"] = true;
                continue;
            }
            if (type != "TemplateProcessing" || !proc.TryGetProperty("single", out JsonElement single)
                || single.ValueKind != JsonValueKind.Array || single.GetArrayLength() <= 1)
                continue;
            static string? SpecialId(JsonElement item) =>
                item.ValueKind == JsonValueKind.Object && item.TryGetProperty("SpecialToken", out JsonElement st)
                && st.ValueKind == JsonValueKind.Object
                && st.TryGetProperty("id", out JsonElement id) && id.ValueKind == JsonValueKind.String ? id.GetString() : null;
            string? first = SpecialId(single[0]);
            if (!string.IsNullOrEmpty(first))
            {
                if (!hasConfig) bos = first;
                result._add["bos"] = first == bos || first == cls;
            }
            string? last = SpecialId(single[single.GetArrayLength() - 1]);
            if (!string.IsNullOrEmpty(last))
            {
                if (!hasConfig) eos = last;
                else if (last != eos)
                {
                    if (!types.Contains("eot")) { types.Add("eot"); if (eos != null) overrides["eot"] = eos; }
                    else if (!types.Contains("eom")) { types.Add("eom"); if (eos != null) overrides["eom"] = eos; }
                    overrides["eos"] = eos = last;
                }
                result._add["eos"] = last == eos;
            }
        }
    }

    /// <summary>The text of a tokenizer_config.json token entry (a string, or an AddedToken object's "content").</summary>
    public static string? TokenContent(JsonElement? obj, string property)
    {
        if (obj is not { } o || o.ValueKind != JsonValueKind.Object || !o.TryGetProperty(property, out JsonElement e)) return null;
        if (e.ValueKind == JsonValueKind.String) return e.GetString();
        if (e.ValueKind == JsonValueKind.Object && e.TryGetProperty("content", out JsonElement c) && c.ValueKind == JsonValueKind.String)
            return c.GetString();
        return null;
    }

    private void ReadNamedTemplates(JsonElement list)
    {
        var named = new List<(string, string)>();
        foreach (JsonElement choice in list.EnumerateArray())
        {
            if (choice.ValueKind != JsonValueKind.Object) continue;
            string name = choice.TryGetProperty("name", out JsonElement n) && n.ValueKind == JsonValueKind.String ? n.GetString()! : "";
            string? template = choice.TryGetProperty("template", out JsonElement t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
            var sb = new StringBuilder(name.Length);
            foreach (char c in name) sb.Append(char.IsAsciiLetterOrDigit(c) ? c : '_');
            name = sb.ToString();
            if (name.Length == 0 || template is null) continue;
            if (name == "default") ChatTemplate = template;
            else if (!named.Exists(x => x.Item1 == name)) named.Add((name, template));
        }
        NamedChatTemplates = named;
    }

    /// <summary>gguf-py's <c>add_to_gguf</c>: the ids, the add_bos/add_eos/add_sep flags and the chat template(s).</summary>
    public void WriteTo(GgufWriter w)
    {
        foreach (var (type, id) in _ids)
        {
            string? key = type switch
            {
                "bos" => "tokenizer.ggml.bos_token_id",
                "eos" => "tokenizer.ggml.eos_token_id",
                "unk" => "tokenizer.ggml.unknown_token_id",
                "sep" => "tokenizer.ggml.seperator_token_id", // sic, as in gguf-py / llama.cpp
                "pad" => "tokenizer.ggml.padding_token_id",
                "cls" => "tokenizer.ggml.cls_token_id",
                "mask" => "tokenizer.ggml.mask_token_id",
                "eot" => "tokenizer.ggml.eot_token_id",
                "eom" => "tokenizer.ggml.eom_token_id",
                _ => null, // gguf-py has no handler for the others and skips them
            };
            if (key != null) w.Set(key, (uint)id);
        }
        foreach (string type in (string[])["bos", "eos", "sep"]) // gguf-py has handlers for these three only
            if (_add.TryGetValue(type, out bool v)) w.Set($"tokenizer.ggml.add_{type}_token", v);
        if (NamedChatTemplates is { Count: > 0 })
        {
            foreach (var (n, template) in NamedChatTemplates) w.Set("tokenizer.chat_template." + n, template);
            w.Set("tokenizer.chat_templates", GgufArray.Of(NamedChatTemplates.Select(t => t.Name).ToArray()));
        }
        if (ChatTemplate != null) w.Set("tokenizer.chat_template", ChatTemplate);
    }

    /// <summary>convert_hf_to_gguf.py's <c>does_token_look_special</c>: added tokens that ought to be control tokens.</summary>
    public static bool LooksSpecial(string text) =>
        text is "<pad>" or "<mask>" or "<2mass>" or "[@BOS@]"
        || (text.StartsWith("<|", StringComparison.Ordinal) && text.EndsWith("|>", StringComparison.Ordinal))
        || (text.StartsWith("<\uff5c", StringComparison.Ordinal) && text.EndsWith("\uff5c>", StringComparison.Ordinal))
        || (text.StartsWith("<unused", StringComparison.Ordinal) && text.EndsWith('>'));

    /// <summary>Parses a JSON file that must hold an object.</summary>
    /// <exception cref="InvalidDataException">not valid JSON, or not an object</exception>
    public static JsonDocument ParseObject(string path, string what)
    {
        ArgumentNullException.ThrowIfNull(path);
        byte[] bytes = File.ReadAllBytes(path);
        try
        {
            var doc = JsonDocument.Parse(bytes, new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
            JsonValueKind kind = doc.RootElement.ValueKind;
            if (kind != JsonValueKind.Object)
            {
                doc.Dispose();
                throw new InvalidDataException($"{path}: a {what} must be a JSON object, but it is {kind}");
            }
            return doc;
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON ({what}): {e.Message}", e);
        }
    }
}
