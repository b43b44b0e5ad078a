using System.Text.Json;
using Cria.Conversion;
using Cria.Gguf;
using Cria.Tests.Tokenizers;
using Cria.Tokenizers;
using Xunit;

namespace Cria.Tests.Conversion;

public sealed class HfTokenizerConverterTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "cria-hfconv-" + Guid.NewGuid().ToString("N"));

    public HfTokenizerConverterTests() => Directory.CreateDirectory(_dir);

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    private string WriteFile(string name, string content)
    {
        string p = Path.Combine(_dir, name);
        File.WriteAllText(p, content);
        return p;
    }

    private static string[] Strings(GgufFile f, string key) => (string[])f.GetArray(key)!.Items;

    [SkippableFact]
    public void Llama3_VocabularyGguf_HasLlamaCppMetadata()
    {
        string path = Llama3TestData.GgufPath();
        using var f = GgufFile.Open(path);
        Assert.Empty(f.Tensors);
        Assert.Equal("llama", f.GetString("general.architecture"));
        Assert.Equal("llama-bpe", f.GetString("general.name"));
        Assert.Equal(128256, f.GetInt("llama.vocab_size"));
        Assert.Equal("gpt2", f.GetString("tokenizer.ggml.model"));
        Assert.Equal("llama-bpe", f.GetString("tokenizer.ggml.pre"));

        string[] tokens = Strings(f, "tokenizer.ggml.tokens");
        Assert.Equal(128256, tokens.Length);
        Assert.Equal("!", tokens[0]);
        Assert.Equal("ĠHello", tokens[22691]);
        Assert.Equal("<|begin_of_text|>", tokens[128000]);
        Assert.Equal("<|eot_id|>", tokens[128009]);
        Assert.Equal("<|reserved_special_token_250|>", tokens[128255]);

        GgufArray types = f.GetArray("tokenizer.ggml.token_type")!;
        Assert.Equal(GgufValueType.Int32, types.ElementType);
        int[] t = (int[])types.Items;
        Assert.Equal(128256, t.Length);
        Assert.All(t[..128000], x => Assert.Equal(1, x));
        Assert.All(t[128000..], x => Assert.Equal(3, x));

        string[] merges = Strings(f, "tokenizer.ggml.merges");
        Assert.Equal(280147, merges.Length);
        Assert.Equal("Ġ Ġ", merges[0]);
        Assert.False(f.Metadata.ContainsKey("tokenizer.ggml.scores")); // convert_hf_to_gguf writes none for gpt2

        Assert.Equal(GgufValueType.UInt32, f.Metadata["tokenizer.ggml.bos_token_id"].Type);
        Assert.Equal(128000, f.GetInt("tokenizer.ggml.bos_token_id"));
        Assert.Equal(128001, f.GetInt("tokenizer.ggml.eos_token_id"));
        Assert.True(f.GetBool("tokenizer.ggml.add_bos_token"));
        Assert.False(f.Metadata.ContainsKey("tokenizer.ggml.add_eos_token"));

        using JsonDocument config = JsonDocument.Parse(File.ReadAllBytes(RefData.Require(Llama3TestData.TokenizerConfig)));
        Assert.Equal(config.RootElement.GetProperty("chat_template").GetString(), f.GetString("tokenizer.chat_template"));
    }

    [SkippableFact]
    public void Llama3_AddTo_WithoutConfig_FallsBackToLlama3Specials()
    {
        var w = new GgufWriter();
        HfTokenizerConverter.AddTo(w, RefData.Require(Llama3TestData.TokenizerJson), null);
        using var ms = new MemoryStream();
        w.WriteTo(ms);
        using var f = GgufFile.FromBytes(ms.ToArray());
        Assert.Equal(128000, f.GetInt("tokenizer.ggml.bos_token_id"));
        Assert.Equal(128001, f.GetInt("tokenizer.ggml.eos_token_id"));
        Assert.True(f.GetBool("tokenizer.ggml.add_bos_token"));
        Assert.Null(f.GetString("tokenizer.chat_template"));
        Assert.Null(f.GetString("general.architecture")); // AddTo writes only tokenizer keys
    }

    // A small byte-level BPE tokenizer.json: letters a/b/c, space, merges, a gap at id 6, special and
    // non-special added tokens.
    private const string SmallTokenizer = """
    {
      "version": "1.0",
      "added_tokens": [
        { "id": 7, "content": "<s>", "special": true, "normalized": false },
        { "id": 8, "content": "<|tool|>", "special": false, "normalized": false },
        { "id": 9, "content": "my\u2581word", "special": false, "normalized": true }
      ],
      "normalizer": null,
      "pre_tokenizer": PRE_TOKENIZER,
      "post_processor": { "type": "TemplateProcessing", "single": [ { "SpecialToken": { "id": "<s>", "type_id": 0 } }, { "Sequence": { "id": "A", "type_id": 0 } } ] },
      "decoder": { "type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true },
      "model": { "type": "BPE", "dropout": null, "unk_token": null, "byte_fallback": false, "ignore_merges": true,
        "vocab": { "a": 0, "b": 1, "c": 2, "Ġ": 3, "ab": 4, "Ġab": 5 },
        "merges": [ ["a", "b"], ["Ġ", "ab"], ["a b", "c"] ] }
    }
    """;

    private const string Llama3PreTokenizer = """
        { "type": "Sequence", "pretokenizers": [
          { "type": "Split", "pattern": { "Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" }, "behavior": "Isolated", "invert": false },
          { "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false } ] }
        """;

    private static string Small(string preTokenizer = Llama3PreTokenizer) => SmallTokenizer.Replace("PRE_TOKENIZER", preTokenizer);

    [Fact]
    public void SmallTokenizer_TypesGapsMergesAndSpecials()
    {
        string json = WriteFile("tokenizer.json", Small());
        string config = WriteFile("tokenizer_config.json", """
        { "bos_token": { "content": "<s>", "lstrip": false }, "eos_token": "<s>", "add_bos_token": false,
          "chat_template": [ { "name": "default", "template": "{{ x }}" }, { "name": "tool use", "template": "{{ y }}" } ] }
        """);
        string output = Path.Combine(_dir, "vocab.gguf");
        HfTokenizerConverter.WriteVocabularyGguf(json, config, output, name: "small");
        Assert.Equal(new[] { "tokenizer.json", "tokenizer_config.json", "vocab.gguf" }, Directory.GetFiles(_dir).Select(p => Path.GetFileName(p)).Order());

        using var f = GgufFile.Open(output);
        Assert.Equal("small", f.GetString("general.name"));
        Assert.Equal(["a", "b", "c", "Ġ", "ab", "Ġab", "[PAD6]", "<s>", "<|tool|>", "my word"], Strings(f, "tokenizer.ggml.tokens"));
        // normal, gap = unused, special = control, "<|...|>" looks special = control, other added = user-defined
        Assert.Equal([1, 1, 1, 1, 1, 1, 5, 3, 3, 4], (int[])f.GetArray("tokenizer.ggml.token_type")!.Items);
        Assert.Equal(["a b", "Ġ ab", "aĠb c"], Strings(f, "tokenizer.ggml.merges"));
        Assert.Equal(7, f.GetInt("tokenizer.ggml.bos_token_id"));
        Assert.Equal(7, f.GetInt("tokenizer.ggml.eos_token_id"));
        Assert.False(f.GetBool("tokenizer.ggml.add_bos_token")); // the config overrides the post-processor
        Assert.Equal("{{ x }}", f.GetString("tokenizer.chat_template"));
        Assert.Equal("{{ y }}", f.GetString("tokenizer.chat_template.tool_use"));
        Assert.Equal(["tool_use"], Strings(f, "tokenizer.chat_templates"));

        // and the vocabulary tokenizes with it
        var tok = TokenizerFactory.Create(Vocabulary.FromGguf(f));
        Assert.Equal([0, 5, 3, 2], tok.Encode("a ab c", addSpecial: true)); // BOS off; " c" has no merge: Ġ + c
        Assert.Equal([4, 8, 9], tok.Encode("ab<|tool|>my word", addSpecial: false, parseSpecial: true));
        Assert.Equal([9, 0], tok.Encode("my worda", addSpecial: false)); // user-defined tokens are always split out
        Assert.Equal("a ab c<s>", tok.Decode([0, 5, 3, 2, 7]));
    }

    [Fact]
    public void SmallTokenizer_WithoutConfig_UsesTemplateProcessing()
    {
        string json = WriteFile("tokenizer.json", Small());
        var w = new GgufWriter();
        HfTokenizerConverter.AddTo(w, json, null);
        using var ms = new MemoryStream();
        w.WriteTo(ms);
        using var f = GgufFile.FromBytes(ms.ToArray());
        Assert.Equal(7, f.GetInt("tokenizer.ggml.bos_token_id"));
        Assert.True(f.GetBool("tokenizer.ggml.add_bos_token"));
        Assert.Null(f.GetInt("tokenizer.ggml.eos_token_id"));
    }

    [Fact]
    public void Gpt2StylePreTokenizer_IsGpt2()
    {
        string json = WriteFile("tokenizer.json", Small("""{ "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true }"""));
        var w = new GgufWriter();
        HfTokenizerConverter.AddTo(w, json, null);
        using var ms = new MemoryStream();
        w.WriteTo(ms);
        using var f = GgufFile.FromBytes(ms.ToArray());
        Assert.Equal("gpt-2", f.GetString("tokenizer.ggml.pre"));
        var tok = (ByteLevelBpeTokenizer)TokenizerFactory.Create(Vocabulary.FromGguf(f));
        Assert.Equal(BpePreTokenizerKind.Gpt2, tok.PreTokenizer);
        Assert.False(tok.IgnoreMerges);
        Assert.Equal([5], tok.Encode(" ab", addSpecial: false)); // merged: a+b, then Ġ+ab
    }

    [Theory]
    [InlineData("Unigram", "'Unigram' is not supported")]
    [InlineData("WordPiece", "'WordPiece' is not supported")]
    public void UnknownModelType_Throws(string type, string message)
    {
        string json = WriteFile("tokenizer.json", Small().Replace("\"type\": \"BPE\"", $"\"type\": \"{type}\""));
        var e = Assert.Throws<InvalidDataException>(() => HfTokenizerConverter.AddTo(new GgufWriter(), json, null));
        Assert.Contains(message, e.Message);
        Assert.Contains(json, e.Message);
    }

    [Fact]
    public void InvalidInputs_ThrowInvalidData()
    {
        string bad = WriteFile("bad.json", "{ \"model\": { \"type\": \"BPE\", ");
        var e = Assert.Throws<InvalidDataException>(() => HfTokenizerConverter.AddTo(new GgufWriter(), bad, null));
        Assert.Contains("not valid JSON", e.Message);

        string array = WriteFile("array.json", "[1, 2]");
        Assert.Throws<InvalidDataException>(() => HfTokenizerConverter.AddTo(new GgufWriter(), array, null));

        string fallback = WriteFile("fallback.json", Small().Replace("\"byte_fallback\": false", "\"byte_fallback\": true"));
        e = Assert.Throws<InvalidDataException>(() => HfTokenizerConverter.AddTo(new GgufWriter(), fallback, null));
        Assert.Contains("byte_fallback", e.Message);

        string otherRegex = WriteFile("regex.json", Small().Replace("\\\\p{N}{1,3}", "\\\\p{N}"));
        e = Assert.Throws<InvalidDataException>(() => HfTokenizerConverter.AddTo(new GgufWriter(), otherRegex, null));
        Assert.Contains("unsupported pre-tokenizer", e.Message);

        string badId = WriteFile("badid.json", Small().Replace("\"ab\": 4", "\"ab\": -4"));
        e = Assert.Throws<InvalidDataException>(() => HfTokenizerConverter.AddTo(new GgufWriter(), badId, null));
        Assert.Contains("model.vocab[\"ab\"]", e.Message);

        string dupId = WriteFile("dupid.json", Small().Replace("\"ab\": 4", "\"ab\": 3"));
        Assert.Throws<InvalidDataException>(() => HfTokenizerConverter.AddTo(new GgufWriter(), dupId, null));

        string json = WriteFile("tokenizer.json", Small());
        string badConfig = WriteFile("tokenizer_config.json", "{ \"bos_token\": ");
        e = Assert.Throws<InvalidDataException>(() => HfTokenizerConverter.AddTo(new GgufWriter(), json, badConfig));
        Assert.Contains("tokenizer_config.json", e.Message);

        Assert.Throws<FileNotFoundException>(() => HfTokenizerConverter.AddTo(new GgufWriter(), Path.Combine(_dir, "missing.json"), null));
    }

    [Fact]
    public void FailedConversion_LeavesNoOutput()
    {
        string bad = WriteFile("tokenizer.json", Small().Replace("\"type\": \"BPE\"", "\"type\": \"Unigram\""));
        string output = Path.Combine(_dir, "out.gguf");
        Assert.Throws<InvalidDataException>(() => HfTokenizerConverter.WriteVocabularyGguf(bad, null, output));
        Assert.False(File.Exists(output));
        Assert.Single(Directory.GetFiles(_dir));
    }
}
