using System.Text;
using Cria.Gguf;

namespace Cria.Tokenizers;

/// <summary>
/// A tokenizer vocabulary read from GGUF metadata, with the special ids, flags and token types set up
/// the way llama.cpp's <c>llama_vocab::load</c> does it (defaults per tokenizer model, metadata
/// overrides, text-based detection of end-of-generation and FIM tokens, and the list of "special"
/// tokens that <c>tokenizer_st_partition</c> splits out of text).
/// </summary>
/// <remarks>
/// Reference: llama.cpp at c392e509 (February 2025), the build that produced this project's reference data.
/// Where llama.cpp depends on the iteration order of a hash map (which of several EOT-looking tokens
/// becomes <see cref="Eot"/>), this class takes the lowest id. The end-of-generation set itself does not
/// depend on that order.
/// </remarks>
public sealed class Vocabulary
{
    public const string KeyModel = "tokenizer.ggml.model";
    public const string KeyPre = "tokenizer.ggml.pre";
    public const string KeyTokens = "tokenizer.ggml.tokens";
    public const string KeyScores = "tokenizer.ggml.scores";
    public const string KeyTokenType = "tokenizer.ggml.token_type";
    public const string KeyMerges = "tokenizer.ggml.merges";
    public const string KeyBos = "tokenizer.ggml.bos_token_id";
    public const string KeyEos = "tokenizer.ggml.eos_token_id";
    public const string KeyEot = "tokenizer.ggml.eot_token_id";
    public const string KeyEom = "tokenizer.ggml.eom_token_id";
    public const string KeyUnk = "tokenizer.ggml.unknown_token_id";
    public const string KeySep = "tokenizer.ggml.seperator_token_id"; // sic, as in llama.cpp
    public const string KeyPad = "tokenizer.ggml.padding_token_id";
    public const string KeyMask = "tokenizer.ggml.mask_token_id";
    public const string KeyAddBos = "tokenizer.ggml.add_bos_token";
    public const string KeyAddEos = "tokenizer.ggml.add_eos_token";
    public const string KeyAddSpacePrefix = "tokenizer.ggml.add_space_prefix";
    public const string KeyRemoveExtraWhitespaces = "tokenizer.ggml.remove_extra_whitespaces";

    [Flags]
    private enum Strip : byte { None = 0, Left = 1, Right = 2 }

    private readonly string[] _tokens;
    private readonly float[] _scores;
    private readonly TokenType[] _types;
    private readonly Strip[] _strip;
    private readonly Dictionary<string, int> _ids;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _lookup;
    private readonly int[] _specialTokens;
    private readonly int[] _eogIds;
    private readonly HashSet<int> _eog;
    private readonly string[]? _merges;

    /// <summary>Number of tokens.</summary>
    public int Count => _tokens.Length;

    /// <summary>Value of <c>tokenizer.ggml.model</c>: "llama" (SentencePiece BPE), "gpt2" (byte-level BPE), ...</summary>
    public string Model { get; }

    /// <summary>Value of <c>tokenizer.ggml.pre</c> (the BPE pre-tokenizer name), or null.</summary>
    public string? Pre { get; }

    /// <summary>Beginning-of-sequence id, or -1.</summary>
    public int Bos { get; }
    /// <summary>End-of-sequence id, or -1.</summary>
    public int Eos { get; }
    /// <summary>Unknown-token id, or -1.</summary>
    public int Unk { get; }
    /// <summary>End-of-turn id (metadata or detected by text), or -1.</summary>
    public int Eot { get; }
    /// <summary>End-of-message id (metadata or "&lt;|eom_id|&gt;"), or -1.</summary>
    public int Eom { get; }
    /// <summary>Padding id, or null.</summary>
    public int? Pad { get; }
    /// <summary>Separator id, or null.</summary>
    public int? Sep { get; }
    /// <summary>Newline token (for SPM the byte token &lt;0x0A&gt;), or -1.</summary>
    public int Linefeed { get; }
    /// <summary>Fill-in-the-middle ids (Code Llama &lt;PRE&gt; &lt;SUF&gt; &lt;MID&gt;, ...), or -1.</summary>
    public int FimPrefix { get; }
    public int FimSuffix { get; }
    public int FimMiddle { get; }
    public int FimPad { get; }
    public int FimRepo { get; }
    public int FimSeparator { get; }

