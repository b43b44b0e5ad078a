using System.Text;

namespace Cria.Tokenizers;

/// <summary>
/// What every llama.cpp tokenizer shares, whatever its algorithm: the cached token pieces
/// (token_to_piece with and without special tokens), detokenization, the special-token
/// partition, and the frame of <c>llama_tokenize</c> (lone surrogates made U+FFFD as UTF-8
/// conversion would, BOS before and EOS after as the vocabulary asks). A subclass supplies how a
/// token's text becomes its bytes and how ordinary text becomes ids.
/// </summary>
public abstract class TokenizerBase : ITokenizer
{
    private readonly byte[][] _pieces;       // token_to_piece(special: true)
    private readonly byte[][] _plainPieces;  // token_to_piece(special: false)

    /// <param name="makePiece">the bytes a token prints as, from its text and type</param>
    protected TokenizerBase(Vocabulary vocabulary, Func<string, TokenType, byte[]> makePiece)
    {
        ArgumentNullException.ThrowIfNull(vocabulary);
        Vocabulary = vocabulary;
        int n = vocabulary.Count;
        _pieces = new byte[n][];
        _plainPieces = new byte[n][];
        for (int id = 0; id < n; id++)
        {
            TokenType type = vocabulary.GetTokenType(id);
            byte[] piece = makePiece(vocabulary.GetToken(id), type);
            _pieces[id] = piece;
            _plainPieces[id] = type is TokenType.Control or TokenType.Unknown ? [] : piece;
        }
        Partition = new SpecialTokenPartition(vocabulary);
    }

    public Vocabulary Vocabulary { get; }

    /// <summary>Cuts special-token text out of the input before <see cref="EncodeText"/> runs.</summary>
    internal SpecialTokenPartition Partition { get; }

    /// <inheritdoc/>
    public byte[] TokenToPiece(int id, bool special = true)
    {
        if (!Vocabulary.IsValidId(id))
            throw new ArgumentOutOfRangeException(nameof(id), id, $"token id must be in [0, {Vocabulary.Count})");
        return special ? _pieces[id] : _plainPieces[id];
    }

    /// <inheritdoc/>
    public string Decode(IEnumerable<int> ids, bool removeSpecial = false, bool unparseSpecial = true) =>
        Encoding.UTF8.GetString(DecodeToBytes(ids, removeSpecial, unparseSpecial));

    /// <summary>llama_detokenize's raw bytes (see <see cref="Decode"/>), before UTF-8 decoding.</summary>
    public byte[] DecodeToBytes(IEnumerable<int> ids, bool removeSpecial = false, bool unparseSpecial = true) =>
        Detokenization.Detokenize(this, Detokenization.AsSpan(ids), removeSpecial, unparseSpecial);

    /// <inheritdoc/>
    public int[] Encode(string text, bool addSpecial = true, bool parseSpecial = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        text = ReplaceLoneSurrogates(text);
        var output = new List<int>(text.Length / 3 + 2);
        if (addSpecial && Vocabulary.AddBos)
        {
            if (Vocabulary.Bos < 0) throw new InvalidOperationException("the vocabulary asks for a BOS token but has none");
            output.Add(Vocabulary.Bos);
        }
        if (text.Length > 0) EncodeText(text, parseSpecial, output);
        if (addSpecial && Vocabulary.AddEos)
        {
            if (Vocabulary.Eos < 0) throw new InvalidOperationException("the vocabulary asks for an EOS token but has none");
            output.Add(Vocabulary.Eos);
        }
        return output.ToArray();
    }

    /// <summary>Appends the ids of a non-empty text (special tokens split out per <paramref name="parseSpecial"/>).</summary>
    protected abstract void EncodeText(string text, bool parseSpecial, List<int> output);

    // A C# string can hold unpaired surrogates; UTF-8 conversion (as llama.cpp sees the text) makes them U+FFFD.
    private static string ReplaceLoneSurrogates(string text)
    {
        int i = text.AsSpan().IndexOfAnyInRange('\uD800', '\uDFFF');
        if (i < 0) return text;
        for (; i < text.Length; i++)
        {
            char c = text[i];
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1])) { i++; continue; }
            if (char.IsSurrogate(c)) return Encoding.UTF8.GetString(Encoding.UTF8.GetBytes(text));
        }
        return text;
    }
}
