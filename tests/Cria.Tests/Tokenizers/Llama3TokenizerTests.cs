using System.Text;
using System.Text.Json;
using Cria.Tokenizers;
using Xunit;
using static Cria.Tests.Tokenizers.TokenizerTestData;

namespace Cria.Tests.Tokenizers;

/// <summary>
/// Llama 3 (byte-level BPE, pre-tokenizer llama-bpe) against llama.cpp's test file, tiktoken-generated reference ids
/// and Meta's own test vectors, with the vocabulary converted from tokenizer.json by HfTokenizerConverter.
/// </summary>
public class Llama3TokenizerTests
{
    private static void AssertAll(ITokenizer tok, IEnumerable<(string Text, int[] Ids)> cases, int expectedCount,
        bool addSpecial = false, bool parseSpecial = false)
    {
        var failures = new StringBuilder();
        int n = 0;
        foreach (var (text, ids) in cases)
        {
            n++;
            int[] got = tok.Encode(text, addSpecial, parseSpecial);
            if (!got.AsSpan().SequenceEqual(ids))
                failures.AppendLine($"\"{Escape(text)}\": expected {Show(ids)}, got {Show(got)}");
        }
        Assert.Equal(expectedCount, n);
        Assert.True(failures.Length == 0, failures.ToString());
    }

    [SkippableFact]
    public void Llama3Reference_180Cases_ExactIds()
    {
        // Special-token literals in these texts (e.g. "<|eot_id|>") are ordinary text: parseSpecial false.
        AssertAll(Llama3TestData.Tokenizer(), Llama3TestData.ReferenceCases(), expectedCount: 180);
    }

    [SkippableFact]
    public void LlamaBpe_VocabTestFile_ExactIds()
    {
        AssertAll(Llama3TestData.Tokenizer(), ReadInpOut(Llama3TestData.LlamaBpeInp, Llama3TestData.LlamaBpeOut), expectedCount: 46);
    }

    [SkippableFact]
    public void SpecialAllowedAll_ParseSpecial_ExactIds()
    {
        var tok = Llama3TestData.Tokenizer();
        using JsonDocument doc = ReadJson(Llama3TestData.ReferenceJson);
        var cases = doc.RootElement.GetProperty("special_allowed_all").EnumerateArray()
            .Select(c => (c.GetProperty("text").GetString()!, Ints(c.GetProperty("ids")))).ToList();
        AssertAll(tok, cases, expectedCount: 2, parseSpecial: true);
        // without parseSpecial the same literals are plain text
        foreach (var (text, ids) in cases)
            Assert.DoesNotContain(tok.Encode(text, addSpecial: false), id => id >= 128000);
    }

    [SkippableFact]
    public void Vocabulary_AsLlamaCppSetsItUp()
    {
        var tok = Llama3TestData.Tokenizer();
        Vocabulary v = tok.Vocabulary;
        Assert.Equal(128256, v.Count);
        Assert.Equal("gpt2", v.Model);
        Assert.Equal("llama-bpe", v.Pre);
        Assert.Equal(128000, v.Bos);
        Assert.Equal(128001, v.Eos);
        Assert.Equal(128009, v.Eot); // detected from the text <|eot_id|>
        Assert.True(v.AddBos);
        Assert.False(v.AddEos);
        Assert.False(v.AddSpacePrefix);
        Assert.True(v.CleanSpaces); // llama.cpp keeps clean_spaces on for llama-bpe
        Assert.Equal(280147, v.Merges!.Count);
        Assert.Equal(TokenType.Normal, v.GetTokenType(0));
        Assert.Equal(TokenType.Normal, v.GetTokenType(127999));
        for (int id = 128000; id < 128256; id++) Assert.Equal(TokenType.Control, v.GetTokenType(id));
        Assert.True(v.IsEndOfGeneration(128001));
        Assert.True(v.IsEndOfGeneration(128009));
        Assert.Equal(BpePreTokenizerKind.Llama3, tok.PreTokenizer);
        Assert.True(tok.IgnoreMerges);
        Assert.Equal(280147, tok.MergeCount);
    }

