using Cria.Tokenizers;
using System.Globalization;
using System.Text.Json;
using Cria.Gguf;

namespace Cria.Conversion;

/// <summary>
/// Converts a SentencePiece model (the <c>tokenizer.model</c> of Llama 1/2 and Code Llama), together with a Hugging
/// Face folder's <c>added_tokens.json</c> and <c>tokenizer_config.json</c>, into the <c>tokenizer.*</c> GGUF metadata
/// that llama.cpp's <c>convert_hf_to_gguf.py</c> writes for the SentencePiece ("llama") vocabulary
/// (<c>_create_vocab_sentencepiece</c> + <c>_set_vocab_sentencepiece</c> + gguf-py's <c>SpecialVocab</c>).
/// </summary>
/// <remarks>
/// <para>Tokens: <c>vocab_size</c> entries (config.json's, or the number of pieces), first all "[PAD{id}]" with score
/// -10000 and type UNUSED 5; the pieces then fill their ids with their own text and score, typed UNKNOWN 2, CONTROL 3,
/// UNUSED 5 or BYTE 6 as SentencePiece says and NORMAL 1 otherwise (user-defined pieces too: the Python converter asks
/// <c>IsUnknown / IsControl / IsUnused / IsByte</c> only). <c>added_tokens.json</c> entries overwrite their id with
/// score -1000 and type USER_DEFINED 4 (ids past vocab_size are skipped); then <c>tokenizer_config.json</c>'s
/// <c>added_tokens_decoder</c> entries overwrite theirs with score -1000, CONTROL when marked special or looking special
/// ("&lt;|...|&gt;" and the like), else USER_DEFINED with U+2581 turned into spaces.</para>
/// <para>Written: <c>tokenizer.ggml.model</c> "llama", <c>tokenizer.ggml.pre</c> "default", tokens, scores,
/// token_type, then the special ids, <c>add_bos_token</c> / <c>add_eos_token</c> and chat template of
/// <see cref="HfSpecialVocab"/> (tokenizer_config.json's token texts looked up among tokenizer.json's added tokens when
/// the folder also has a tokenizer.json, then config.json's <c>{type}_token_id</c>).</para>
/// <para>Cria's additions, for ids the Python converter would leave unset: generation_config.json's ids (see
/// <see cref="HfGenerationConfig"/>), then the SentencePiece model's own <c>trainer_spec</c> unk/bos/eos/pad ids (for
/// Llama 2 these are 0/1/2/none, which are llama.cpp's defaults for this vocabulary, so a folder with nothing but
/// tokenizer.model converts to exactly llama.cpp's <c>ggml-vocab-llama-spm.gguf</c> vocabulary). When the model's
/// <c>normalizer_spec.add_dummy_prefix</c> is off, <c>tokenizer.ggml.add_space_prefix</c> = false is written (llama.cpp
/// assumes true for this vocabulary). <c>remove_extra_whitespaces</c> is read but not written: llama.cpp's SentencePiece
/// tokenizer does not use it. Unigram (and word/char) models are rejected: llama.cpp's "llama" tokenizer is
/// SentencePiece BPE. Token texts must be unique (Cria's vocabulary loader requires it).</para>
/// </remarks>
public static class SentencePieceVocabConverter
{
    private const int MaxVocabulary = 1 << 24;


    /// <summary>Adds the tokenizer metadata of <paramref name="tokenizerModelPath"/> to <paramref name="writer"/>.</summary>
    /// <param name="tokenizerConfigPath">tokenizer_config.json (added tokens, add_bos_token, chat template), or null</param>
    /// <param name="addedTokensPath">added_tokens.json, or null</param>
    /// <param name="vocabSize">the model's vocabulary size (pieces are padded up to it), or null for the number of pieces</param>
    /// <exception cref="SentencePieceModelException">tokenizer.model is not a well-formed SentencePiece model</exception>
    /// <exception cref="InvalidDataException">the JSON files are malformed, the model is not BPE, or the sizes disagree</exception>
    public static void AddTo(GgufWriter writer, string tokenizerModelPath, string? tokenizerConfigPath = null, string? addedTokensPath = null,
        int? vocabSize = null)
    {
        ArgumentNullException.ThrowIfNull(writer);
        var sp = SentencePieceModelFile.Read(tokenizerModelPath);
        Build(sp, vocabSize, addedTokensPath, tokenizerConfigPath, tokenizerJsonPath: null, HfTokenIds.None).WriteTo(writer);
    }

