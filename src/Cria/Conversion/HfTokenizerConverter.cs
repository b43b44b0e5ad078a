using Cria.Tokenizers;
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
/// added tokens, then (for types still open, when converting a model folder) config.json's <c>{type}_token_id</c>
/// integers; <c>add_bos_token</c> / <c>add_eos_token</c>; <c>tokenizer.chat_template</c>
/// (<see cref="HfSpecialVocab"/>).</para>
/// <para>Differences from the Python converter: the pre-tokenizer is recognised from the split regex rather than from
/// the hash of a test tokenization (same result for Llama 3 / GPT-2; other regexes are rejected); the
/// encode/decode round trip the Python converter applies to non-normalized added tokens is assumed to be the
/// identity; when the configuration says nothing about BOS, <c>add_bos_token</c> is written as true for llama-bpe
/// (llama.cpp's own default for that pre-tokenizer, so the behaviour is the same); without a
/// <c>tokenizer_config.json</c>, BOS/EOS come from a TemplateProcessing post-processor or, failing that, from the
/// Llama 3 added tokens &lt;|begin_of_text|&gt; / &lt;|end_of_text|&gt; (the Python converter would leave them unset
/// unless config.json has them); ids still open after config.json are taken from generation_config.json (see
/// <see cref="HfGenerationConfig"/>), which the Python converter does not read for ids.</para>
/// </remarks>
public static class HfTokenizerConverter
{
    /// <summary>Llama 3's pre-tokenizer regex as it appears in tokenizer.json.</summary>
    public const string Llama3Pattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    private const string Llama3PatternAdapted =
        @"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    private const int MaxTokenId = 1 << 24;


    /// <summary>Adds the tokenizer metadata of <paramref name="tokenizerJsonPath"/> to <paramref name="writer"/>.</summary>
    /// <param name="tokenizerConfigPath">tokenizer_config.json (special tokens, add_bos_token, chat template), or null</param>
    /// <exception cref="InvalidDataException">the JSON is malformed or the tokenizer is not a supported byte-level BPE</exception>
    public static void AddTo(GgufWriter writer, string tokenizerJsonPath, string? tokenizerConfigPath) =>
        AddTo(writer, tokenizerJsonPath, tokenizerConfigPath, HfTokenIds.None);

    /// <param name="ids">special ids from config.json / generation_config.json, used for types the tokenizer files leave open</param>
    internal static void AddTo(GgufWriter writer, string tokenizerJsonPath, string? tokenizerConfigPath, HfTokenIds ids)
    {
        ArgumentNullException.ThrowIfNull(writer);
        HfTokenizer t = Read(tokenizerJsonPath, tokenizerConfigPath, ids);
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
        HfTokenizer t = Read(tokenizerJsonPath, configPath, HfTokenIds.None);
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
        public required HfSpecialVocab Special;

        public void WriteTo(GgufWriter w)
        {
            w.Set("tokenizer.ggml.model", "gpt2");
            w.Set("tokenizer.ggml.pre", Pre);
            w.Set("tokenizer.ggml.tokens", GgufArray.Of(Tokens));
            w.Set("tokenizer.ggml.token_type", GgufArray.Of(Types));
            if (Merges.Length > 0) w.Set("tokenizer.ggml.merges", GgufArray.Of(Merges));
            Special.WriteTo(w);
        }
    }

    private sealed record AddedToken(int Id, string Content, bool Special, bool Normalized);

    private static HfTokenizer Read(string tokenizerJsonPath, string? configPath, HfTokenIds ids)
    {
        using JsonDocument doc = HfSpecialVocab.ParseObject(tokenizerJsonPath, "tokenizer.json");
        using JsonDocument? configDoc = configPath is null ? null : HfSpecialVocab.ParseObject(configPath, "tokenizer_config.json");
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
                types[id] = (int)TokenType.Unused;
                continue;
            }
            if (addedByContent.TryGetValue(text, out AddedToken? a))
            {
                AddedToken info = addedById.TryGetValue(id, out AddedToken? byId) ? byId : a;
                if (info.Special || HfSpecialVocab.LooksSpecial(text))
                {
                    types[id] = (int)TokenType.Control;
                }
                else
                {
                    text = text.Replace('\u2581', ' '); // pre-normalize user-defined spaces
                    types[id] = (int)TokenType.UserDefined;
                }
            }
            else
            {
                types[id] = (int)TokenType.Normal;
            }
            tokens[id] = text;
        }
        var seen = new Dictionary<string, int>(n, StringComparer.Ordinal);
        for (int id = 0; id < n; id++)
            if (!seen.TryAdd(tokens[id], id))
                throw new InvalidDataException($"{src}: tokens {seen[tokens[id]]} and {id} have the same text \"{tokens[id]}\"");

        string[] merges = ReadMerges(src, model);

        var specials = HfSpecialVocab.Load(root, added.Select(a => (a.Id, a.Content)).ToList(), config,
            configPath ?? "tokenizer_config.json", ids, nVocab: null);
        // Cria's additions to gguf-py's sources: generation_config.json's ids, and without a tokenizer_config.json the
        // post-processor's BOS/EOS or Llama 3's <|begin_of_text|> / <|end_of_text|>.
        foreach (var (type, id) in ids.Generation) specials.Set(type, id);
        if (config is null)
        {
            int? FindAdded(string? content) => content is null ? null : added.FirstOrDefault(a => a.Content == content)?.Id;
            specials.Set("bos", FindAdded(specials.UnconfiguredBos) ?? FindAdded("<|begin_of_text|>"));
            specials.Set("eos", FindAdded(specials.UnconfiguredEos) ?? FindAdded("<|end_of_text|>"));
        }
        if (!specials.HasAdd("bos") && pre == "llama-bpe") specials.SetAdd("bos", true); // llama.cpp's default for llama-bpe
        return new HfTokenizer { Pre = pre, Tokens = tokens, Types = types, Merges = merges, Special = specials };
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
}
