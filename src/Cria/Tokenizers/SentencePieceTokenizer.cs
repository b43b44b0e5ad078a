using System.Buffers;
using System.Text;

namespace Cria.Tokenizers;

/// <summary>
/// The SentencePiece-BPE tokenizer of Llama 1/2 and Code Llama (<c>tokenizer.ggml.model = "llama"</c>), as
/// llama.cpp implements it (llm_tokenizer_spm):
/// <list type="bullet">
/// <item>special tokens are split out of the text first (user-defined always; control and unknown only with
/// parseSpecial), longest first, honouring lstrip/rstrip attributes;</item>
/// <item>each remaining text fragment gets a leading space if it is at the start of the text or follows a special
/// token (when the vocabulary has add_space_prefix), spaces become U+2581, and the fragment is split into code
/// points;</item>
/// <item>adjacent symbols are merged greedily, highest score of the merged token first (ties: leftmost);</item>
/// <item>a final symbol that is not a token is emitted as its UTF-8 bytes via the &lt;0xNN&gt; tokens.</item>
/// </list>
/// Instances are immutable and thread-safe.
/// </summary>
public sealed class SentencePieceTokenizer : TokenizerBase
{
    private const char SpaceEscape = '\u2581';

    private readonly Vocabulary _vocab;
    private readonly int[] _byteTokens = new int[256];

    [ThreadStatic] private static Session? t_session;

    public SentencePieceTokenizer(Vocabulary vocabulary)
        : base(Checked(vocabulary), MakePiece)
    {
        _vocab = vocabulary;


        // byte fallback: "<0xNN>" tokens, else a token whose text is that single (ASCII) character
        Span<char> hex = stackalloc char[6];
        for (int b = 0; b < 256; b++)
        {
            hex[0] = '<'; hex[1] = '0'; hex[2] = 'x';
            hex[3] = "0123456789ABCDEF"[b >> 4]; hex[4] = "0123456789ABCDEF"[b & 15]; hex[5] = '>';
            if (vocabulary.TryGetId(hex, out int id)) _byteTokens[b] = id;
            else if (b < 0x80 && vocabulary.TryGetId(((char)b).ToString(), out id)) _byteTokens[b] = id;
            else _byteTokens[b] = -1;
        }

    }


    // llama_token_to_piece for SPM, without lstrip
    private static Vocabulary Checked(Vocabulary vocabulary)
    {
        ArgumentNullException.ThrowIfNull(vocabulary);
        if (vocabulary.Model != "llama")
            throw new ArgumentException(
                $"SentencePieceTokenizer handles tokenizer.ggml.model 'llama', not '{vocabulary.Model}'", nameof(vocabulary));
        return vocabulary;
    }

    private static byte[] MakePiece(string text, TokenType type)
    {
        switch (type)
        {
            case TokenType.Control or TokenType.Unknown or TokenType.UserDefined:
                return Encoding.UTF8.GetBytes(text);
            case TokenType.Normal:
                return Encoding.UTF8.GetBytes(text.Replace(SpaceEscape, ' '));
            case TokenType.Byte:
                return [ParseByteToken(text)];
            default: // unused and undefined tokens print nothing
                return [];
        }
    }

    // "<0xNN>": strtol of the two characters after "<0x" (stops at the first non-hex digit)
    private static byte ParseByteToken(string text)
    {
        int value = 0;
        for (int i = 3; i < Math.Min(5, text.Length); i++)
        {
            int d = HexDigit(text[i]);
            if (d < 0) break;
            value = value * 16 + d;
        }
        return (byte)value;
    }

    private static int HexDigit(char c) => c switch
    {
        >= '0' and <= '9' => c - '0',
        >= 'a' and <= 'f' => c - 'a' + 10,
        >= 'A' and <= 'F' => c - 'A' + 10,
        _ => -1,
    };


    /// <inheritdoc/>
    protected override void EncodeText(string text, bool parseSpecial, List<int> result)
    {
        Session session = t_session ?? new Session();
        t_session = null; // not shared with a re-entrant call on this thread
        try
        {
            List<int> output = session.Output;
            output.Clear();
            List<TextFragment> fragments = Partition.Split(text, parseSpecial, session.FragmentsA, session.FragmentsB);
            bool prevSpecial = true; // the text start counts as "after a special token"
            foreach (TextFragment f in fragments)
            {
                if (f.Token >= 0)
                {
                    output.Add(f.Token);
                    prevSpecial = true;
                }
                else
                {
                    TokenizeFragment(text.AsSpan(f.Offset, f.Length), _vocab.AddSpacePrefix && prevSpecial, session);
                    prevSpecial = false;
                }
            }
            result.AddRange(output);
        }
        finally
        {
            session.Trim();
            t_session = session;
        }
    }


