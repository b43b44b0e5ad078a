using System.Text;
using System.Text.Json;
using Cria.Tokenizers;
using Xunit;
using static Cria.Tests.Tokenizers.TokenizerTestData;

namespace Cria.Tests.Tokenizers;

/// <summary>
/// The prompt tokens, pieces and texts llama.cpp recorded for stories260K (refdata/README.md, "Golden outputs").
/// The harness called llama_tokenize(add_special=true, parse_special=false), llama_token_to_piece(special=true),
/// generated_text = llama_detokenize(generated, remove_special=false, unparse_special=false) and
/// full_text = llama_detokenize(prompt tokens + generated, remove_special=true, unparse_special=false).
/// </summary>
public class GoldenPromptTests
{
    public static TheoryData<string> CaseNames => new()
    {
        "empty", "single_space", "once_upon_a_time", "digits_punct", "whitespace", "unicode", "long_story",
    };

    private static JsonElement Case(JsonDocument doc, string name)
    {
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
            if (c.GetProperty("name").GetString() == name) return c;
        throw new Xunit.Sdk.XunitException($"golden case '{name}' not found");
    }

    private static string Utf8(string hex) => new UTF8Encoding(false, true).GetString(Convert.FromHexString(hex));

    [SkippableTheory]
    [MemberData(nameof(CaseNames))]
    public void PromptTokens_MatchLlamaCpp(string name)
    {
        var tok = Tokenizer(StoriesModel);
        using var doc = ReadJson(StoriesGolden);
        var c = Case(doc, name);
        string prompt = Utf8(c.GetProperty("prompt_hex").GetString()!);
        Assert.Equal(c.GetProperty("prompt").GetString(), prompt);

        Assert.Equal(Ints(c.GetProperty("tokens")), tok.Encode(prompt, addSpecial: true, parseSpecial: false));
        Assert.Equal(Ints(c.GetProperty("tokens_without_bos")), tok.Encode(prompt, addSpecial: false));
        Assert.Equal(c.GetProperty("n_prompt_tokens").GetInt32(), tok.Encode(prompt).Length);
    }

    [SkippableTheory]
    [MemberData(nameof(CaseNames))]
    public void TokenPieces_MatchLlamaCpp(string name)
    {
        var tok = Tokenizer(StoriesModel);
        using var doc = ReadJson(StoriesGolden);
        var c = Case(doc, name);
        int[] tokens = Ints(c.GetProperty("tokens"));
        string[] pieces = c.GetProperty("token_pieces_hex").EnumerateArray().Select(e => e.GetString()!).ToArray();
        Assert.Equal(pieces.Length, tokens.Length);
        for (int i = 0; i < tokens.Length; i++)
            Assert.Equal(pieces[i], Convert.ToHexString(tok.TokenToPiece(tokens[i], special: true)), ignoreCase: true);
    }