    /// <summary>Whether tokenizing with add_special prepends <see cref="Bos"/>.</summary>
    public bool AddBos { get; }
    /// <summary>Whether tokenizing with add_special appends <see cref="Eos"/>.</summary>
    public bool AddEos { get; }
    /// <summary>SentencePiece's dummy prefix: a space is put before text at the start and after special tokens.</summary>
    public bool AddSpacePrefix { get; }
    /// <summary>llama.cpp's clean_spaces (clean_up_tokenization_spaces) flag used when detokenizing; false for "llama".</summary>
    public bool CleanSpaces { get; }
    /// <summary>Value of <c>tokenizer.ggml.remove_extra_whitespaces</c> (default false; unused by the SPM tokenizer).</summary>
    public bool RemoveExtraWhitespaces { get; }

    /// <summary>BPE merges ("a b" strings) for "gpt2" vocabularies, else null.</summary>
    public IReadOnlyList<string>? Merges => _merges;

    /// <summary>
    /// Control, user-defined and unknown tokens, longest text first: the order in which llama.cpp
    /// splits them out of raw text.
    /// </summary>
    public IReadOnlyList<int> SpecialTokens => _specialTokens;

    /// <summary>All end-of-generation ids, ascending.</summary>
    public IReadOnlyList<int> EndOfGenerationIds => _eogIds;

    private Vocabulary(string model, string? pre, string[] tokens, float[] scores, TokenType[] types,
        Dictionary<string, int> ids, string[]? merges, in Specials s)
    {
        Model = model;
        Pre = pre;
        _tokens = tokens;
        _scores = scores;
        _types = types;
        _ids = ids;
        _lookup = ids.GetAlternateLookup<ReadOnlySpan<char>>();
        _merges = merges;
        _strip = new Strip[tokens.Length];

        Bos = s.Bos; Eos = s.Eos; Unk = s.Unk; Eot = s.Eot; Eom = s.Eom;
        Pad = s.Pad >= 0 ? s.Pad : null;
        Sep = s.Sep >= 0 ? s.Sep : null;
        Linefeed = s.Linefeed;
        FimPrefix = s.FimPre; FimSuffix = s.FimSuf; FimMiddle = s.FimMid;
        FimPad = s.FimPad; FimRepo = s.FimRep; FimSeparator = s.FimSep;
        AddBos = s.AddBos; AddEos = s.AddEos; AddSpacePrefix = s.AddSpacePrefix;
        CleanSpaces = s.CleanSpaces; RemoveExtraWhitespaces = s.RemoveExtraWhitespaces;

        // end-of-generation set (llama.cpp: fim pad/rep/sep, EOG-looking texts, eos, eot, eom)
        _eog = [];
        if (s.FimPad >= 0) _eog.Add(s.FimPad);
        if (s.FimRep >= 0) _eog.Add(s.FimRep);
        if (s.FimSep >= 0) _eog.Add(s.FimSep);
        for (int i = 0; i < tokens.Length; i++)
        {
            if (IsEogText(tokens[i]))
            {
                _eog.Add(i);
                _types[i] = TokenType.Control; // llama.cpp overrides "control-looking" tokens
            }
            else if (tokens[i] is "</s>" or "<|end_of_text|>" && _types[i] is TokenType.Control or TokenType.UserDefined)
            {
                // Later llama.cpp versions also treat these texts as end of generation (and force them to
                // CONTROL); the reference build does not. They are added here for stopping only: the token
                // type is left alone so tokenization stays as in the reference build.
                _eog.Add(i);
            }
        }
        if (s.Eos >= 0) _eog.Add(s.Eos);
        if (s.Eot >= 0) _eog.Add(s.Eot);
        if (s.Eom >= 0) _eog.Add(s.Eom);
        _eogIds = [.. _eog];
        Array.Sort(_eogIds);

        // special tokens cache: control, user-defined and unknown tokens, longest (in UTF-8 bytes) first
        var special = new List<int>();
        for (int i = 0; i < tokens.Length; i++)
            if (_types[i] is TokenType.Control or TokenType.UserDefined or TokenType.Unknown) special.Add(i);
        var byteLength = new Dictionary<int, int>(special.Count);
        foreach (int id in special) byteLength[id] = Encoding.UTF8.GetByteCount(tokens[id]);
        special.Sort((a, b) =>
        {
            int c = byteLength[b].CompareTo(byteLength[a]);
            return c != 0 ? c : a.CompareTo(b);
        });
        _specialTokens = [.. special];
    }