    [SkippableFact]
    public void MetaVectors_BosEncodeDecodeAndChat()
    {
        var tok = Llama3TestData.Tokenizer();
        using JsonDocument doc = ReadJson(Llama3TestData.ReferenceJson);
        JsonElement meta = doc.RootElement.GetProperty("meta_llama3_test_tokenizer");

        // encode with bos and eos: llama_tokenize adds BOS only (add_eos_token is false); EOS is appended by hand
        foreach (JsonElement c in meta.GetProperty("encode_bos_eos").EnumerateArray())
        {
            int[] expected = Ints(c.GetProperty("ids"));
            string text = c.GetProperty("text").GetString()!;
            Assert.True(c.GetProperty("bos").GetBoolean() && c.GetProperty("eos").GetBoolean());
            int[] got = [.. tok.Encode(text, addSpecial: true), tok.Vocabulary.Eos];
            Assert.Equal(expected, got);
            Assert.Equal(expected[..^1], tok.Encode(text)); // default addSpecial = true
            Assert.Equal(expected[1..^1], tok.Encode(text, addSpecial: false));
        }

        foreach (JsonElement c in meta.GetProperty("decode").EnumerateArray())
        {
            int[] ids = Ints(c.GetProperty("ids"));
            string text = c.GetProperty("text").GetString()!;
            Assert.Equal(text, tok.Decode(ids));
            Assert.Equal("This is a test sentence.<|end_of_text|>", tok.Decode(ids, removeSpecial: true));
            Assert.Equal("This is a test sentence.", tok.Decode(ids, removeSpecial: true, unparseSpecial: false));
        }

        static string Header(string role) => "<|start_header_id|>" + role + "<|end_header_id|>\n\n";
        foreach (JsonElement c in meta.GetProperty("chat_encode_message").EnumerateArray())
        {
            JsonElement m = c.GetProperty("message");
            string text = Header(m.GetProperty("role").GetString()!) + m.GetProperty("content").GetString()!.Trim() + "<|eot_id|>";
            Assert.Equal(Ints(c.GetProperty("ids")), tok.Encode(text, addSpecial: false, parseSpecial: true));
        }
        foreach (JsonElement c in meta.GetProperty("chat_encode_dialog_prompt").EnumerateArray())
        {
            var sb = new StringBuilder();
            foreach (JsonElement m in c.GetProperty("dialog").EnumerateArray())
                sb.Append(Header(m.GetProperty("role").GetString()!)).Append(m.GetProperty("content").GetString()!.Trim()).Append("<|eot_id|>");
            sb.Append(Header("assistant"));
            int[] expected = Ints(c.GetProperty("ids"));
            Assert.Equal(expected, tok.Encode(sb.ToString(), addSpecial: true, parseSpecial: true));
            Assert.Equal(expected, tok.Encode("<|begin_of_text|>" + sb, addSpecial: false, parseSpecial: true));
        }
    }

    [SkippableFact]
    public void RoundTrip_PiecesReproduceText_DecodeAppliesCleanSpaces()
    {
        var tok = Llama3TestData.Tokenizer();
        var cases = Llama3TestData.ReferenceCases().Select(c => c.Text)
            .Concat(ReadInpOut(Llama3TestData.LlamaBpeInp, Llama3TestData.LlamaBpeOut).Select(c => c.Text)).ToList();
        int changedByCleanSpaces = 0;
        foreach (string text in cases)
        {
            int[] ids = tok.Encode(text, addSpecial: false);
            // the concatenated pieces are exactly the text (byte-level BPE is lossless)
            byte[] pieces = ids.SelectMany(id => tok.TokenToPiece(id)).ToArray();
            Assert.True(Encoding.UTF8.GetBytes(text).AsSpan().SequenceEqual(pieces), $"pieces of \"{Escape(text)}\"");
            // llama_detokenize also runs clean_spaces (on for llama-bpe): " ." -> "." etc.
            byte[] cleaned = Encoding.UTF8.GetBytes(text);
            int n = Detokenization.CleanSpaces(cleaned);
            string expected = Encoding.UTF8.GetString(cleaned, 0, n);
            if (expected != text) changedByCleanSpaces++;
            Assert.Equal(expected, tok.Decode(ids));
            // with BOS: remove_special drops it and nothing else changes (no space prefix in BPE vocabularies)
            Assert.Equal(expected, tok.Decode(tok.Encode(text), removeSpecial: true));
            Assert.Equal("<|begin_of_text|>" + expected, tok.Decode(tok.Encode(text)));
            // streaming prints the plain pieces (as llama-cli does): no clean_spaces
            var stream = new StreamingDetokenizer(tok);
            var sb = new StringBuilder();
            foreach (int id in ids) sb.Append(stream.Append(id));
            sb.Append(stream.Flush());
            Assert.Equal(text, sb.ToString());
        }
        Assert.Equal(226, cases.Count);
        Assert.True(changedByCleanSpaces > 0);
        Assert.Equal("Hello, world! It's", tok.Decode(tok.Encode("Hello , world ! It 's", addSpecial: false)));
    }

