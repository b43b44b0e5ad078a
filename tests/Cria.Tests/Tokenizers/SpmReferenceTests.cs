using Xunit;
using System.Text;
using Cria.Tokenizers;
using static Cria.Tests.Tokenizers.TokenizerTestData;

namespace Cria.Tests.Tokenizers;

/// <summary>Exact token ids against llama.cpp's tokenizer test files and independent SentencePiece output.</summary>
public class SpmReferenceTests
{
    private static void AssertAll(SentencePieceTokenizer tok, IEnumerable<(string Text, int[] Ids)> cases, bool addSpecial, int expectedCount)
    {
        var failures = new StringBuilder();
        int n = 0;
        foreach (var (text, ids) in cases)
        {
            n++;
            int[] got = tok.Encode(text, addSpecial: addSpecial);
            if (!got.AsSpan().SequenceEqual(ids))
                failures.AppendLine($"\"{Escape(text)}\": expected {Show(ids)}, got {Show(got)}");
        }
        Assert.Equal(expectedCount, n);
        Assert.True(failures.Length == 0, failures.ToString());
    }

    [SkippableFact]
    public void LlamaSpm_VocabTestFile_ExactIds()
    {
        var tok = Tokenizer(LlamaSpmVocab);
        AssertAll(tok, ReadInpOut(LlamaSpmVocab + ".inp", LlamaSpmVocab + ".out"), addSpecial: false, expectedCount: 46);
    }

    [SkippableFact]
    public void Stories260K_Tok512TestFile_ExactIds()
    {
        var tok = Tokenizer(StoriesModel);
        AssertAll(tok, ReadInpOut("stories260K/tok512-tokenizer-tests.inp", "stories260K/tok512-tokenizer-tests.out"),
            addSpecial: false, expectedCount: 46);
    }

    [SkippableFact]
    public void Phi3_VocabTestFile_ExactIds()
    {
        // Phi-3 uses a Llama-2-derived SPM vocab with extra user-defined/control tokens and rstrip attributes.
        var tok = Tokenizer(Phi3Vocab);
        AssertAll(tok, ReadInpOut(Phi3Vocab + ".inp", Phi3Vocab + ".out"), addSpecial: false, expectedCount: 46);
    }

    [SkippableFact]
    public void LlamaSpm_Llama2Reference_180Cases()
    {
        var tok = Tokenizer(LlamaSpmVocab);
        using var doc = ReadJson("tokenizer-tests/llama2-reference.json");
        var cases = doc.RootElement.GetProperty("cases").EnumerateArray()
            .Select(c => (c.GetProperty("text").GetString()!, Ints(c.GetProperty("ids")))).ToList();
        AssertAll(tok, cases, addSpecial: false, expectedCount: 180);
    }

    [SkippableFact]
    public void LlamaSpm_Llama2cTestVectors_WithBos()
    {
        // llama2.c's test.c vectors are for the 32000-token Llama 2 vocabulary (ids up to 28754), not for tok512.
        var tok = Tokenizer(LlamaSpmVocab);
        using var doc = ReadJson("tokenizer-tests/llama2-reference.json");
        var cases = doc.RootElement.GetProperty("llama2c_test_c").GetProperty("cases").EnumerateArray()
            .Select(c => (c.GetProperty("text").GetString()!, Ints(c.GetProperty("ids_with_bos")))).ToList();
        Assert.Contains(cases, c => c.Item2.Max() >= 512);
        AssertAll(tok, cases, addSpecial: true, expectedCount: 5);
    }

    [SkippableFact]
    public void LlamaSpm_Pieces_MatchReferencePieces()
    {
        // Each id's vocabulary text equals SentencePiece's piece string.
        var tok = Tokenizer(LlamaSpmVocab);
        using var doc = ReadJson("tokenizer-tests/llama2-reference.json");
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
        {
            int[] ids = Ints(c.GetProperty("ids"));
            string[] pieces = c.GetProperty("pieces").EnumerateArray().Select(p => p.GetString()!).ToArray();
            Assert.Equal(pieces, ids.Select(tok.Vocabulary.GetToken).ToArray());
        }
    }

    [SkippableFact]
    public void LlamaSpm_DecodeRoundTrip_Llama2Reference()
    {
        // llama_detokenize without BOS strips the dummy-prefix space of the first token, so the text comes back.
        var tok = Tokenizer(LlamaSpmVocab);
        using var doc = ReadJson("tokenizer-tests/llama2-reference.json");
        var failures = new StringBuilder();
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
        {
            string text = c.GetProperty("text").GetString()!;
            string back = tok.Decode(Ints(c.GetProperty("ids")));
            if (back != text) failures.AppendLine($"\"{Escape(text)}\" -> \"{Escape(back)}\"");
        }
        Assert.True(failures.Length == 0, failures.ToString());
    }
}