    private static bool IsEogText(string t) => t is "<|eot_id|>" or "<|im_end|>" or "<|end|>" or "<end_of_turn>"
        or "<|endoftext|>" or "<|eom_id|>" or "<EOT>";

    private static bool IsEotText(string t) => t is "<|eot_id|>" or "<|im_end|>" or "<|end|>" or "<end_of_turn>"
        or "<|endoftext|>" or "<EOT>" or "<｜end▁of▁sentence｜>";

    /// <summary>Reads the vocabulary of a GGUF file (model or vocab-only file).</summary>
    /// <exception cref="InvalidDataException">tokenizer metadata is missing or inconsistent</exception>
    public static Vocabulary FromGguf(GgufFile file)
    {
        ArgumentNullException.ThrowIfNull(file);
        return FromMetadata(file.Metadata);
    }

    /// <summary>Reads the vocabulary from GGUF metadata key/value pairs.</summary>
    /// <exception cref="InvalidDataException">tokenizer metadata is missing or inconsistent</exception>
    public static Vocabulary FromMetadata(IReadOnlyDictionary<string, GgufValue> meta)
    {
        ArgumentNullException.ThrowIfNull(meta);

        string model = GetString(meta, KeyModel)
            ?? throw new InvalidDataException($"the GGUF metadata has no '{KeyModel}' key: the file has no tokenizer");
        string? pre = GetString(meta, KeyPre);

        var s = new Specials
        {
            Eot = -1, Eom = -1, Sep = -1, Pad = -1, Mask = -1, Linefeed = -1,
            FimPre = -1, FimSuf = -1, FimMid = -1, FimPad = -1, FimRep = -1, FimSep = -1,
        };
        switch (model)
        {
            case "no_vocab":
            case "none":
                throw new InvalidDataException($"{KeyModel} is '{model}': the model has no vocabulary");
            case "llama": // SentencePiece (SPM)
                s.Bos = 1; s.Eos = 2; s.Unk = 0;
                s.AddSpacePrefix = true; s.CleanSpaces = false; s.AddBos = true; s.AddEos = false;
                break;
            case "bert": // WordPiece
                s.Bos = 101; s.Eos = -1; s.Unk = 100; s.Sep = 102; s.Pad = 0; s.Mask = 103;
                s.AddSpacePrefix = false; s.CleanSpaces = true; s.AddBos = true; s.AddEos = false;
                break;
            case "gpt2": // byte-level BPE
                s.Bos = 11; s.Eos = 11; s.Unk = -1;
                s.AddSpacePrefix = false; s.CleanSpaces = true;
                switch (pre)
                {
                    case "llama3" or "llama-v3" or "llama-bpe" or "falcon3":
                        s.AddBos = true;
                        break;
                    case "tekken" or "chameleon":
                        s.AddBos = true; s.CleanSpaces = false;
                        break;
                    case "deepseek-llm" or "deepseek-coder" or "deepseek-v3" or "command-r" or "qwen2"
                        or "poro-chat" or "viking" or "smollm":
                        s.CleanSpaces = false;
                        break;
                    case "chatglm-bpe":
                        s.Bos = -1;
                        break;
                }
                break;
            case "t5": // Unigram
                s.Bos = -1; s.Eos = 1; s.Unk = 2; s.Pad = 0;
                s.AddBos = false; s.AddEos = true;
                break;
            case "rwkv":
                s.Bos = -1; s.Eos = -1; s.Unk = -1;
                break;
            default:
                throw new InvalidDataException($"unknown tokenizer model '{model}' in {KeyModel}");
        }
        if (GetBool(meta, KeyAddSpacePrefix) is bool asp) s.AddSpacePrefix = asp;
        if (GetBool(meta, KeyRemoveExtraWhitespaces) is bool rew) s.RemoveExtraWhitespaces = rew;

        // tokens, scores, types
        if (!meta.TryGetValue(KeyTokens, out var tokensValue))
            throw new InvalidDataException($"the GGUF metadata has no '{KeyTokens}' array");
        if (tokensValue.Value is not GgufArray { Items: string[] rawTokens })
            throw new InvalidDataException($"'{KeyTokens}' must be an array of strings, but it is {tokensValue.Type}");
        int n = rawTokens.Length;
        if (n == 0) throw new InvalidDataException($"'{KeyTokens}' is empty");

        float[] scores = ReadFloats(meta, KeyScores, n) ?? new float[n];
        int[]? rawTypes = ReadInts(meta, KeyTokenType, n);

        var tokens = new string[n];
        var types = new TokenType[n];
        var ids = new Dictionary<string, int>(n, StringComparer.Ordinal);
        for (int i = 0; i < n; i++)
        {
            string word = rawTokens[i] ?? "";
            if (word.Length == 0) word = "[EMPTY_" + i.ToString(System.Globalization.CultureInfo.InvariantCulture) + "]";
            if (!ids.TryAdd(word, i))
                throw new InvalidDataException(
                    $"'{KeyTokens}' is inconsistent: token {i} has the same text as token {ids[word]} ('{word}')");
            tokens[i] = word;
            types[i] = rawTypes is null ? TokenType.Normal : rawTypes[i] switch
            {
                1 => TokenType.Normal,
                2 => TokenType.Unknown,
                3 => TokenType.Control,
                4 => TokenType.UserDefined,
                5 => TokenType.Unused,
                6 => TokenType.Byte,
                _ => TokenType.Undefined,
            };
        }

        string[]? merges = null;
        if (model == "gpt2")
        {
            if (!meta.TryGetValue(KeyMerges, out var mv) || mv.Value is not GgufArray { Items: string[] m })
                throw new InvalidDataException($"a 'gpt2' tokenizer needs the '{KeyMerges}' string array");
            merges = m;
        }

        // newline token (SPM: the byte token for '\n', else the text "\n")
        if (model == "llama")
        {
            if (ids.TryGetValue("<0x0A>", out int lf) || ids.TryGetValue("\n", out lf)) s.Linefeed = lf;
            else s.Linefeed = s.Pad;
        }
        else if (model == "bert") s.Linefeed = s.Pad;

        // special ids from metadata (invalid ids keep the default, as llama.cpp warns and does)
        s.Bos = ReadId(meta, KeyBos, n, s.Bos);
        s.Eos = ReadId(meta, KeyEos, n, s.Eos);
        s.Eot = ReadId(meta, KeyEot, n, s.Eot);
        s.Eom = ReadId(meta, KeyEom, n, s.Eom);
        s.Unk = ReadId(meta, KeyUnk, n, s.Unk);
        s.Sep = ReadId(meta, KeySep, n, s.Sep);
        s.Pad = ReadId(meta, KeyPad, n, s.Pad);
        s.Mask = ReadId(meta, KeyMask, n, s.Mask);
        s.FimPre = ReadId(meta, "tokenizer.ggml.fim_pre_token_id", n, s.FimPre);
        s.FimSuf = ReadId(meta, "tokenizer.ggml.fim_suf_token_id", n, s.FimSuf);
        s.FimMid = ReadId(meta, "tokenizer.ggml.fim_mid_token_id", n, s.FimMid);
        s.FimPad = ReadId(meta, "tokenizer.ggml.fim_pad_token_id", n, s.FimPad);
        s.FimRep = ReadId(meta, "tokenizer.ggml.fim_rep_token_id", n, s.FimRep);
        s.FimSep = ReadId(meta, "tokenizer.ggml.fim_sep_token_id", n, s.FimSep);
        s.FimPre = ReadId(meta, "tokenizer.ggml.prefix_token_id", n, s.FimPre); // deprecated keys
        s.FimSuf = ReadId(meta, "tokenizer.ggml.suffix_token_id", n, s.FimSuf);
        s.FimMid = ReadId(meta, "tokenizer.ggml.middle_token_id", n, s.FimMid);

        if (GetBool(meta, KeyAddBos) is bool ab) s.AddBos = ab;
        if (GetBool(meta, KeyAddEos) is bool ae) s.AddEos = ae;

        // text-based detection of EOT / EOM / FIM tokens; a detected token is forced to CONTROL
        for (int i = 0; i < n; i++)
        {
            string t = tokens[i];
            if (s.Eot < 0 && IsEotText(t)) { s.Eot = i; types[i] = TokenType.Control; }
            if (s.Eom < 0 && t == "<|eom_id|>") { s.Eom = i; types[i] = TokenType.Control; }
            if (s.FimPre < 0 && t is "<|fim_prefix|>" or "<fim-prefix>" or "<｜fim▁begin｜>" or "<PRE>")
            { s.FimPre = i; types[i] = TokenType.Control; }
            if (s.FimSuf < 0 && t is "<|fim_suffix|>" or "<fim-suffix>" or "<｜fim▁hole｜>" or "<SUF>")
            { s.FimSuf = i; types[i] = TokenType.Control; }
            if (s.FimMid < 0 && t is "<|fim_middle|>" or "<fim-middle>" or "<｜fim▁end｜>" or "<MID>")
            { s.FimMid = i; types[i] = TokenType.Control; }
            if (s.FimPad < 0 && t is "<|fim_pad|>" or "<fim-pad>" or "<PAD>")
            { s.FimPad = i; types[i] = TokenType.Control; }
            if (s.FimRep < 0 && t is "<|fim_repo|>" or "<|repo_name|>" or "<fim-repo>" or "<REPO>")
            { s.FimRep = i; types[i] = TokenType.Control; }
            if (s.FimSep < 0 && t == "<|file_sep|>")
            { s.FimSep = i; types[i] = TokenType.Control; }
        }

        var vocab = new Vocabulary(model, pre, tokens, scores, types, ids, merges, s);
        vocab.ApplyStripAttributes(GetString(meta, "general.name"));
        return vocab;
    }

