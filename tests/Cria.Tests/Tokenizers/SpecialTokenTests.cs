using Cria.Gguf;
using Cria.Tokenizers;
using Xunit;
using static Cria.Tests.Tokenizers.TokenizerTestData;

namespace Cria.Tests.Tokenizers;

/// <summary>
/// parse_special, the space prefix after special tokens, user-defined tokens, lstrip/rstrip, merge order and byte
/// fallback. The Llama 2 ids below were checked against a native llama.cpp build.
/// </summary>
public class SpecialTokenTests
{
    [SkippableFact]
    public void ParseSpecial_SplitsControlTokens()
    {
        var tok = Tokenizer(LlamaSpmVocab);
        // "<s>" and "</s>" become BOS/EOS; "hello" after a special token gets the dummy-prefix space (▁hello = 22172)
        Assert.Equal([1, 22172, 2], tok.Encode("<s>hello</s>", addSpecial: false, parseSpecial: true));
        // add_special still adds its own BOS: llama.cpp then has two BOS tokens (and warns)
        Assert.Equal([1, 1, 22172, 2], tok.Encode("<s>hello</s>", addSpecial: true, parseSpecial: true));
        Assert.Equal([22172, 1, 3186], tok.Encode("hello<s>world", addSpecial: false, parseSpecial: true));
        Assert.Equal([259, 1, 29871, 22172], tok.Encode(" <s> hello", addSpecial: false, parseSpecial: true));
        Assert.Equal([0], tok.Encode("<unk>", addSpecial: false, parseSpecial: true));
    }

    [SkippableFact]
    public void NoParseSpecial_TokenizesLiteralText()
    {
        var tok = Tokenizer(LlamaSpmVocab);
        int[] ids = tok.Encode("<s>hello</s>", addSpecial: false, parseSpecial: false);
        Assert.Equal([529, 29879, 29958, 12199, 829, 29879, 29958], ids); // ▁< s > hello </ s >
        Assert.DoesNotContain(1, ids);
        Assert.DoesNotContain(2, ids);
        Assert.Equal("<s>hello</s>", tok.Decode(ids));
        Assert.Equal([1, 529, 29879, 29958, 12199, 829, 29879, 29958], tok.Encode("<s>hello</s>"));
        Assert.Equal([22172, 29966, 29879, 29958, 11526], tok.Encode("hello<s>world", addSpecial: false));
        Assert.Equal([529, 2960, 29958], tok.Encode("<unk>", addSpecial: false));
    }

    [SkippableFact]
    public void Decode_SpecialTokenFlags()
    {
        var tok = Tokenizer(LlamaSpmVocab);
        int[] ids = [1, 22172, 2];
        Assert.Equal("<s> hello</s>", tok.Decode(ids));                                   // BOS used up the strip
        Assert.Equal(" hello", tok.Decode(ids, removeSpecial: false, unparseSpecial: false));
        Assert.Equal(" hello</s>", tok.Decode(ids, removeSpecial: true));                // EOS kept: add_eos is false
        Assert.Equal("hello</s>", tok.Decode([22172, 2]));
        Assert.Equal("<unk>", tok.Decode([0]));
        Assert.Equal("", tok.Decode([0], unparseSpecial: false));
        Assert.Equal("", tok.Decode([]));
        Assert.Equal("<s>", Text(tok.TokenToPiece(1)));
        Assert.Empty(tok.TokenToPiece(1, special: false));
        Assert.Equal(" hello", Text(tok.TokenToPiece(22172, special: false)));
        Assert.Equal([(byte)'\n'], tok.TokenToPiece(13));
        Assert.Throws<ArgumentOutOfRangeException>(() => tok.TokenToPiece(32000));
        Assert.Throws<ArgumentOutOfRangeException>(() => tok.TokenToPiece(-1));
    }

    private static string Text(byte[] b) => System.Text.Encoding.UTF8.GetString(b);

    // A tiny SPM vocabulary: <unk> <s> </s>, all 256 byte tokens, then a few pieces.
    private static readonly string[] Pieces =
        ["▁", "a", "b", "c", "ab", "bc", "h", "i", "▁h", "hi", "▁hi", "x", "<|user|>", "<|ctl|>", "<|im_end|>", "<|unused|>"];