    [SkippableTheory]
    [MemberData(nameof(CaseNames))]
    public void Decode_RoundTripsAndMatchesRecordedTexts(string name)
    {
        var tok = Tokenizer(StoriesModel);
        using var doc = ReadJson(StoriesGolden);
        var c = Case(doc, name);
        string prompt = Utf8(c.GetProperty("prompt_hex").GetString()!);
        int[] tokens = Ints(c.GetProperty("tokens"));
        int[] withoutBos = Ints(c.GetProperty("tokens_without_bos"));
        int[] generated = Ints(c.GetProperty("generated_tokens"));

        // Without BOS, llama_detokenize drops the dummy-prefix space of the first token: the prompt comes back.
        Assert.Equal(prompt, tok.Decode(withoutBos));
        Assert.Equal(prompt, tok.Decode(withoutBos, removeSpecial: true, unparseSpecial: false));
        // With BOS and remove_special, BOS goes and the first token keeps its space.
        Assert.Equal(prompt.Length == 0 ? "" : " " + prompt, tok.Decode(tokens, removeSpecial: true));
        // With BOS kept and unparse_special, "<s>" is printed and the space stays too.
        Assert.Equal("<s>" + (prompt.Length == 0 ? "" : " " + prompt), tok.Decode(tokens, removeSpecial: false, unparseSpecial: true));
        // With BOS kept but not printed, BOS still used up the one-space strip.
        Assert.Equal(prompt.Length == 0 ? "" : " " + prompt, tok.Decode(tokens, removeSpecial: false, unparseSpecial: false));

        // generated_text: llama_detokenize(generated, remove_special=false, unparse_special=false), exact bytes
        Assert.Equal(c.GetProperty("generated_text_hex").GetString(),
            Convert.ToHexString(tok.DecodeToBytes(generated, removeSpecial: false, unparseSpecial: false)), ignoreCase: true);

        // full_text: prompt tokens (with BOS) + generated, remove_special=true
        string? fullText = c.GetProperty("full_text").GetString();
        Assert.NotNull(fullText);
        Assert.Equal(fullText, tok.Decode(tokens.Concat(generated), removeSpecial: true, unparseSpecial: false));
    }

    [SkippableTheory]
    [MemberData(nameof(CaseNames))]
    public void Streaming_GeneratedTokens_GiveGeneratedText(string name)
    {
        var tok = Tokenizer(StoriesModel);
        using var doc = ReadJson(StoriesGolden);
        var c = Case(doc, name);
        int[] generated = Ints(c.GetProperty("generated_tokens"));
        string expected = Utf8(c.GetProperty("generated_text_hex").GetString()!);

        // Same flags as the recorded llama_detokenize call.
        var stream = new StreamingDetokenizer(tok, removeSpecial: false, unparseSpecial: false);
        var sb = new StringBuilder();
        foreach (int id in generated) sb.Append(stream.Append(id));
        sb.Append(stream.Flush());
        Assert.Equal(expected, sb.ToString());

        // As a continuation of the prompt (llama-cli style) nothing is stripped: prompt + continuation == full_text.
        var cont = new StreamingDetokenizer(tok, unparseSpecial: false, continuation: true);
        var full = new StringBuilder(tok.Decode(Ints(c.GetProperty("tokens")), removeSpecial: true, unparseSpecial: false));
        foreach (int id in generated) full.Append(cont.Append(id));
        full.Append(cont.Flush());
        Assert.Equal(c.GetProperty("full_text").GetString(), full.ToString());
    }

    [SkippableFact]
    public void Streaming_UnicodePrompt_EmitsCatOnlyWhenComplete()
    {
        var tok = Tokenizer(StoriesModel);
        using var doc = ReadJson(StoriesGolden);
        var c = Case(doc, "unicode");
        int[] ids = Ints(c.GetProperty("tokens_without_bos"));
        string prompt = Utf8(c.GetProperty("prompt_hex").GetString()!);

        // 🐱 = F0 9F 90 B1 = byte tokens <0xF0> <0x9F> <0x90> <0xB1> = ids 243 162 147 180
        int start = ids.AsSpan().IndexOf([243, 162, 147, 180]);
        Assert.True(start > 0);

        var stream = new StreamingDetokenizer(tok);
        var chunks = ids.Select(stream.Append).ToList();
        chunks.Add(stream.Flush());
        Assert.Equal(prompt, string.Concat(chunks));
        Assert.Equal("", chunks[start]);
        Assert.Equal("", chunks[start + 1]);
        Assert.Equal("", chunks[start + 2]);
        Assert.Equal("🐱", chunks[start + 3]);
        Assert.DoesNotContain(chunks, s => s.Contains('\uFFFD'));
        // é is a whole token (485); ï is split over <0xC3> <0xAF> (ids 198 178) and appears with the second byte
        int i = ids.AsSpan().IndexOf([198, 178]);
        Assert.Equal("", chunks[i]);
        Assert.Equal("ï", chunks[i + 1]);
    }
}