    // llama.cpp sets lstrip/rstrip attributes by model or pre-tokenizer name.
    private void ApplyStripAttributes(string? generalName)
    {
        string name = (generalName ?? "").ToLowerInvariant();
        string pre = Pre ?? "";
        if (pre.Contains("jina-v2-de", StringComparison.Ordinal) || pre.Contains("jina-v2-es", StringComparison.Ordinal)
            || pre.Contains("jina-v2-code", StringComparison.Ordinal))
        {
            if (_ids.TryGetValue("<mask>", out int m)) _strip[m] |= Strip.Left;
        }
        else if (name.Contains("phi-3", StringComparison.Ordinal) || name.Contains("phi3", StringComparison.Ordinal))
        {
            foreach (int id in _specialTokens) _strip[id] |= Strip.Right;
            if (_ids.TryGetValue("</s>", out int e)) _strip[e] |= Strip.Right;
            foreach (string t in (ReadOnlySpan<string>)["<unk>", "<s>", "<|endoftext|>"])
                if (_ids.TryGetValue(t, out int id)) _strip[id] &= ~Strip.Right;
        }
    }

    /// <summary>The token's text as stored in the vocabulary (SPM spaces appear as U+2581).</summary>
    public string GetToken(int id) => _tokens[CheckId(id)];

