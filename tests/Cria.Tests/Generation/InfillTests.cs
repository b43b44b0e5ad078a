using Cria.Generation;
using Cria.Gguf;
using Cria.Model;
using Cria.Tokenizers;
using Xunit;

namespace Cria.Tests.Generation;

public class InfillTests
{
    // A tiny SentencePiece vocabulary with Code Llama's FIM control tokens.
    private static Vocabulary Vocab(bool withFim = true, bool? addBos = null)
    {
        var tokens = new List<string> { "<unk>", "<s>", "</s>", "▁", "a", "b", "▁a", "▁b", "(", ")", "▁f" };
        var types = new List<int> { 2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1 };
        if (withFim)
        {
            tokens.AddRange(new[] { "<PRE>", "<SUF>", "<MID>", "<EOT>" });
            types.AddRange(new[] { 3, 3, 3, 3 });
        }
        var scores = Enumerable.Range(0, tokens.Count).Select(i => tokens[i].Length > 1 && tokens[i][0] == '▁' ? -1f : -5f).ToArray();
        var meta = new Dictionary<string, GgufValue>
        {
            [Vocabulary.KeyModel] = GgufValue.Of("llama"),
            [Vocabulary.KeyTokens] = GgufValue.Of(GgufArray.Of(tokens.ToArray())),
            [Vocabulary.KeyScores] = GgufValue.Of(GgufArray.Of(scores)),
            [Vocabulary.KeyTokenType] = GgufValue.Of(GgufArray.Of(types.ToArray())),
        };
        if (addBos is bool b) meta[Vocabulary.KeyAddBos] = GgufValue.Of(b);
        return Vocabulary.FromMetadata(meta);
    }

    [Fact]
    public void FimTokensAreFoundByTextAndEotEndsGeneration()
    {
        var v = Vocab();
        Assert.Equal(11, v.FimPrefix);
        Assert.Equal(12, v.FimSuffix);
        Assert.Equal(13, v.FimMiddle);
        Assert.Equal(14, v.Eot);
        Assert.True(v.IsEndOfGeneration(14));
        Assert.True(v.IsEndOfGeneration(v.Eos));
        Assert.False(v.IsEndOfGeneration(v.FimMiddle));
        Assert.True(Infill.IsSupported(v));
    }

    [Fact]
    public void PromptIsBosPreSpacedPrefixSufSuffixMid()
    {
        var tok = TokenizerFactory.Create(Vocab());
        // The SentencePiece tokenizer puts "▁" before both the prefix and the suffix (llama.cpp's format_infill).
        Assert.Equal(new[] { 1, 11, 6, 8, 12, 7, 9, 13 }, Infill.BuildPrompt(tok, "a(", "b)"));
        Assert.Equal(
            new[] { 1, 11 }.Concat(tok.Encode("a(", false)).Append(12).Concat(tok.Encode("b)", false)).Append(13),
            Infill.BuildPrompt(tok, "a(", "b)"));
        // Suffix-prefix-middle order (--spm-infill), no BOS when asked.
        Assert.Equal(new[] { 12, 7, 11, 6, 13 }, Infill.BuildPrompt(tok, "a", "b", new InfillOptions { AddBos = false, SuffixFirst = true }));
        // Empty prefix and suffix: only the markers.
        Assert.Equal(new[] { 1, 11, 12, 13 }, Infill.BuildPrompt(tok, "", ""));
        // BOS follows the vocabulary's add_bos_token.
        Assert.Equal(new[] { 11, 6, 12, 7, 13 }, Infill.BuildPrompt(TokenizerFactory.Create(Vocab(addBos: false)), "a", "b"));
    }

    [Fact]
    public void SpecialTextInThePrefixIsNotParsed()
    {
        var tok = TokenizerFactory.Create(Vocab());
        int[] p = Infill.BuildPrompt(tok, "<EOT>", "b");
        Assert.DoesNotContain(14, p);
        Assert.Single(p, 11);
    }

    [Fact]
    public void AVocabularyWithoutFimTokensIsAClearError()
    {
        var tok = TokenizerFactory.Create(Vocab(withFim: false));
        Assert.False(Infill.IsSupported(tok.Vocabulary));
        var e = Assert.Throws<InfillNotSupportedException>(() => Infill.BuildPrompt(tok, "a", "b"));
        Assert.Contains("fill-in-the-middle", e.Message);
        Assert.Contains("<PRE>", e.Message);
        Assert.Contains("Code Llama", e.Message);
    }

    [SkippableFact]
    public void StoriesHasNoFimTokensAndGenerateRefuses()
    {
        using var model = LlamaModel.Load(RefData.Require("stories260K/stories260K-f32.gguf"), new ModelOptions { Threads = 2 });
        using var session = new LlamaSession(model, new ContextOptions { ContextSize = 64 });
        Assert.Throws<InfillNotSupportedException>(() => Infill.Generate(session, "def f(", ")").ToList());
    }
}
