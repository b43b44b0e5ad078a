using Cria.Gguf;
using Cria.Tokenizers;
using Xunit;
using static Cria.Tests.Tokenizers.TokenizerTestData;

namespace Cria.Tests.Tokenizers;

public class VocabularyTests
{
    [SkippableFact]
    public void LlamaSpm_Metadata()
    {
        var v = Tokenizer(LlamaSpmVocab).Vocabulary;
        Assert.Equal(32000, v.Count);
        Assert.Equal("llama", v.Model);
        Assert.Equal("default", v.Pre);
        Assert.Equal((1, 2, 0), (v.Bos, v.Eos, v.Unk));
        Assert.Null(v.Pad);
        Assert.Equal(-1, v.Eot);
        Assert.Equal(13, v.Linefeed);
        Assert.True(v.AddBos);
        Assert.False(v.AddEos);
        Assert.True(v.AddSpacePrefix);
        Assert.False(v.CleanSpaces);
        Assert.Equal(TokenType.Unknown, v.GetTokenType(0));
        Assert.Equal(TokenType.Control, v.GetTokenType(1));
        Assert.Equal(TokenType.Control, v.GetTokenType(2));
        Assert.Equal(TokenType.Byte, v.GetTokenType(3));
        Assert.Equal("<0x0A>", v.GetToken(13));
        Assert.Equal(TokenType.Normal, v.GetTokenType(22172));
        Assert.Equal("▁hello", v.GetToken(22172));
        Assert.True(v.TryGetId("▁hello", out int id) && id == 22172);
        Assert.True(v.TryGetId("▁hello".AsSpan(), out id) && id == 22172);
        Assert.False(v.TryGetId("no such token", out _));
        Assert.True(v.GetScore(22172) < 0);
        Assert.Equal([2], v.EndOfGenerationIds);
        Assert.True(v.IsEndOfGeneration(2));
        Assert.False(v.IsEndOfGeneration(1));
        Assert.False(v.IsEndOfGeneration(-1));
        Assert.Equal([0, 1, 2], v.SpecialTokens.Order()); // <unk> <s> </s>
        Assert.Throws<ArgumentOutOfRangeException>(() => v.GetToken(32000));
    }

    [SkippableFact]
    public void Stories260K_Metadata()
    {
        // padding/separator ids are 0xFFFFFFFF in this file: out of range, so llama.cpp keeps "none"
        var v = Tokenizer(StoriesModel).Vocabulary;
        Assert.Equal(512, v.Count);
        Assert.Equal((1, 2, 0), (v.Bos, v.Eos, v.Unk));
        Assert.Null(v.Pad);
        Assert.Null(v.Sep);
        Assert.True(v.AddBos);
        Assert.True(v.AddSpacePrefix);
        Assert.Equal(3 + 10, v.Linefeed);
    }

    [SkippableFact]
    public void Phi3_Metadata()
    {
        var v = Tokenizer(Phi3Vocab).Vocabulary;
        Assert.Equal(32000, v.Eos);
        Assert.Equal(32000, v.Pad);
        Assert.Equal("<|endoftext|>", v.GetToken(32000));
        Assert.True(v.TryGetId("<|end|>", out int end));
        Assert.True(v.IsEndOfGeneration(end));
        Assert.Equal(TokenType.UserDefined, v.GetTokenType(2)); // "</s>" stays user-defined at the reference commit
    }

    private static readonly string[] Tokens = ["<unk>", "<s>", "</s>", "a", "▁a"];

    private static Vocabulary Build(Action<GgufWriter> configure)
    {
        var w = new GgufWriter();
        configure(w);
        using var ms = new MemoryStream();
        w.WriteTo(ms);
        using var file = GgufFile.FromBytes(ms.ToArray());
        return Vocabulary.FromGguf(file);
    }

    [Fact]
    public void Defaults_WhenKeysAreAbsent()
    {
        var v = Build(w =>
        {
            w.Set(Vocabulary.KeyModel, "llama");
            w.Set(Vocabulary.KeyTokens, GgufArray.Of(Tokens));
        });
        Assert.Equal((1, 2, 0), (v.Bos, v.Eos, v.Unk));
        Assert.True(v.AddBos);
        Assert.False(v.AddEos);
        Assert.True(v.AddSpacePrefix);
        Assert.Equal(0f, v.GetScore(3));
        Assert.Equal(TokenType.Normal, v.GetTokenType(1)); // no token_type array: all NORMAL
        Assert.Equal(-1, v.Linefeed);
        Assert.True(v.IsEndOfGeneration(2));
    }

    [Fact]
    public void MetadataOverridesDefaults()
    {
        var v = Build(w =>
        {
            w.Set(Vocabulary.KeyModel, "llama");
            w.Set(Vocabulary.KeyTokens, GgufArray.Of(Tokens));
            w.Set(Vocabulary.KeyBos, 3u);
            w.Set(Vocabulary.KeyEos, 4u);
            w.Set(Vocabulary.KeyUnk, 99u); // out of range: ignored
            w.Set(Vocabulary.KeyPad, 0u);
            w.Set(Vocabulary.KeyEot, 1u);
            w.Set(Vocabulary.KeyAddBos, false);
            w.Set(Vocabulary.KeyAddEos, true);
            w.Set(Vocabulary.KeyAddSpacePrefix, false);
        });
        Assert.Equal((3, 4, 0), (v.Bos, v.Eos, v.Unk));
        Assert.Equal(0, v.Pad);
        Assert.Equal(1, v.Eot);
        Assert.False(v.AddBos);
        Assert.True(v.AddEos);
        Assert.False(v.AddSpacePrefix);
        Assert.Equal([1, 4], v.EndOfGenerationIds);
    }