    /// <summary>The token's score (0 when the file has no scores).</summary>
    public float GetScore(int id) => _scores[CheckId(id)];

    /// <summary>The token's type as llama.cpp uses it (EOG/FIM-looking tokens are forced to Control).</summary>
    public TokenType GetTokenType(int id) => _types[CheckId(id)];

    /// <summary>
    /// True for end-of-generation tokens, as llama.cpp's special_eog_ids: EOS, EOT, EOM, FIM pad/repo/separator,
    /// and tokens with the texts &lt;|eot_id|&gt;, &lt;|im_end|&gt;, &lt;|end|&gt;, &lt;end_of_turn&gt;,
    /// &lt;|endoftext|&gt;, &lt;|eom_id|&gt;, &lt;EOT&gt;; plus control/user-defined &lt;/s&gt; and
    /// &lt;|end_of_text|&gt; (as later llama.cpp versions do).
    /// </summary>
    public bool IsEndOfGeneration(int id) => _eog.Contains(id);

    /// <summary>Looks a token up by its exact text.</summary>
    public bool TryGetId(string token, out int id)
    {
        ArgumentNullException.ThrowIfNull(token);
        return _ids.TryGetValue(token, out id);
    }

    /// <summary>Looks a token up by its exact text, without allocating.</summary>
    public bool TryGetId(ReadOnlySpan<char> token, out int id) => _lookup.TryGetValue(token, out id);