    /// <summary>
    /// Writes a vocabulary-only GGUF (no tensors; <c>general.architecture</c> "llama", <c>general.name</c>,
    /// <c>llama.vocab_size</c> and the tokenizer metadata), like llama.cpp's <c>models/ggml-vocab-llama-spm.gguf</c>.
    /// The file is written to a temporary name and renamed into place.
    /// </summary>
    public static void WriteVocabularyGguf(string tokenizerModelPath, string outputPath, string? tokenizerConfigPath = null, string name = "llama-spm")
    {
        ArgumentNullException.ThrowIfNull(outputPath);
        var sp = SentencePieceModelFile.Read(tokenizerModelPath);
        var vocab = Build(sp, null, null, tokenizerConfigPath, null, HfTokenIds.None);
        var w = new GgufWriter();
        w.Set("general.architecture", "llama");
        w.Set("general.name", name);
        w.Set("llama.vocab_size", (uint)vocab.Tokens.Length);
        vocab.WriteTo(w);
        w.Write(outputPath);
    }

    /// <summary>The converted vocabulary.</summary>
    internal sealed class Result
    {
        public required string[] Tokens;
        public required float[] Scores;
        public required int[] Types;
        public required HfSpecialVocab Special;
        public bool AddDummyPrefix = true;

        public void WriteTo(GgufWriter w)
        {
            w.Set("tokenizer.ggml.model", "llama");
            w.Set("tokenizer.ggml.pre", "default");
            w.Set("tokenizer.ggml.tokens", GgufArray.Of(Tokens));
            w.Set("tokenizer.ggml.scores", GgufArray.Of(Scores));
            w.Set("tokenizer.ggml.token_type", GgufArray.Of(Types));
            Special.WriteTo(w);
            if (!AddDummyPrefix) w.Set("tokenizer.ggml.add_space_prefix", false);
        }
    }

    /// <param name="tokenizerJsonPath">the folder's tokenizer.json (its added tokens and post-processor feed the special ids), or null</param>
    internal static Result Build(SentencePieceModelFile sp, int? vocabSize, string? addedTokensPath, string? tokenizerConfigPath,
        string? tokenizerJsonPath, HfTokenIds ids)
    {
        string src = sp.Source;
        if (sp.ModelType != SentencePieceModelType.Bpe)
            throw new InvalidDataException(
                $"{src}: a SentencePiece {sp.ModelType} model is not supported; Llama's SentencePiece vocabulary is BPE (trainer_spec.model_type 2)");
        int count = sp.Pieces.Count;
        int n = vocabSize ?? count;
        if (n > MaxVocabulary)
            throw new InvalidDataException($"a vocabulary of {n} tokens is implausible (at most {MaxVocabulary}); check config.json's vocab_size");
        if (count > n)
            throw new InvalidDataException($"{src} has {count} pieces but the model's vocab_size is {n}");

        var tokens = new string[n];
        var scores = new float[n];
        var types = new int[n];
        for (int i = 0; i < n; i++)
        {
            tokens[i] = "[PAD" + i.ToString(CultureInfo.InvariantCulture) + "]";
            scores[i] = -10000f;
            types[i] = (int)TokenType.Unused;
        }
        for (int i = 0; i < count; i++)
        {
            var p = sp.Pieces[i];
            tokens[i] = p.Piece;
            scores[i] = p.Score;
            // llama.cpp's converter keeps these four and writes every other piece (user-defined too) as normal.
            types[i] = (int)(p.Type is TokenType.Unknown or TokenType.Control or TokenType.Unused or TokenType.Byte ? p.Type : TokenType.Normal);
        }

        if (addedTokensPath != null)
        {
            using JsonDocument added = HfSpecialVocab.ParseObject(addedTokensPath, "added_tokens.json");
            foreach (JsonProperty p in added.RootElement.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.Number || !p.Value.TryGetInt64(out long id) || id < 0)
                    throw new InvalidDataException($"{addedTokensPath}: the id of \"{p.Name}\" must be a non-negative integer, not {p.Value.GetRawText()}");
                if (id >= n) continue; // the Python converter warns and skips it
                tokens[id] = p.Name;
                scores[id] = -1000f;
                types[id] = (int)TokenType.UserDefined;
            }
        }

