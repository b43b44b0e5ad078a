using Cria.Gguf;

namespace Cria.Tokenizers;

/// <summary>
/// A small built-in SentencePiece ("llama") vocabulary that can encode any text: the three special
/// tokens, the 256 byte-fallback tokens and the printable ASCII characters, alone and with the
/// word-start marker "▁". Used for synthetic test models that need a tokenizer llama.cpp accepts
/// but no real vocabulary.
/// <para>Layout (448 tokens): 0 <c>&lt;unk&gt;</c> (unknown), 1 <c>&lt;s&gt;</c> and 2
/// <c>&lt;/s&gt;</c> (control), 3..258 <c>&lt;0x00&gt;</c>..<c>&lt;0xFF&gt;</c> (byte), 259 "▁", then
/// the 94 characters '!'..'~' and then their 94 "▁x" forms (normal). Scores follow SentencePiece's
/// convention (specials and bytes 0, normal pieces decreasing from -1 in id order), so the
/// tokenizer merges "▁" with a following character whenever it can.</para>
/// </summary>
public static class ByteLevelVocabulary
{
    /// <summary>The word-start marker SentencePiece uses for a space (U+2581).</summary>
    public const string SpaceMarker = "\u2581";

    public const int UnknownId = 0;
    public const int BosId = 1;
    public const int EosId = 2;
    /// <summary>Id of the byte token &lt;0x00&gt;; byte b is FirstByteId + b.</summary>
    public const int FirstByteId = 3;
    /// <summary>Id of the lone "▁" piece.</summary>
    public const int SpaceId = FirstByteId + 256;

    private const char FirstPrintable = '!', LastPrintable = '~';
    private const int PrintableCount = LastPrintable - FirstPrintable + 1;

    /// <summary>Number of tokens.</summary>
    public const int Count = SpaceId + 1 + 2 * PrintableCount;

    /// <summary>Id of the single-character piece for a printable ASCII character ('!'..'~').</summary>
    public static int CharId(char c) => IsPrintable(c) ? SpaceId + 1 + (c - FirstPrintable)
        : throw new ArgumentOutOfRangeException(nameof(c), "only '!'..'~' have a piece of their own");

    /// <summary>Id of the "▁c" piece (a printable ASCII character at the start of a word).</summary>
    public static int SpaceCharId(char c) => CharId(c) + PrintableCount;

    private static bool IsPrintable(char c) => c >= FirstPrintable && c <= LastPrintable;

    /// <summary>The tokens, scores and token types (llama.cpp's <c>llama_token_type</c> numbers).</summary>
    public static (string[] Tokens, float[] Scores, int[] Types) Build()
    {
        var tokens = new string[Count];
        var scores = new float[Count];
        var types = new int[Count];
        tokens[UnknownId] = "<unk>"; types[UnknownId] = (int)TokenType.Unknown;
        tokens[BosId] = "<s>"; types[BosId] = (int)TokenType.Control;
        tokens[EosId] = "</s>"; types[EosId] = (int)TokenType.Control;
        for (int b = 0; b < 256; b++)
        {
            tokens[FirstByteId + b] = $"<0x{b:X2}>";
            types[FirstByteId + b] = (int)TokenType.Byte;
        }
        tokens[SpaceId] = SpaceMarker;
        for (int i = 0; i < PrintableCount; i++)
        {
            string c = ((char)(FirstPrintable + i)).ToString();
            tokens[SpaceId + 1 + i] = c;
            tokens[SpaceId + 1 + PrintableCount + i] = SpaceMarker + c;
        }
        for (int id = SpaceId; id < Count; id++)
        {
            types[id] = (int)TokenType.Normal;
            scores[id] = -(id - SpaceId + 1);
        }
        return (tokens, scores, types);
    }

    /// <summary>
    /// Writes the vocabulary as the <c>tokenizer.*</c> metadata llama.cpp's converters write for a
    /// SentencePiece model: model "llama", tokens, scores, token types, the special ids and
    /// add_bos_token true / add_eos_token false.
    /// </summary>
    public static void WriteTo(GgufWriter w)
    {
        ArgumentNullException.ThrowIfNull(w);
        var (tokens, scores, types) = Build();
        w.Set("tokenizer.ggml.model", "llama")
         .Set("tokenizer.ggml.pre", "default")
         .Set("tokenizer.ggml.tokens", GgufArray.Of(tokens))
         .Set("tokenizer.ggml.scores", GgufArray.Of(scores))
         .Set("tokenizer.ggml.token_type", GgufArray.Of(types))
         .Set("tokenizer.ggml.bos_token_id", (uint)BosId)
         .Set("tokenizer.ggml.eos_token_id", (uint)EosId)
         .Set("tokenizer.ggml.unknown_token_id", (uint)UnknownId)
         .Set("tokenizer.ggml.add_bos_token", true)
         .Set("tokenizer.ggml.add_eos_token", false);
    }
}