    internal bool HasLStrip(int id) => (_strip[id] & Strip.Left) != 0;
    internal bool HasRStrip(int id) => (_strip[id] & Strip.Right) != 0;

    internal bool IsValidId(int id) => (uint)id < (uint)_tokens.Length;

    private int CheckId(int id)
    {
        if ((uint)id >= (uint)_tokens.Length)
            throw new ArgumentOutOfRangeException(nameof(id), id, $"token id must be in [0, {_tokens.Length})");
        return id;
    }

    public override string ToString() => $"{Model} vocabulary, {Count} tokens (bos {Bos}, eos {Eos}, unk {Unk})";

    // ---- metadata helpers ----

    private struct Specials
    {
        public int Bos, Eos, Unk, Eot, Eom, Sep, Pad, Mask, Linefeed;
        public int FimPre, FimSuf, FimMid, FimPad, FimRep, FimSep;
        public bool AddBos, AddEos, AddSpacePrefix, CleanSpaces, RemoveExtraWhitespaces;
    }

    private static string? GetString(IReadOnlyDictionary<string, GgufValue> meta, string key)
    {
        if (!meta.TryGetValue(key, out var v)) return null;
        return v.Value as string ?? throw new InvalidDataException($"'{key}' must be a string, but it is {v.Type}");
    }

    private static bool? GetBool(IReadOnlyDictionary<string, GgufValue> meta, string key)
    {
        if (!meta.TryGetValue(key, out var v)) return null;
        if (v.Type == GgufValueType.Bool || v.IsInteger) return v.AsBool();
        throw new InvalidDataException($"'{key}' must be a bool, but it is {v.Type}");
    }

    private static int ReadId(IReadOnlyDictionary<string, GgufValue> meta, string key, int n, int current)
    {
        if (!meta.TryGetValue(key, out var v)) return current;
        if (!v.IsInteger) throw new InvalidDataException($"'{key}' must be an integer token id, but it is {v.Type}");
        if (v.Value is ulong u && u > long.MaxValue) return current;
        long id = v.AsInt64();
        return id >= 0 && id < n ? (int)id : current; // out of range (e.g. 0xFFFFFFFF): keep the default
    }

    private static float[]? ReadFloats(IReadOnlyDictionary<string, GgufValue> meta, string key, int n)
    {
        if (!meta.TryGetValue(key, out var v)) return null;
        if (v.Value is not GgufArray a)
            throw new InvalidDataException($"'{key}' must be an array, but it is {v.Type}");
        if (a.Count != n)
            throw new InvalidDataException($"'{key}' has {a.Count} entries but '{KeyTokens}' has {n}");
        switch (a.Items)
        {
            case float[] f: return f;
            case double[] d: return Array.ConvertAll(d, x => (float)x);
            default:
                throw new InvalidDataException($"'{key}' must be an array of floats, but its elements are {a.ElementType}");
        }
    }

    private static int[]? ReadInts(IReadOnlyDictionary<string, GgufValue> meta, string key, int n)
    {
        if (!meta.TryGetValue(key, out var v)) return null;
        if (v.Value is not GgufArray a)
            throw new InvalidDataException($"'{key}' must be an array, but it is {v.Type}");
        if (a.Count != n)
            throw new InvalidDataException($"'{key}' has {a.Count} entries but '{KeyTokens}' has {n}");
        if (a.Items is int[] ints) return ints;
        var result = new int[n];
        try
        {
            for (int i = 0; i < n; i++) result[i] = Convert.ToInt32(a.Items.GetValue(i), System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is InvalidCastException or FormatException or OverflowException)
        {
            throw new InvalidDataException($"'{key}' must be an array of integers, but its elements are {a.ElementType}", e);
        }
        return result;
    }
}