    [Fact]
    public void EmptyTokenText_IsReplaced()
    {
        var v = Build(w =>
        {
            w.Set(Vocabulary.KeyModel, "llama");
            w.Set(Vocabulary.KeyTokens, GgufArray.Of(["<unk>", "<s>", "</s>", ""]));
        });
        Assert.Equal("[EMPTY_3]", v.GetToken(3));
    }

    [Fact]
    public void BadMetadata_Throws()
    {
        var e = Assert.Throws<InvalidDataException>(() => Build(w => w.Set(Vocabulary.KeyTokens, GgufArray.Of(Tokens))));
        Assert.Contains(Vocabulary.KeyModel, e.Message);

        e = Assert.Throws<InvalidDataException>(() => Build(w => w.Set(Vocabulary.KeyModel, "llama")));
        Assert.Contains(Vocabulary.KeyTokens, e.Message);

        e = Assert.Throws<InvalidDataException>(() => Build(w =>
        {
            w.Set(Vocabulary.KeyModel, "llama");
            w.Set(Vocabulary.KeyTokens, GgufArray.Of(Tokens));
            w.Set(Vocabulary.KeyScores, GgufArray.Of(new float[4]));
        }));
        Assert.Contains(Vocabulary.KeyScores, e.Message);
        Assert.Contains("4", e.Message);

        e = Assert.Throws<InvalidDataException>(() => Build(w =>
        {
            w.Set(Vocabulary.KeyModel, "llama");
            w.Set(Vocabulary.KeyTokens, GgufArray.Of(Tokens));
            w.Set(Vocabulary.KeyTokenType, GgufArray.Of(new int[6]));
        }));
        Assert.Contains(Vocabulary.KeyTokenType, e.Message);

        e = Assert.Throws<InvalidDataException>(() => Build(w =>
        {
            w.Set(Vocabulary.KeyModel, "llama");
            w.Set(Vocabulary.KeyTokens, GgufArray.Of(["<unk>", "a", "a"]));
        }));
        Assert.Contains("same text", e.Message);

        e = Assert.Throws<InvalidDataException>(() => Build(w =>
        {
            w.Set(Vocabulary.KeyModel, "llama");
            w.Set(Vocabulary.KeyTokens, GgufArray.Of(new[] { 1f, 2f }));
        }));
        Assert.Contains("strings", e.Message);

        e = Assert.Throws<InvalidDataException>(() => Build(w =>
        {
            w.Set(Vocabulary.KeyModel, "whatever");
            w.Set(Vocabulary.KeyTokens, GgufArray.Of(Tokens));
        }));
        Assert.Contains("whatever", e.Message);

        e = Assert.Throws<InvalidDataException>(() => Build(w =>
        {
            w.Set(Vocabulary.KeyModel, "gpt2");
            w.Set(Vocabulary.KeyTokens, GgufArray.Of(Tokens));
        }));
        Assert.Contains(Vocabulary.KeyMerges, e.Message);
    }

    [Fact]
    public void Factory_RejectsOtherModels()
    {
        var v = Build(w =>
        {
            w.Set(Vocabulary.KeyModel, "gpt2");
            w.Set(Vocabulary.KeyPre, "llama-bpe");
            w.Set(Vocabulary.KeyTokens, GgufArray.Of(Tokens));
            w.Set(Vocabulary.KeyMerges, GgufArray.Of(["a a"]));
        });
        Assert.Equal("gpt2", v.Model);
        Assert.True(v.AddBos);           // llama-bpe pre-tokenizer
        Assert.False(v.AddSpacePrefix);
        Assert.True(v.CleanSpaces);
        Assert.Equal(["a a"], v.Merges!);
        Assert.IsType<ByteLevelBpeTokenizer>(TokenizerFactory.Create(v));
        var other = Build(w =>
        {
            w.Set(Vocabulary.KeyModel, "gpt2");
            w.Set(Vocabulary.KeyPre, "qwen2");
            w.Set(Vocabulary.KeyTokens, GgufArray.Of(Tokens));
            w.Set(Vocabulary.KeyMerges, GgufArray.Of(["a a"]));
        });
        var e = Assert.Throws<NotSupportedException>(() => TokenizerFactory.Create(other));
        Assert.Contains("qwen2", e.Message);
        Assert.Throws<ArgumentException>(() => new SentencePieceTokenizer(v));
    }

    [SkippableFact]
    public void Factory_CreatesSentencePieceForLlama()
    {
        using var file = GgufFile.Open(RefData.Require(StoriesModel));
        var tok = TokenizerFactory.Create(file);
        Assert.IsType<SentencePieceTokenizer>(tok);
        Assert.Equal(512, tok.Vocabulary.Count);
    }
}