    private static Vocabulary Tiny(float abScore = -1, float bcScore = -2, string name = "tiny", Action<GgufWriter>? extra = null)
    {
        var tokens = new List<string> { "<unk>", "<s>", "</s>" };
        var types = new List<int> { 2, 3, 3 };
        for (int b = 0; b < 256; b++) { tokens.Add($"<0x{b:X2}>"); types.Add(6); }
        tokens.AddRange(Pieces);
        types.AddRange([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 4, 3, 1, 5]);
        var scores = new float[tokens.Count];
        int Id(string t) => tokens.IndexOf(t);
        scores[Id("ab")] = abScore;
        scores[Id("bc")] = bcScore;
        scores[Id("▁h")] = -2;
        scores[Id("hi")] = -3;
        scores[Id("▁hi")] = -1;
        for (int i = 0; i < 3; i++) scores[i] = 0;
        return SyntheticVocabulary([.. tokens], scores, [.. types], w =>
        {
            w.Set("general.name", name);
            extra?.Invoke(w);
        });
    }

    private static int Id(Vocabulary v, string token) => v.TryGetId(token, out int id) ? id : throw new KeyNotFoundException(token);

    [Fact]
    public void MergeOrder_HighestScoreFirst_TiesGoLeft()
    {
        // "▁abc": candidate merges (a,b) and (b,c); there is no "▁a", "abc" or "▁ab"
        var v = Tiny(abScore: -1, bcScore: -2);
        var tok = new SentencePieceTokenizer(v);
        Assert.Equal([Id(v, "▁"), Id(v, "ab"), Id(v, "c")], tok.Encode("abc", addSpecial: false));

        v = Tiny(abScore: -2, bcScore: -1);
        tok = new SentencePieceTokenizer(v);
        Assert.Equal([Id(v, "▁"), Id(v, "a"), Id(v, "bc")], tok.Encode("abc", addSpecial: false));

        v = Tiny(abScore: -1, bcScore: -1); // equal scores: the leftmost pair wins
        tok = new SentencePieceTokenizer(v);
        Assert.Equal([Id(v, "▁"), Id(v, "ab"), Id(v, "c")], tok.Encode("abc", addSpecial: false));

        // "▁hi": ▁h (-2) merges before hi (-3), then ▁h+i = ▁hi
        Assert.Equal([Id(v, "▁hi")], tok.Encode("hi", addSpecial: false));
        Assert.Equal([1, Id(v, "▁hi")], tok.Encode("hi"));
    }

    [Fact]
    public void ByteFallback_UsesByteTokens()
    {
        var v = Tiny();
        var tok = new SentencePieceTokenizer(v);
        // 'z' is not a piece -> <0x7A>; '€' = E2 82 AC -> three byte tokens
        Assert.Equal([Id(v, "▁"), 3 + 0x7A], tok.Encode("z", addSpecial: false));
        Assert.Equal([Id(v, "▁"), 3 + 0xE2, 3 + 0x82, 3 + 0xAC, Id(v, "x")], tok.Encode("€x", addSpecial: false));
        Assert.Equal("€x", tok.Decode(tok.Encode("€x", addSpecial: false)));
        // an unpaired surrogate is what UTF-8 conversion makes of it: U+FFFD = EF BF BD
        Assert.Equal([Id(v, "▁"), 3 + 0xEF, 3 + 0xBF, 3 + 0xBD], tok.Encode("\uD800", addSpecial: false));
    }

    [Fact]
    public void UserDefinedTokens_AreAlwaysSplitOut_ControlOnlyWithParseSpecial()
    {
        var v = Tiny();
        var tok = new SentencePieceTokenizer(v);
        int user = Id(v, "<|user|>"), ctl = Id(v, "<|ctl|>");
        Assert.Equal(TokenType.UserDefined, v.GetTokenType(user));
        // user-defined: split even without parse_special; the text after it gets the space prefix
        Assert.Equal([Id(v, "▁hi"), user, Id(v, "▁hi")], tok.Encode("hi<|user|>hi", addSpecial: false));
        Assert.Equal([user, Id(v, "▁hi")], tok.Encode("<|user|>hi", addSpecial: false));
        // control: only with parse_special
        Assert.DoesNotContain(ctl, tok.Encode("hi<|ctl|>hi", addSpecial: false));
        Assert.Equal([Id(v, "▁hi"), ctl, Id(v, "▁hi")], tok.Encode("hi<|ctl|>hi", addSpecial: false, parseSpecial: true));
        // user-defined pieces print even with special=false; control pieces do not
        Assert.Equal("<|user|>", Text(tok.TokenToPiece(user, special: false)));
        Assert.Empty(tok.TokenToPiece(ctl, special: false));
        // unused tokens print nothing
        Assert.Empty(tok.TokenToPiece(Id(v, "<|unused|>")));
    }