        using JsonDocument? configDoc = tokenizerConfigPath is null ? null : HfSpecialVocab.ParseObject(tokenizerConfigPath, "tokenizer_config.json");
        JsonElement? config = configDoc?.RootElement;
        if (config is { } cfg && cfg.TryGetProperty("added_tokens_decoder", out JsonElement decoder) && decoder.ValueKind != JsonValueKind.Null)
        {
            if (decoder.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"{tokenizerConfigPath}: added_tokens_decoder must be an object mapping ids to tokens");
            foreach (JsonProperty p in decoder.EnumerateObject())
            {
                if (!int.TryParse(p.Name, NumberStyles.None, CultureInfo.InvariantCulture, out int id) || id >= n)
                    throw new InvalidDataException($"{tokenizerConfigPath}: added_tokens_decoder key \"{p.Name}\" is not a token id below the vocab_size {n}");
                if (p.Value.ValueKind != JsonValueKind.Object || !p.Value.TryGetProperty("content", out JsonElement content)
                    || content.ValueKind != JsonValueKind.String)
                    throw new InvalidDataException($"{tokenizerConfigPath}: added_tokens_decoder[\"{p.Name}\"] must be an object with a \"content\" string");
                string text = content.GetString()!;
                bool isSpecial = p.Value.TryGetProperty("special", out JsonElement flag) && flag.ValueKind == JsonValueKind.True;
                if (isSpecial || HfSpecialVocab.LooksSpecial(text))
                {
                    types[id] = (int)TokenType.Control;
                }
                else
                {
                    text = text.Replace('\u2581', ' '); // pre-normalize user-defined spaces
                    types[id] = (int)TokenType.UserDefined;
                }
                scores[id] = -1000f;
                tokens[id] = text;
            }
        }

        var seen = new Dictionary<string, int>(n, StringComparer.Ordinal);
        for (int id = 0; id < n; id++)
            if (!seen.TryAdd(tokens[id], id))
                throw new InvalidDataException($"{src}: tokens {seen[tokens[id]]} and {id} have the same text \"{tokens[id]}\" (after added_tokens.json / tokenizer_config.json)");

        // Special ids: tokenizer_config.json's texts among tokenizer.json's added tokens (when there is a tokenizer.json),
        // then config.json, then generation_config.json, then the SentencePiece model's own ids.
        using JsonDocument? tokenizerJson = tokenizerJsonPath is null ? null : HfSpecialVocab.ParseObject(tokenizerJsonPath, "tokenizer.json");
        var addedTokens = tokenizerJson is null ? [] : ReadAddedTokens(tokenizerJson.RootElement, tokenizerJsonPath!);
        var special = HfSpecialVocab.Load(tokenizerJson?.RootElement, addedTokens, config, tokenizerConfigPath ?? "tokenizer_config.json", ids, n);
        foreach (var (type, id) in ids.Generation) special.Set(type, id);
        special.Set("bos", sp.BosId);
        special.Set("eos", sp.EosId);
        special.Set("unk", sp.UnkId);
        special.Set("pad", sp.PadId);

        return new Result { Tokens = tokens, Scores = scores, Types = types, Special = special, AddDummyPrefix = sp.AddDummyPrefix };
    }

    // tokenizer.json's added_tokens as (id, content); entries without an integer id or string content are skipped
    private static List<(int Id, string Content)> ReadAddedTokens(JsonElement root, string path)
    {
        var result = new List<(int, string)>();
        if (!root.TryGetProperty("added_tokens", out JsonElement list) || list.ValueKind == JsonValueKind.Null) return result;
        if (list.ValueKind != JsonValueKind.Array) throw new InvalidDataException($"{path}: added_tokens must be an array");
        foreach (JsonElement a in list.EnumerateArray())
            if (a.ValueKind == JsonValueKind.Object && a.TryGetProperty("id", out JsonElement id) && id.TryGetInt32(out int v)
                && a.TryGetProperty("content", out JsonElement c) && c.ValueKind == JsonValueKind.String)
                result.Add((v, c.GetString()!));
        return result;
    }
}