    [SkippableFact]
    public void TokenToPiece_BytesAndSpecialFlag()
    {
        var tok = Llama3TestData.Tokenizer();
        Assert.Equal(" Hello"u8.ToArray(), tok.TokenToPiece(22691));
        Assert.Equal("\n\n"u8.ToArray(), tok.TokenToPiece(271));
        Assert.Equal("<|begin_of_text|>"u8.ToArray(), tok.TokenToPiece(128000));
        Assert.Empty(tok.TokenToPiece(128000, special: false));
        Assert.Empty(tok.TokenToPiece(128009, special: false));
        // a lone continuation byte token
        int id = tok.Encode("\u00e9", addSpecial: false).Single(); // "é" is one token
        Assert.Equal([0xC3, 0xA9], tok.TokenToPiece(id));
        Assert.Throws<ArgumentOutOfRangeException>(() => tok.TokenToPiece(128256));
        Assert.Throws<ArgumentOutOfRangeException>(() => tok.TokenToPiece(-1));
    }

    [SkippableFact]
    public void Streaming_HoldsBackSplitUtf8()
    {
        var tok = Llama3TestData.Tokenizer();
        // 🦙 is split over several byte tokens
        int[] ids = tok.Encode("a🦙b", addSpecial: false);
        Assert.True(ids.Length > 3);
        var s = new StreamingDetokenizer(tok);
        var outputs = ids.Select(s.Append).ToList();
        Assert.Equal("a", outputs[0]);
        Assert.Equal("a🦙b", string.Concat(outputs) + s.Flush());
        Assert.Contains(outputs, o => o.Length == 0); // held back while the character is incomplete
    }

    [SkippableFact]
    public void EdgeCases()
    {
        var tok = Llama3TestData.Tokenizer();
        Assert.Empty(tok.Encode("", addSpecial: false));
        Assert.Equal([128000], tok.Encode(""));
        // unpaired surrogates are treated as U+FFFD, as UTF-8 conversion would make them
        Assert.Equal(tok.Encode("a\uFFFDb", addSpecial: false), tok.Encode("a\uD800b", addSpecial: false));
        // parseSpecial with specials at the edges and back to back
        Assert.Equal([128009, 128009], tok.Encode("<|eot_id|><|eot_id|>", addSpecial: false, parseSpecial: true));
        Assert.Equal([128000, 128000], tok.Encode("<|begin_of_text|>", addSpecial: true, parseSpecial: true));
        // a long run of one character (one pre-tokenizer word, not cached)
        string spaces = new(' ', 5000);
        int[] ids = tok.Encode(spaces + "x", addSpecial: false);
        Assert.Equal(spaces + "x", tok.Decode(ids));
        string letters = new('a', 3000);
        Assert.Equal(letters, tok.Decode(tok.Encode(letters, addSpecial: false)));
    }

    [SkippableFact]
    public void CachedAndParallelEncodingAgree()
    {
        var tok = Llama3TestData.Tokenizer();
        string corpus = File.ReadAllText(RefData.Require("corpus/public-domain/melville_moby_dick.txt"))[..60_000];
        string[] chunks = Enumerable.Range(0, 24).Select(i => corpus.Substring(i * 2_500, 2_500)).ToArray();
        int[][] sequential = chunks.Select(c => tok.Encode(c, addSpecial: false)).ToArray();
        int[][] again = chunks.Select(c => tok.Encode(c, addSpecial: false)).ToArray(); // now from the word cache
        var parallel = new int[chunks.Length][];
        Parallel.For(0, chunks.Length, i => parallel[i] = tok.Encode(chunks[i], addSpecial: false));
        for (int i = 0; i < chunks.Length; i++)
        {
            Assert.Equal(sequential[i], again[i]);
            Assert.Equal(sequential[i], parallel[i]);
            Assert.Equal(chunks[i], Encoding.UTF8.GetString(sequential[i].SelectMany(id => tok.TokenToPiece(id)).ToArray()));
        }
        // an uncached tokenizer gives the same ids
        var fresh = new ByteLevelBpeTokenizer(tok.Vocabulary);
        Assert.Equal(sequential[3], fresh.Encode(chunks[3], addSpecial: false));
    }
}
