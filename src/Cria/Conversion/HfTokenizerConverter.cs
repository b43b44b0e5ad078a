using System.Globalization;
using System.Text;
using System.Text.Json;
using Cria.Gguf;

namespace Cria.Conversion;

/// <summary>
/// Converts a Hugging Face <c>tokenizer.json</c> (plus optional <c>tokenizer_config.json</c>) of the byte-level BPE
/// kind (Llama 3, GPT-2) into the <c>tokenizer.*</c> GGUF metadata that llama.cpp's <c>convert_hf_to_gguf.py</c>
/// writes (<c>_set_vocab_gpt2</c> + gguf-py's <c>SpecialVocab</c>).
/// </summary>
/// <remarks>
/// <para>What is written, in this order: <c>tokenizer.ggml.model</c> = "gpt2"; <c>tokenizer.ggml.pre</c>
/// ("llama-bpe" for Llama 3's split regex, "gpt-2" for a plain ByteLevel pre-tokenizer); <c>tokens</c> (every id up
/// to the highest one, added tokens included; a gap becomes "[PAD{id}]"); <c>token_type</c> (int32: NORMAL 1 for
/// model-vocabulary tokens, CONTROL 3 for added tokens marked special or looking special — "&lt;|...|&gt;" and the
/// like —, USER_DEFINED 4 for other added tokens, whose U+2581 become spaces, UNUSED 5 for gaps); <c>merges</c>
/// ("a b" strings; pair-format merges are joined with spaces inside parts written as U+0120); the special ids
/// (uint32) named by <c>tokenizer_config.json</c>'s <c>bos_token</c>, <c>eos_token</c>, ... and looked up among the
/// added tokens; <c>add_bos_token</c> / <c>add_eos_token</c>; <c>tokenizer.chat_template</c>.</para>
/// <para>Differences from the Python converter: the pre-tokenizer is recognised from the split regex rather than from
/// the hash of a test tokenization (same result for Llama 3 / GPT-2; other regexes are rejected); the
/// encode/decode round trip the Python converter applies to non-normalized added tokens is assumed to be the
/// identity; when the configuration says nothing about BOS, <c>add_bos_token</c> is written as true for llama-bpe
/// (llama.cpp's own default for that pre-tokenizer, so the behaviour is the same); without a
/// <c>tokenizer_config.json</c>, BOS/EOS come from a TemplateProcessing post-processor or, failing that, from the
/// Llama 3 added tokens &lt;|begin_of_text|&gt; / &lt;|end_of_text|&gt; (the Python converter would leave them unset
/// unless config.json has them).</para>
/// </remarks>
public static class HfTokenizerConverter
{
    /// <summary>Llama 3's pre-tokenizer regex as it appears in tokenizer.json.</summary>
    public const string Llama3Pattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    private const string Llama3PatternAdapted =
        @"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    private const int MaxTokenId = 1 << 24;

    private const int TypeNormal = 1, TypeControl = 3, TypeUserDefined = 4, TypeUnused = 5;

    /// <summary>Adds the tokenizer metadata of <paramref name="tokenizerJsonPath"/> to <paramref name="writer"/>.</summary>
    /// <param name="tokenizerConfigPath">tokenizer_config.json (special tokens, add_bos_token, chat template), or null</param>
    /// <exception cref="InvalidDataException">the JSON is malformed or the tokenizer is not a supported byte-level BPE</exception>
    public static void AddTo(GgufWriter writer, string tokenizerJsonPath, string? tokenizerConfigPath)
    {
        ArgumentNullException.ThrowIfNull(writer);
        HfTokenizer t = Read(tokenizerJsonPath, tokenizerConfigPath);
        t.WriteTo(writer);
    }

    /// <summary>
    /// Writes a vocabulary-only GGUF (no tensors; <c>general.architecture</c> "llama", <c>general.name</c>,
    /// <c>llama.vocab_size</c> and the tokenizer metadata), like llama.cpp's <c>models/ggml-vocab-llama-bpe.gguf</c>.
    /// The file is written to a temporary name and renamed into place.
    /// </summary>
    /// <param name="name">general.name; default: the pre-tokenizer name (e.g. "llama-bpe")</param>
    public static void WriteVocabularyGguf(string tokenizerJsonPath, string? configPath, string outputPath, string? name = null)
    {
        ArgumentNullException.ThrowIfNull(outputPath);
        HfTokenizer t = Read(tokenizerJsonPath, configPath);
        var w = new GgufWriter();
        w.Set("general.architecture", "llama");
        w.Set("general.name", name ?? t.Pre);
        w.Set("llama.vocab_size", (uint)t.Tokens.Length);
        t.WriteTo(w);
        w.Write(outputPath);
    }

