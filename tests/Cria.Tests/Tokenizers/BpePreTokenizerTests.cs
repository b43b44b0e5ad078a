using System.Text;
using System.Text.RegularExpressions;
using Cria.Tokenizers;
using Xunit;
using static Cria.Tests.Tokenizers.TokenizerTestData;

namespace Cria.Tests.Tokenizers;

/// <summary>
/// The hand-written pre-tokenizers against the regexes they implement, evaluated by .NET's regex engine as an
/// independent oracle (BMP text only: .NET's \p{L} does not see surrogate pairs as one letter).
/// </summary>
public class BpePreTokenizerTests
{
    private const string Llama3Regex =
        @"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    private const string Gpt2Regex = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private static readonly string[] Pool =
    [
        " ", " ", " ", "  ", "\n", "\n", "\r", "\r\n", "\t", "\u00a0", "\u2028", "\u3000", "\u0085", "\u000b",
        "a", "b", "Z", "é", "ß", "Ω", "ж", "你", "好", "こ", "ん", "\u0301", "\u02b0", // letters, a combining mark, a modifier letter
        "0", "1", "7", "42", "12345", "½", "²", "٣", "Ⅻ", // numbers (Nd, No, Nl)
        "'", "'", "s", "S", "t", "re", "RE", "ve", "m", "ll", "LL", "d", "D", "'s", "'T", "'Re",
        ".", ",", "!", "?", "-", "_", "(", ")", "\"", "«", "→", "€", "©", "\u200b", "\u0000", "\u0007", "\uffff", "\ue000",
        "Hello", "world", "don't", "I'm", "we'LL",
    ];

    private static List<string> Oracle(string text, string pattern)
    {
        var words = new List<string>();
        int at = 0;
        foreach (Match m in Regex.Matches(text, pattern, RegexOptions.CultureInvariant))
        {
            if (m.Index > at) words.Add(text[at..m.Index]);
            words.Add(m.Value);
            at = m.Index + m.Length;
        }
        if (at < text.Length) words.Add(text[at..]);
        return words;
    }

    [Theory]
    [InlineData(BpePreTokenizerKind.Llama3, Llama3Regex)]
    [InlineData(BpePreTokenizerKind.Gpt2, Gpt2Regex)]
    public void RandomText_SplitsLikeTheRegex(BpePreTokenizerKind kind, string pattern)
    {
        var rnd = new Random(1234);
        var failures = new StringBuilder();
        for (int iter = 0; iter < 3000; iter++)
        {
            var sb = new StringBuilder();
            int n = rnd.Next(0, 14);
            for (int i = 0; i < n; i++) sb.Append(Pool[rnd.Next(Pool.Length)]);
            string text = sb.ToString();
            List<string> expected = Oracle(text, pattern);
            List<string> got = BpePreTokenizer.Split(text, kind);
            if (!expected.SequenceEqual(got) && failures.Length < 3000)
                failures.AppendLine($"\"{Escape(text)}\": expected [{string.Join("|", expected.Select(Escape))}], got [{string.Join("|", got.Select(Escape))}]");
        }
        Assert.True(failures.Length == 0, failures.ToString());
    }

    [Fact]
    public void Llama3_KnownSplits()
    {
        static string[] S(string t) => [.. BpePreTokenizer.Split(t, BpePreTokenizerKind.Llama3)];
        Assert.Equal(["Hello", " world", "'s", " ", "123", "456", "7", "!!!\n\n", "  ", " x"], S("Hello world's 1234567!!!\n\n   x"));
        Assert.Equal(["I", "'M", " fine", " \n", "\t", "\tok", " "], S("I'M fine \n\t\tok "));
        Assert.Equal(["🦙", " 🐱", "  ", " 你好"], S("🦙 🐱   你好")); // non-BMP symbols are punctuation-like
        Assert.Equal(["𝐀𝐁", "𝟏𝟐𝟑", "𝟒"], S("𝐀𝐁𝟏𝟐𝟑𝟒")); // non-BMP letters and digits
        Assert.Empty(S(""));
        // llama.cpp's Unicode tables are 15.1: Unicode 16.0's new letters/digits are not letters/digits there
        Assert.Equal(["\U00013B36'", "R"], S("\U00013B36'R")); // Egyptian hieroglyph (16.0): punctuation-like
        Assert.Equal([" \U000116D0\U000116D1"], S(" \U000116D0\U000116D1")); // Myanmar Extended-C digits (16.0)
        Assert.Equal(["\U0002EBF0\U0002EBF1", "'R"], S("\U0002EBF0\U0002EBF1'R")); // CJK Extension I (15.1): letters
    }

    [Fact]
    public void Gpt2_KnownSplits()
    {
        static string[] S(string t) => [.. BpePreTokenizer.Split(t, BpePreTokenizerKind.Gpt2)];
        Assert.Equal(["Hello", " world", "'s", " 1234567", "!!!", "\n\n  ", " x"], S("Hello world's 1234567!!!\n\n   x"));
        Assert.Equal(["I", "'", "M"], S("I'M")); // case-sensitive contractions
    }

    [Fact]
    public void ByteLevelEncoding_IsGpt2BytesToUnicode()
    {
        Assert.Equal('Ġ', ByteLevelEncoding.ByteToChar((byte)' '));
        Assert.Equal('Ċ', ByteLevelEncoding.ByteToChar((byte)'\n'));
        Assert.Equal('ĉ', ByteLevelEncoding.ByteToChar((byte)'\t'));
        Assert.Equal('A', ByteLevelEncoding.ByteToChar((byte)'A'));
        Assert.Equal('Ã', ByteLevelEncoding.ByteToChar(0xC3));
        Assert.Equal('\u0143', ByteLevelEncoding.ByteToChar(0xAD)); // soft hyphen is remapped (the last of the 68)
        var seen = new HashSet<char>();
        for (int b = 0; b < 256; b++)
        {
            char c = ByteLevelEncoding.ByteToChar((byte)b);
            Assert.True(seen.Add(c));
            Assert.Equal(b, ByteLevelEncoding.CharToByte(c));
        }
        Assert.Equal(-1, ByteLevelEncoding.CharToByte('\u0144'));
        Assert.Equal(-1, ByteLevelEncoding.CharToByte(' '));
        Assert.Equal("ĠHelloĊ", ByteLevelEncoding.Encode(" Hello\n"u8));
    }
}
