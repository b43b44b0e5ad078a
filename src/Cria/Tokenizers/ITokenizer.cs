namespace Cria.Tokenizers;

/// <summary>A text tokenizer that reproduces llama.cpp's llama_tokenize / llama_token_to_piece / llama_detokenize.</summary>
public interface ITokenizer
{
    Vocabulary Vocabulary { get; }

    /// <summary>
    /// Text to token ids, like <c>llama_tokenize(text, add_special, parse_special)</c>.
    /// <paramref name="addSpecial"/> adds BOS (and EOS) as the vocabulary's AddBos/AddEos flags say;
    /// <paramref name="parseSpecial"/> lets control/unknown token texts in <paramref name="text"/> become those
    /// tokens (user-defined tokens are always split out, as llama.cpp does).
    /// </summary>
    int[] Encode(string text, bool addSpecial = true, bool parseSpecial = false);

    /// <summary>
    /// The bytes of one token, like <c>llama_token_to_piece(id, lstrip: 0, special)</c>. With
    /// <paramref name="special"/> false, control and unknown tokens give no bytes. Byte-fallback tokens give a
    /// single raw byte, which may be part of a multi-byte UTF-8 character. The returned array may be a shared
    /// cached instance: do not modify it.
    /// </summary>
    byte[] TokenToPiece(int id, bool special = true);

    /// <summary>
    /// Token ids to text, like <c>llama_detokenize(ids, remove_special, unparse_special)</c>; the UTF-8 bytes are
    /// decoded at the end, with invalid sequences becoming U+FFFD.
    /// </summary>
    string Decode(IEnumerable<int> ids, bool removeSpecial = false, bool unparseSpecial = true);
}