    // ---- reading ----

    private sealed class HfTokenizer
    {
        public required string Pre;
        public required string[] Tokens;
        public required int[] Types;
        public required string[] Merges;
        public required List<(string Type, int Id)> SpecialIds;
        public required List<(string Type, bool Value)> AddSpecial;
        public string? ChatTemplate;
        public List<(string Name, string Template)>? NamedChatTemplates;

        public void WriteTo(GgufWriter w)
        {
            w.Set("tokenizer.ggml.model", "gpt2");
            w.Set("tokenizer.ggml.pre", Pre);
            w.Set("tokenizer.ggml.tokens", GgufArray.Of(Tokens));
            w.Set("tokenizer.ggml.token_type", GgufArray.Of(Types));
            if (Merges.Length > 0) w.Set("tokenizer.ggml.merges", GgufArray.Of(Merges));
            foreach (var (type, id) in SpecialIds)
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
                    _ => null,
                };
                if (key != null) w.Set(key, (uint)id);
            }
            foreach (var (type, value) in AddSpecial)
            {
                string? key = type switch
                {
                    "bos" => "tokenizer.ggml.add_bos_token",
                    "eos" => "tokenizer.ggml.add_eos_token",
                    "sep" => "tokenizer.ggml.add_sep_token",
                    _ => null, // gguf-py has no handler for the others and skips them
                };
                if (key != null) w.Set(key, value);
            }
            if (NamedChatTemplates is { Count: > 0 })
            {
                foreach (var (n, template) in NamedChatTemplates) w.Set("tokenizer.chat_template." + n, template);
                w.Set("tokenizer.chat_templates", GgufArray.Of(NamedChatTemplates.Select(t => t.Name).ToArray()));
            }
            if (ChatTemplate != null) w.Set("tokenizer.chat_template", ChatTemplate);
        }
    }

    private sealed record AddedToken(int Id, string Content, bool Special, bool Normalized);

    private static JsonDocument ParseJson(string path, string what)
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

    private static HfTokenizer Read(string tokenizerJsonPath, string? configPath)
    {
        using JsonDocument doc = ParseJson(tokenizerJsonPath, "tokenizer.json");
        using JsonDocument? configDoc = configPath is null ? null : ParseJson(configPath, "tokenizer_config.json");
        JsonElement root = doc.RootElement;
        JsonElement? config = configDoc?.RootElement;
        string src = tokenizerJsonPath;

        // ---- model: byte-level BPE only ----
        if (!root.TryGetProperty("model", out JsonElement model) || model.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException($"{src}: no \"model\" object: not a Hugging Face tokenizer.json");
        string? modelType = model.TryGetProperty("type", out JsonElement mt) && mt.ValueKind == JsonValueKind.String ? mt.GetString() : null;
        if (modelType != "BPE")
            throw new InvalidDataException(
                $"{src}: tokenizer model type '{modelType ?? "(missing)"}' is not supported; only byte-level BPE (\"BPE\", as in Llama 3 and GPT-2) is");
        if (model.TryGetProperty("byte_fallback", out JsonElement bf) && bf.ValueKind == JsonValueKind.True)
            throw new InvalidDataException(
                $"{src}: a BPE model with byte_fallback is SentencePiece-style (Llama 2, Mistral), not byte-level BPE; convert its tokenizer.model instead");
        bool byteLevelDecoder = root.TryGetProperty("decoder", out JsonElement decoder) && ContainsType(decoder, "decoders", "ByteLevel");
        if (!byteLevelDecoder)
            throw new InvalidDataException($"{src}: the decoder is not ByteLevel: not a byte-level BPE tokenizer");

        string pre = DetectPreTokenizer(src, root);

        // ---- vocabulary ----
        if (!model.TryGetProperty("vocab", out JsonElement vocab) || vocab.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException($"{src}: model.vocab must be an object mapping token text to id");
        var idToText = new Dictionary<int, string>();
        int maxId = -1;
        foreach (JsonProperty p in vocab.EnumerateObject())
        {
            int id = ReadId(src, p.Value, $"model.vocab[\"{p.Name}\"]");
            if (!idToText.TryAdd(id, p.Name))
                throw new InvalidDataException($"{src}: model.vocab gives id {id} to both \"{idToText[id]}\" and \"{p.Name}\"");
            maxId = Math.Max(maxId, id);
        }

        var added = new List<AddedToken>();
        if (root.TryGetProperty("added_tokens", out JsonElement addedArray) && addedArray.ValueKind != JsonValueKind.Null)
        {
            if (addedArray.ValueKind != JsonValueKind.Array)
                throw new InvalidDataException($"{src}: added_tokens must be an array");
            int i = 0;
            foreach (JsonElement a in addedArray.EnumerateArray())
            {
                if (a.ValueKind != JsonValueKind.Object || !a.TryGetProperty("id", out JsonElement aid)
                    || !a.TryGetProperty("content", out JsonElement content) || content.ValueKind != JsonValueKind.String)
                    throw new InvalidDataException($"{src}: added_tokens[{i}] must be an object with \"id\" and \"content\"");
                int id = ReadId(src, aid, $"added_tokens[{i}].id");
                bool special = a.TryGetProperty("special", out JsonElement sp) && sp.ValueKind == JsonValueKind.True;
                bool normalized = !a.TryGetProperty("normalized", out JsonElement nm) || nm.ValueKind != JsonValueKind.False;
                added.Add(new AddedToken(id, content.GetString()!, special, normalized));
                maxId = Math.Max(maxId, id);
                i++;
            }
        }
        if (maxId < 0) throw new InvalidDataException($"{src}: the vocabulary is empty");

        var addedById = new Dictionary<int, AddedToken>();
        var addedByContent = new Dictionary<string, AddedToken>(StringComparer.Ordinal);
        foreach (AddedToken a in added)
        {
            addedById[a.Id] = a;
            addedByContent.TryAdd(a.Content, a);
            idToText[a.Id] = a.Content; // the tokenizer's full vocabulary includes the added tokens
        }

        int n = maxId + 1;
        var tokens = new string[n];
        var types = new int[n];
        for (int id = 0; id < n; id++)
        {
            if (!idToText.TryGetValue(id, out string? text))
            {
                tokens[id] = "[PAD" + id.ToString(CultureInfo.InvariantCulture) + "]";
                types[id] = TypeUnused;
                continue;
            }
            if (addedByContent.TryGetValue(text, out AddedToken? a))
            {
                AddedToken info = addedById.TryGetValue(id, out AddedToken? byId) ? byId : a;
                if (info.Special || LooksSpecial(text))
                {
                    types[id] = TypeControl;
                }
                else
                {
                    text = text.Replace('\u2581', ' '); // pre-normalize user-defined spaces
                    types[id] = TypeUserDefined;
                }
            }
            else
            {
                types[id] = TypeNormal;
            }
            tokens[id] = text;
        }
        var seen = new Dictionary<string, int>(n, StringComparer.Ordinal);
        for (int id = 0; id < n; id++)
            if (!seen.TryAdd(tokens[id], id))
                throw new InvalidDataException($"{src}: tokens {seen[tokens[id]]} and {id} have the same text \"{tokens[id]}\"");

        string[] merges = ReadMerges(src, model);

        var result = new HfTokenizer
        {
            Pre = pre, Tokens = tokens, Types = types, Merges = merges,
            SpecialIds = [], AddSpecial = [],
        };
        ReadSpecials(root, config, added, result, configPath ?? "tokenizer_config.json");
        return result;
    }

    private static bool ContainsType(JsonElement e, string listProperty, string type)
    {
        if (e.ValueKind != JsonValueKind.Object) return false;
        if (e.TryGetProperty("type", out JsonElement t) && t.ValueKind == JsonValueKind.String && t.GetString() == type) return true;
        if (e.TryGetProperty(listProperty, out JsonElement list) && list.ValueKind == JsonValueKind.Array)
            foreach (JsonElement x in list.EnumerateArray())
                if (ContainsType(x, listProperty, type)) return true;
        return false;
    }

    // which llama.cpp pre-tokenizer name the tokenizer.json pre_tokenizer corresponds to
    private static string DetectPreTokenizer(string src, JsonElement root)
    {
        if (!root.TryGetProperty("pre_tokenizer", out JsonElement pt) || pt.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException($"{src}: no pre_tokenizer: unsupported (only Llama 3's and GPT-2's are)");
        var parts = new List<JsonElement>();
        if (pt.TryGetProperty("type", out JsonElement t) && t.GetString() == "Sequence"
            && pt.TryGetProperty("pretokenizers", out JsonElement list) && list.ValueKind == JsonValueKind.Array)
            parts.AddRange(list.EnumerateArray());
        else
            parts.Add(pt);

        string? regex = null;
        bool byteLevel = false, byteLevelRegex = false;
        var other = new List<string>();
        foreach (JsonElement p in parts)
        {
            string? type = p.TryGetProperty("type", out JsonElement pty) && pty.ValueKind == JsonValueKind.String ? pty.GetString() : null;
            if (type == "Split" && p.TryGetProperty("pattern", out JsonElement pat) && pat.ValueKind == JsonValueKind.Object
                && pat.TryGetProperty("Regex", out JsonElement rx) && rx.ValueKind == JsonValueKind.String && regex == null)
            {
                regex = rx.GetString();
            }
            else if (type == "ByteLevel")
            {
                byteLevel = true;
                // tokenizers' ByteLevel use_regex defaults to true (GPT-2's split)
                byteLevelRegex = !p.TryGetProperty("use_regex", out JsonElement ur) || ur.ValueKind != JsonValueKind.False;
                if (p.TryGetProperty("add_prefix_space", out JsonElement aps) && aps.ValueKind == JsonValueKind.True)
                    other.Add("ByteLevel(add_prefix_space)");
            }
            else
            {
                other.Add(type ?? "(untyped)");
            }
        }
        if (!byteLevel)
            throw new InvalidDataException($"{src}: the pre_tokenizer has no ByteLevel step: not a byte-level BPE tokenizer");
        if (other.Count == 0)
        {
            if (regex is Llama3Pattern or Llama3PatternAdapted && !byteLevelRegex) return "llama-bpe";
            if (regex == null && byteLevelRegex) return "gpt-2";
        }
        throw new InvalidDataException(
            $"{src}: unsupported pre-tokenizer (split regex {(regex == null ? "none" : "'" + regex + "'")}, " +
            $"ByteLevel use_regex {byteLevelRegex}{(other.Count > 0 ? ", also " + string.Join(", ", other) : "")}); " +
            "only Llama 3's (llama-bpe) and GPT-2's (gpt-2) are supported");
    }

    private static int ReadId(string src, JsonElement e, string what)
    {
        if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out int id) || id < 0 || id >= MaxTokenId)
            throw new InvalidDataException($"{src}: {what} must be a token id in [0, {MaxTokenId}), but it is {e.GetRawText()}");
        return id;
    }

    private static bool LooksSpecial(string text) =>
        text is "<pad>" or "<mask>" or "<2mass>" or "[@BOS@]"
        || (text.StartsWith("<|", StringComparison.Ordinal) && text.EndsWith("|>", StringComparison.Ordinal))
        || (text.StartsWith("<\uff5c", StringComparison.Ordinal) && text.EndsWith("\uff5c>", StringComparison.Ordinal))
        || (text.StartsWith("<unused", StringComparison.Ordinal) && text.EndsWith('>'));

    private static string[] ReadMerges(string src, JsonElement model)
    {
        if (!model.TryGetProperty("merges", out JsonElement merges) || merges.ValueKind != JsonValueKind.Array)
            throw new InvalidDataException($"{src}: model.merges must be an array");
        var result = new string[merges.GetArrayLength()];
        int i = 0;
        foreach (JsonElement m in merges.EnumerateArray())
        {
            if (m.ValueKind == JsonValueKind.String)
            {
                result[i++] = m.GetString()!;
            }
            else if (m.ValueKind == JsonValueKind.Array && m.GetArrayLength() == 2
                     && m[0].ValueKind == JsonValueKind.String && m[1].ValueKind == JsonValueKind.String)
            {
                // transformers >= 4.45 pair format; spaces inside a part are written as U+0120 (gguf-py)
                result[i++] = m[0].GetString()!.Replace(' ', '\u0120') + " " + m[1].GetString()!.Replace(' ', '\u0120');
            }
            else
            {
                throw new InvalidDataException($"{src}: model.merges[{i}] must be a string \"a b\" or a pair [\"a\", \"b\"]");
            }
        }
        return result;
    }

    private static string? TokenContent(JsonElement? obj, string property)
    {
        if (obj is not { } o || !o.TryGetProperty(property, out JsonElement e)) return null;
        if (e.ValueKind == JsonValueKind.String) return e.GetString();
        if (e.ValueKind == JsonValueKind.Object && e.TryGetProperty("content", out JsonElement c) && c.ValueKind == JsonValueKind.String)
            return c.GetString();
        return null;
    }

    // gguf-py SpecialVocab._try_load_from_tokenizer_json: special ids, add_*_token flags, chat template
    private static void ReadSpecials(JsonElement root, JsonElement? config, List<AddedToken> added, HfTokenizer result, string configName)
    {
        var types = new List<string> { "bos", "eos", "unk", "sep", "pad", "cls", "mask" };
        var overrides = new Dictionary<string, string>(); // typ -> token content decided from the post-processor
        var add = new Dictionary<string, bool>();

        string? bos = TokenContent(config, "bos_token"), cls = TokenContent(config, "cls_token");
        string? eos = TokenContent(config, "eos_token"), sep = TokenContent(config, "sep_token");
        if (bos is null && cls is not null && config is not null) overrides["bos"] = bos = cls;
        if (eos is null && sep is not null && config is not null) overrides["eos"] = eos = sep;

        if (root.TryGetProperty("post_processor", out JsonElement post) && post.ValueKind == JsonValueKind.Object)
        {
            var processors = post.TryGetProperty("processors", out JsonElement list) && list.ValueKind == JsonValueKind.Array
                ? list.EnumerateArray().ToList() : [post];
            foreach (JsonElement proc in processors)
            {
                string? type = proc.TryGetProperty("type", out JsonElement t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
                if (type == "RobertaProcessing")
                {
                    add["bos"] = true; add["eos"] = true; add["sep"] = true;
                    continue;
                }
                if (type != "TemplateProcessing" || !proc.TryGetProperty("single", out JsonElement single)
                    || single.ValueKind != JsonValueKind.Array || single.GetArrayLength() <= 1)
                    continue;
                static string? SpecialId(JsonElement item) =>
                    item.ValueKind == JsonValueKind.Object && item.TryGetProperty("SpecialToken", out JsonElement st)
                    && st.TryGetProperty("id", out JsonElement id) && id.ValueKind == JsonValueKind.String ? id.GetString() : null;
                string? first = SpecialId(single[0]);
                if (!string.IsNullOrEmpty(first))
                {
                    if (config is null) bos = first;
                    add["bos"] = first == bos || first == cls;
                }
                string? last = SpecialId(single[single.GetArrayLength() - 1]);
                if (!string.IsNullOrEmpty(last))
                {
                    if (config is null) eos = last;
                    else if (last != eos)
                    {
                        if (!types.Contains("eot")) { types.Add("eot"); if (eos != null) overrides["eot"] = eos; }
                        else if (!types.Contains("eom")) { types.Add("eom"); if (eos != null) overrides["eom"] = eos; }
                        overrides["eos"] = eos = last;
                    }
                    add["eos"] = last == eos;
                }
            }
        }

        var ids = new List<(string, int)>();
        int? FindAdded(string? content) => content is null ? null : added.FirstOrDefault(a => a.Content == content)?.Id;

        if (config is not { } cfg)
        {
            // no tokenizer_config.json: gguf-py would set no ids; use the post-processor's or Llama 3's tokens
            if ((FindAdded(bos) ?? FindAdded("<|begin_of_text|>")) is int b) ids.Add(("bos", b));
            if ((FindAdded(eos) ?? FindAdded("<|end_of_text|>")) is int e) ids.Add(("eos", e));
        }
        else
        {
            if (cfg.TryGetProperty("chat_template", out JsonElement ct))
            {
                if (ct.ValueKind == JsonValueKind.String) result.ChatTemplate = ct.GetString();
                else if (ct.ValueKind == JsonValueKind.Array) ReadNamedTemplates(ct, result);
                else if (ct.ValueKind != JsonValueKind.Null)
                    throw new InvalidDataException($"{configName}: chat_template must be a string or a list of {{name, template}}");
            }
            foreach (string typ in types)
            {
                if (cfg.TryGetProperty($"add_{typ}_token", out JsonElement ae) && ae.ValueKind is JsonValueKind.True or JsonValueKind.False)
                    add[typ] = ae.GetBoolean();
                string? content = overrides.TryGetValue(typ, out string? o) ? o : TokenContent(cfg, $"{typ}_token");
                if (FindAdded(content) is int id && !ids.Exists(x => x.Item1 == typ)) ids.Add((typ, id));
            }
        }
        result.SpecialIds.AddRange(ids);

        if (!add.ContainsKey("bos") && result.Pre == "llama-bpe") add["bos"] = true; // llama.cpp's default for llama-bpe
        foreach (string typ in (string[])["bos", "eos", "sep"])
            if (add.TryGetValue(typ, out bool v)) result.AddSpecial.Add((typ, v));
    }

    private static void ReadNamedTemplates(JsonElement list, HfTokenizer result)
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
            if (name == "default") result.ChatTemplate = template;
            else if (!named.Exists(x => x.Item1 == name)) named.Add((name, template));
        }
        result.NamedChatTemplates = named;
    }
}