    [Fact]
    public void Phi3Names_GiveRStrip()
    {
        // llama.cpp sets rstrip on special tokens (except <unk>, <s>, <|endoftext|>) when general.name contains phi3
        var plain = new SentencePieceTokenizer(Tiny(name: "tiny"));
        var phi = new SentencePieceTokenizer(Tiny(name: "My-Phi3-mini"));
        var v = phi.Vocabulary;
        int user = Id(v, "<|user|>");
        int sp = Id(v, "▁"), hi = Id(v, "▁hi");
        // the fragment after the token is "  hi" -> "▁▁▁hi" without rstrip, "hi" -> "▁hi" with it
        Assert.Equal([user, sp, sp, hi], plain.Encode("<|user|>  hi", addSpecial: false));
        Assert.Equal([user, hi], phi.Encode("<|user|>  hi", addSpecial: false));
        Assert.Equal([1, sp, sp, hi], phi.Encode("<s>  hi", addSpecial: false, parseSpecial: true)); // <s> keeps no rstrip
        Assert.Equal([Id(v, "<|ctl|>"), hi], phi.Encode("<|ctl|> hi", addSpecial: false, parseSpecial: true));
    }

    [Fact]
    public void EndOfGenerationTexts_AreForcedToControl()
    {
        var v = Tiny();
        int imEnd = Id(v, "<|im_end|>");
        Assert.Equal(TokenType.Control, v.GetTokenType(imEnd)); // stored as NORMAL, overridden like llama.cpp
        Assert.True(v.IsEndOfGeneration(imEnd));
        Assert.True(v.IsEndOfGeneration(2));
        Assert.False(v.IsEndOfGeneration(1));
        Assert.Equal(imEnd, v.Eot);
        Assert.Equal([2, imEnd], v.EndOfGenerationIds);
        var tok = new SentencePieceTokenizer(v);
        Assert.DoesNotContain(imEnd, tok.Encode("hi<|im_end|>", addSpecial: false));
        Assert.Equal([Id(v, "▁hi"), imEnd], tok.Encode("hi<|im_end|>", addSpecial: false, parseSpecial: true));
    }

    [Fact]
    public void Flags_FromMetadata()
    {
        var noPrefix = new SentencePieceTokenizer(Tiny(extra: w => w.Set(Vocabulary.KeyAddSpacePrefix, false)));
        Assert.False(noPrefix.Vocabulary.AddSpacePrefix);
        Assert.Equal([1, Id(noPrefix.Vocabulary, "hi")], noPrefix.Encode("hi"));
        Assert.Equal(" hi", noPrefix.Decode([Id(noPrefix.Vocabulary, "▁hi")])); // nothing stripped without add_space_prefix

        var bosEos = new SentencePieceTokenizer(Tiny(extra: w =>
        {
            w.Set(Vocabulary.KeyAddBos, false);
            w.Set(Vocabulary.KeyAddEos, true);
        }));
        int hi = Id(bosEos.Vocabulary, "▁hi");
        Assert.Equal([hi, 2], bosEos.Encode("hi"));
        Assert.Equal([hi], bosEos.Encode("hi", addSpecial: false));
        Assert.Equal("hi", bosEos.Decode([hi, 2], removeSpecial: true));          // final EOS removed, space stripped
        Assert.Equal("hi</s>", bosEos.Decode([hi, 2], removeSpecial: false));
        Assert.Equal("<s> hi", bosEos.Decode([1, hi], removeSpecial: true));      // add_bos false: BOS is not removed
    }
}
