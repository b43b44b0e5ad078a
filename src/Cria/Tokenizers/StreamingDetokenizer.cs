using System.Text;

namespace Cria.Tokenizers;

/// <summary>
/// Turns token ids into text one id at a time, for printing generated text as it is produced.
/// <see cref="Append"/> returns the text that has become complete; the bytes of a UTF-8 character that is
/// still incomplete (for example one split over several byte-fallback tokens) are held back until the
/// character is complete. <see cref="Flush"/> emits what remains (an incomplete sequence becomes U+FFFD)
/// and starts a new stream.
/// </summary>
/// <remarks>
/// <para>
/// With the default <c>continuation: false</c>, the concatenation of everything returned equals
/// <see cref="ITokenizer.Decode"/> (llama.cpp's <c>llama_detokenize</c>) of the same ids with the same
/// removeSpecial/unparseSpecial flags. Note what llama_detokenize does at the start: when the vocabulary has
/// add_space_prefix (SentencePiece), it removes one leading space from the first piece, unless remove_special
/// dropped a leading BOS. So for generated ids alone (no BOS in front), a first token "▁Once" gives "Once",
/// which is exactly the <c>generated_text</c> llama.cpp records with
/// <c>llama_detokenize(generated, remove_special=false, unparse_special=false)</c>.
/// For byte-level BPE vocabularies (Llama 3) llama_detokenize also applies its clean_spaces pass
/// (no space before "?", "!", ".", "," and the English contractions); the stream prints the raw
/// pieces instead, as llama-cli does token by token, so there the two can differ.
/// </para>
/// <para>
/// With <c>continuation: true</c>, no space is removed: the output is the plain concatenation of
/// <c>llama_token_to_piece</c> pieces, which is what llama-cli / llama-simple print after the prompt
/// (so " there" following "Once upon a time" keeps its space).
/// </para>
/// <para>
/// With removeSpecial and a vocabulary that adds EOS, an EOS id is held back until another id follows, because
/// llama_detokenize drops only a final EOS; <see cref="Flush"/> drops it. The clean_spaces post-processing of
/// some BPE vocabularies is not applied (it is off for SentencePiece vocabularies).
/// </para>
/// <para>Not thread-safe. Apart from the returned strings, appending does not allocate (buffers grow rarely).</para>
/// </remarks>
public sealed class StreamingDetokenizer
{
    private readonly ITokenizer _tokenizer;
    private readonly Vocabulary _vocab;
    private readonly bool _removeSpecial;
    private readonly bool _unparseSpecial;
    private readonly bool _continuation;
    private readonly Decoder _decoder = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: false).GetDecoder();
    private char[] _chars = new char[64];
    private bool _atStart;
    private bool _removeSpace;
    private bool _pendingEos;

    /// <param name="tokenizer">the tokenizer whose pieces are used</param>
    /// <param name="removeSpecial">as llama_detokenize's remove_special: drop a leading BOS (if the vocabulary
    /// adds BOS) and a final EOS (if it adds EOS)</param>
    /// <param name="unparseSpecial">as llama_detokenize's unparse_special: print control tokens' text
    /// (false: control and unknown tokens print nothing)</param>
    /// <param name="continuation">true to never strip the first piece's leading space (text that continues a
    /// prompt, as llama-cli prints it); false to match llama_detokenize / <see cref="ITokenizer.Decode"/></param>
    public StreamingDetokenizer(ITokenizer tokenizer, bool removeSpecial = false, bool unparseSpecial = true, bool continuation = false)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        _tokenizer = tokenizer;
        _vocab = tokenizer.Vocabulary;
        _removeSpecial = removeSpecial;
        _unparseSpecial = unparseSpecial;
        _continuation = continuation;
        Reset();
    }

    /// <summary>Feeds one token id; returns the text completed by it (often empty, never null).</summary>
    public string Append(int id)
    {
        if (!_vocab.IsValidId(id))
            throw new ArgumentOutOfRangeException(nameof(id), id, $"token id must be in [0, {_vocab.Count})");

        if (_atStart)
        {
            _atStart = false;
            if (_removeSpecial && _vocab.AddBos && id == _vocab.Bos)
            {
                _removeSpace = false;
                return string.Empty;
            }
        }

        int n = 0;
        if (_removeSpecial && _vocab.AddEos)
        {
            if (_pendingEos)
            {
                n = Emit(_vocab.Eos, n); // the held-back EOS was not the last id after all
                _pendingEos = false;
            }
            if (id == _vocab.Eos)
            {
                _pendingEos = true;
                return n == 0 ? string.Empty : new string(_chars, 0, n);
            }
        }
        n = Emit(id, n);
        return n == 0 ? string.Empty : new string(_chars, 0, n);
    }

    /// <summary>Ends the stream: returns the held-back bytes (an incomplete character becomes U+FFFD) and resets.</summary>
    public string Flush()
    {
        EnsureChars(8);
        int n = _decoder.GetChars(ReadOnlySpan<byte>.Empty, _chars, flush: true);
        string s = n == 0 ? string.Empty : new string(_chars, 0, n);
        Reset();
        return s;
    }

    /// <summary>Starts a new stream, discarding held-back bytes.</summary>
    public void Reset()
    {
        _decoder.Reset();
        _atStart = true;
        _removeSpace = _vocab.AddSpacePrefix && !_continuation;
        _pendingEos = false;
    }

    private int Emit(int id, int at)
    {
        ReadOnlySpan<byte> piece = _tokenizer.TokenToPiece(id, _unparseSpecial);
        if (_removeSpace && piece.Length > 0 && piece[0] == (byte)' ') piece = piece[1..];
        _removeSpace = false;
        EnsureChars(at + piece.Length + 8); // a UTF-8 byte yields at most one char, plus up to 3 held-back bytes
        return at + _decoder.GetChars(piece, _chars.AsSpan(at), flush: false);
    }

    private void EnsureChars(int n)
    {
        if (_chars.Length < n)
        {
            var bigger = new char[Math.Max(n, _chars.Length * 2)];
            _chars.AsSpan().CopyTo(bigger);
            _chars = bigger;
        }
    }
}