    // llm_tokenizer_spm_session::tokenize on one text fragment
    private void TokenizeFragment(ReadOnlySpan<char> raw, bool addPrefix, Session session)
    {
        // escape: optional leading space, then ' ' -> U+2581
        int length = raw.Length + (addPrefix ? 1 : 0);
        char[] buf = session.RentText(length);
        int p = 0;
        if (addPrefix) buf[p++] = SpaceEscape;
        foreach (char c in raw) buf[p++] = c == ' ' ? SpaceEscape : c;
        ReadOnlySpan<char> text = buf.AsSpan(0, length);

        // split into code points
        Symbol[] symbols = session.RentSymbols(length);
        int count = 0;
        for (int i = 0; i < length;)
        {
            int n = char.IsHighSurrogate(text[i]) && i + 1 < length && char.IsLowSurrogate(text[i + 1]) ? 2 : 1;
            symbols[count] = new Symbol { Start = i, Length = n, Prev = count - 1, Next = i + n == length ? -1 : count + 1 };
            count++;
            i += n;
        }
        if (count == 0) return;

        PriorityQueue<Bigram, Bigram> queue = session.Queue;
        queue.Clear();
        for (int i = 1; i < count; i++) TryAddBigram(text, symbols, i - 1, i, queue);

        while (queue.TryDequeue(out Bigram bigram, out _))
        {
            ref Symbol left = ref symbols[bigram.Left];
            ref Symbol right = ref symbols[bigram.Right];
            // skip stale entries: one side already merged away or grown
            if (left.Length == 0 || right.Length == 0 || left.Length + right.Length != bigram.Size) continue;

            left.Length += right.Length;
            right.Length = 0;
            left.Next = right.Next;
            if (right.Next >= 0) symbols[right.Next].Prev = bigram.Left;

            TryAddBigram(text, symbols, left.Prev, bigram.Left, queue);
            TryAddBigram(text, symbols, bigram.Left, left.Next, queue);
        }

        List<int> output = session.Output;
        Span<byte> small = stackalloc byte[16];
        for (int i = 0; i != -1; i = symbols[i].Next)
        {
            ReadOnlySpan<char> piece = text.Slice(symbols[i].Start, symbols[i].Length);
            if (_vocab.TryGetId(piece, out int id))
            {
                output.Add(id);
                continue;
            }
            // not a token: emit its UTF-8 bytes as byte tokens
            Span<byte> bytes = small;
            byte[]? rented = null;
            int max = Encoding.UTF8.GetMaxByteCount(piece.Length);
            if (max > bytes.Length) bytes = rented = ArrayPool<byte>.Shared.Rent(max);
            int nb = Encoding.UTF8.GetBytes(piece, bytes);
            for (int j = 0; j < nb; j++)
            {
                int t = _byteTokens[bytes[j]];
                if (t < 0)
                {
                    // llama.cpp throws here (no <0xNN> token); fall back to UNK where there is one
                    t = _vocab.Unk;
                    if (t < 0)
                        throw new InvalidOperationException(
                            $"the vocabulary has no byte token for 0x{bytes[j]:X2} and no unknown token");
                }
                output.Add(t);
            }
            if (rented != null) ArrayPool<byte>.Shared.Return(rented);
        }
    }

    private void TryAddBigram(ReadOnlySpan<char> text, Symbol[] symbols, int left, int right, PriorityQueue<Bigram, Bigram> queue)
    {
        if (left < 0 || right < 0) return;
        int size = symbols[left].Length + symbols[right].Length;
        if (!_vocab.TryGetId(text.Slice(symbols[left].Start, size), out int id)) return;
        var bigram = new Bigram(left, right, _vocab.GetScore(id), size);
        queue.Enqueue(bigram, bigram);
    }



    private struct Symbol
    {
        public int Prev, Next, Start, Length;
    }

    private readonly record struct Bigram(int Left, int Right, float Score, int Size);

    // higher score first; equal scores: lower left index first (llama.cpp's llm_bigram_spm comparator)
    private sealed class BigramOrder : IComparer<Bigram>
    {
        public static readonly BigramOrder Instance = new();

        public int Compare(Bigram a, Bigram b)
        {
            if (a.Score > b.Score) return -1;
            if (a.Score < b.Score) return 1;
            return a.Left.CompareTo(b.Left);
        }
    }

    // per-thread reusable buffers
    private sealed class Session
    {
        private const int KeepLimit = 1 << 16;
        private char[] _text = new char[256];
        private Symbol[] _symbols = new Symbol[256];
        public readonly PriorityQueue<Bigram, Bigram> Queue = new(BigramOrder.Instance);
        public readonly List<int> Output = new(256);
        public readonly List<TextFragment> FragmentsA = new(8), FragmentsB = new(8);

        public char[] RentText(int n)
        {
            if (_text.Length < n) _text = new char[Math.Max(n, _text.Length * 2)];
            return _text;
        }

        public Symbol[] RentSymbols(int n)
        {
            if (_symbols.Length < n) _symbols = new Symbol[Math.Max(n, _symbols.Length * 2)];
            return _symbols;
        }

        // do not keep huge buffers alive after a very long text
        public void Trim()
        {
            if (_text.Length > KeepLimit) _text = new char[256];
            if (_symbols.Length > KeepLimit) _symbols = new Symbol[256];
            if (Output.Capacity > KeepLimit) { Output.Clear(); Output.Capacity = 256; }
            Queue.Clear();
            if (Queue.EnsureCapacity(0) > KeepLimit) Queue.TrimExcess();
        }
    }
}
