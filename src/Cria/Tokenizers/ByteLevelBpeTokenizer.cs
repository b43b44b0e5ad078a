using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;

namespace Cria.Tokenizers;

/// <summary>
/// The byte-level BPE tokenizer of <c>tokenizer.ggml.model = "gpt2"</c> vocabularies (Llama 3 and others), as
/// llama.cpp implements it (llm_tokenizer_bpe):
/// <list type="bullet">
/// <item>special tokens are split out of the text first (user-defined always; control and unknown only with
/// parseSpecial), longest first, honouring lstrip/rstrip attributes (tokenizer_st_partition);</item>
/// <item>each remaining fragment is split into words by the pre-tokenizer regex (<see cref="BpePreTokenizer"/>);</item>
/// <item>each word's UTF-8 bytes are mapped to GPT-2's byte characters (<see cref="ByteLevelEncoding"/>); with
/// ignore_merges (Llama 3) a word that is a token as a whole becomes that token;</item>
/// <item>otherwise adjacent symbols are merged lowest merge rank first (ties: leftmost);</item>
/// <item>a final symbol that is not a token becomes the single-character tokens of its ASCII bytes (other bytes are
/// dropped, as in llama.cpp; this never happens with a complete vocabulary).</item>
/// </list>
/// Words are cached (text → ids), so repeated words cost a dictionary lookup. Instances are thread-safe.
/// </summary>
public sealed class ByteLevelBpeTokenizer : TokenizerBase
{
    private const int MaxCachedWordLength = 64;
    private const int CacheLimit = 1 << 17;

    private readonly Vocabulary _vocab;
    private readonly int[] _byteSymbol = new int[256]; // symbol id of each single-byte piece
    private readonly int[] _asciiToken = new int[128]; // token of a one-character ASCII text, or -1
    private readonly Dictionary<long, long> _merges;   // (left id, right id) -> (rank << 32) | merged id
    private readonly string[] _virtualTexts;           // texts of symbol ids >= Count (merge parts that are not tokens)
    private readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> _cacheLookup;
    private int _cacheCount;

    [ThreadStatic] private static Session? t_session;

    /// <summary>The pre-tokenizer pattern in use.</summary>
    public BpePreTokenizerKind PreTokenizer { get; }

    /// <summary>llama.cpp's ignore_merges: a word that is a token as a whole is not split (Llama 3).</summary>
    public bool IgnoreMerges { get; }

    /// <summary>Number of distinct merges (pairs of symbols) in the rank table.</summary>
    public int MergeCount => _merges.Count;

    /// <summary>Creates the tokenizer for the vocabulary's <c>tokenizer.ggml.pre</c>.</summary>
    /// <exception cref="NotSupportedException">the pre-tokenizer is not implemented</exception>
    public ByteLevelBpeTokenizer(Vocabulary vocabulary)
        : this(vocabulary, ResolvePreTokenizer(vocabulary))
    {
    }

    /// <summary>Creates the tokenizer with an explicit pre-tokenizer pattern and ignore_merges flag.</summary>
    public ByteLevelBpeTokenizer(Vocabulary vocabulary, BpePreTokenizerKind preTokenizer, bool ignoreMerges)
        : this(vocabulary, (preTokenizer, ignoreMerges))
    {
    }

    private ByteLevelBpeTokenizer(Vocabulary vocabulary, (BpePreTokenizerKind Kind, bool IgnoreMerges) pre)
        : base(Checked(vocabulary), MakePiece)
    {
        _vocab = vocabulary;
        PreTokenizer = pre.Kind;
        IgnoreMerges = pre.IgnoreMerges;
        _cacheLookup = _cache.GetAlternateLookup<ReadOnlySpan<char>>();



        for (int c = 0; c < 128; c++)
            _asciiToken[c] = vocabulary.TryGetId(((char)c).ToString(), out int t) ? t : -1;

        (_merges, _virtualTexts) = BuildMergeTable(vocabulary, _byteSymbol);
    }

    // The merge ranks keyed by symbol-id pairs. Symbols are token ids; texts that occur in merges but are not tokens
    // get "virtual" ids >= Count (their texts are returned).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static (Dictionary<long, long>, string[]) BuildMergeTable(Vocabulary vocabulary, int[] byteSymbol)
    {
        int n = vocabulary.Count;
        var virtualIds = new Dictionary<string, int>(StringComparer.Ordinal);
        var virtualLookup = virtualIds.GetAlternateLookup<ReadOnlySpan<char>>();
        var virtualTexts = new List<string>();
        int SymbolId(ReadOnlySpan<char> text)
        {
            if (vocabulary.TryGetId(text, out int id)) return id;
            if (virtualLookup.TryGetValue(text, out id)) return id;
            id = n + virtualTexts.Count;
            string s = text.ToString();
            virtualIds.Add(s, id);
            virtualTexts.Add(s);
            return id;
        }

        for (int b = 0; b < 256; b++) byteSymbol[b] = SymbolId([ByteLevelEncoding.ByteToChar((byte)b)]);

        IReadOnlyList<string> merges = vocabulary.Merges!;
        var table = new Dictionary<long, long>(merges.Count, PairComparer.Instance);
        char[] buffer = new char[256];
        for (int rank = 0; rank < merges.Count; rank++)
        {
            // llama.cpp: split at the first space after the first character
            string m = merges[rank] ?? "";
            int sp = m.Length > 1 ? m.IndexOf(' ', 1) : -1;
            if (sp < 0) continue; // llama.cpp records ("", ""), which never matches a symbol
            ReadOnlySpan<char> first = m.AsSpan(0, sp), second = m.AsSpan(sp + 1);
            if (second.Length == 0) continue; // an empty symbol never exists
            if (buffer.Length < m.Length) buffer = new char[m.Length * 2];
            first.CopyTo(buffer);
            second.CopyTo(buffer.AsSpan(first.Length));
            int left = SymbolId(first), right = SymbolId(second);
            int merged = SymbolId(buffer.AsSpan(0, first.Length + second.Length));
            table.TryAdd(Key(left, right), ((long)rank << 32) | (uint)merged); // first occurrence wins (emplace)
        }
        return (table, [.. virtualTexts]);
    }

    /// <summary>
    /// The pre-tokenizer and ignore_merges flag llama.cpp uses for a <c>tokenizer.ggml.pre</c> value, or false when
    /// this implementation does not support it.
    /// </summary>
    public static bool TryGetPreTokenizer(string? pre, out BpePreTokenizerKind kind, out bool ignoreMerges)
    {
        switch (pre)
        {
            case "llama3" or "llama-v3" or "llama-bpe" or "falcon3":
                kind = BpePreTokenizerKind.Llama3; ignoreMerges = true; return true;
            case "dbrx" or "smaug-bpe":
                kind = BpePreTokenizerKind.Llama3; ignoreMerges = false; return true;
            case "gpt-2" or "phi-2":
                kind = BpePreTokenizerKind.Gpt2; ignoreMerges = false; return true;
            default:
                kind = default; ignoreMerges = false; return false;
        }
    }

    private static (BpePreTokenizerKind, bool) ResolvePreTokenizer(Vocabulary vocabulary)
    {
        ArgumentNullException.ThrowIfNull(vocabulary);
        if (!TryGetPreTokenizer(vocabulary.Pre, out var kind, out bool ignore))
            throw new NotSupportedException(
                $"the pre-tokenizer '{vocabulary.Pre ?? "(none: llama.cpp's 'default')"}' of tokenizer model 'gpt2' is not supported; " +
                "supported are llama-bpe (also llama3, llama-v3, falcon3), smaug-bpe, dbrx, gpt-2 and phi-2");
        return (kind, ignore);
    }


    private static long Key(int left, int right) => ((long)left << 32) | (uint)right;

    // llama_token_to_piece for BPE, without lstrip
    private static Vocabulary Checked(Vocabulary vocabulary)
    {
        ArgumentNullException.ThrowIfNull(vocabulary);
        if (vocabulary.Model != "gpt2")
            throw new ArgumentException(
                $"ByteLevelBpeTokenizer handles tokenizer.ggml.model 'gpt2', not '{vocabulary.Model}'", nameof(vocabulary));
        if (vocabulary.Merges is null)
            throw new ArgumentException("the vocabulary has no BPE merges", nameof(vocabulary));
        return vocabulary;
    }

    private static byte[] MakePiece(string text, TokenType type)
    {
        switch (type)
        {
            case TokenType.Control or TokenType.Unknown or TokenType.UserDefined:
                return Encoding.UTF8.GetBytes(text);
            case TokenType.Normal:
                return DecodeTokenText(text);
            default: // unused, byte and undefined tokens print nothing
                return [];
        }
    }

    // llama_decode_text: each character back to its byte; characters outside the byte map become
    // "[UNK_BYTE_0x<utf-8 hex><token text>]", as llama.cpp prints them
    private static byte[] DecodeTokenText(string text)
    {
        bool simple = true;
        foreach (char c in text)
            if (ByteLevelEncoding.CharToByte(c) < 0) { simple = false; break; }
        if (simple)
        {
            var bytes = new byte[text.Length];
            for (int i = 0; i < text.Length; i++) bytes[i] = (byte)ByteLevelEncoding.CharToByte(text[i]);
            return bytes;
        }
        var output = new List<byte>(text.Length + 32);
        Span<byte> utf8 = stackalloc byte[4];
        foreach (Rune r in text.EnumerateRunes())
        {
            int b = ByteLevelEncoding.CharToByte(r.Value);
            if (b >= 0)
            {
                output.Add((byte)b);
                continue;
            }
            int len = r.EncodeToUtf8(utf8);
            var sb = new StringBuilder("[UNK_BYTE_0x");
            for (int i = 0; i < len; i++) sb.Append(utf8[i].ToString("x2", System.Globalization.CultureInfo.InvariantCulture));
            sb.Append(text).Append(']');
            output.AddRange(Encoding.UTF8.GetBytes(sb.ToString()));
        }
        return [.. output];
    }


    /// <inheritdoc/>
    protected override void EncodeText(string text, bool parseSpecial, List<int> result)
    {
        Session session = t_session ?? new Session();
        t_session = null; // not shared with a re-entrant call on this thread
        try
        {
            List<int> output = session.Output;
            output.Clear();
            foreach (TextFragment f in Partition.Split(text, parseSpecial, session.FragmentsA, session.FragmentsB))
            {
                if (f.Token >= 0) output.Add(f.Token);
                else TokenizeFragment(text.AsSpan(f.Offset, f.Length), session);
            }
            result.AddRange(output);
        }
        finally
        {
            session.Trim();
            t_session = session;
        }
    }


    // llm_tokenizer_bpe_session::tokenize on one text fragment (valid UTF-16)
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void TokenizeFragment(ReadOnlySpan<char> text, Session session)
    {
        // code points, their flags and where each starts in the text
        session.EnsureCodePoints(text.Length);
        int[] cps = session.CodePoints;
        byte[] flags = session.Flags;
        int[] charStart = session.CharStarts;
        int n = 0;
        for (int i = 0; i < text.Length;)
        {
            char c = text[i];
            int cp = c;
            int used = 1;
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                cp = char.ConvertToUtf32(c, text[i + 1]);
                used = 2;
            }
            cps[n] = cp;
            flags[n] = BpePreTokenizer.Flags(cp);
            charStart[n] = i;
            n++;
            i += used;
        }
        charStart[n] = text.Length;

        List<int> ends = session.WordEnds;
        ends.Clear();
        BpePreTokenizer.SplitWords(PreTokenizer, cps.AsSpan(0, n), flags.AsSpan(0, n), ends);

        List<int> output = session.Output;
        int start = 0;
        foreach (int end in ends)
        {
            ReadOnlySpan<char> word = text[charStart[start]..charStart[end]];
            start = end;
            if (word.Length <= MaxCachedWordLength && _cacheLookup.TryGetValue(word, out int[]? cached))
            {
                output.AddRange(cached);
                continue;
            }
            List<int> ids = session.WordIds;
            ids.Clear();
            EncodeWord(word, session, ids);
            output.AddRange(CollectionsMarshal.AsSpan(ids));
            if (word.Length <= MaxCachedWordLength)
            {
                if (Interlocked.Increment(ref _cacheCount) > CacheLimit)
                {
                    _cache.Clear();
                    Interlocked.Exchange(ref _cacheCount, 0);
                }
                _cache.TryAdd(word.ToString(), ids.ToArray());
            }
        }
    }

    // byte-level encoding + BPE merges of one pre-tokenizer word
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void EncodeWord(ReadOnlySpan<char> word, Session session, List<int> ids)
    {
        byte[] bytes = session.RentBytes(Encoding.UTF8.GetMaxByteCount(word.Length));
        int nb = Encoding.UTF8.GetBytes(word, bytes);
        if (nb == 0) return;

        if (IgnoreMerges)
        {
            char[] chars = session.RentChars(nb);
            ByteLevelEncoding.Encode(bytes.AsSpan(0, nb), chars);
            if (_vocab.TryGetId(chars.AsSpan(0, nb), out int whole))
            {
                ids.Add(whole);
                return;
            }
        }

        Symbol[] symbols = session.RentSymbols(nb);
        for (int i = 0; i < nb; i++)
            symbols[i] = new Symbol { Id = _byteSymbol[bytes[i]], Prev = i - 1, Next = i + 1 == nb ? -1 : i + 1, Alive = true };

        BigramHeap queue = session.Queue;
        queue.Clear();
        for (int i = 1; i < nb; i++) TryAddBigram(symbols, i - 1, i, queue);

        while (queue.Count > 0)
        {
            Bigram bigram = queue.Pop();
            ref Symbol left = ref symbols[bigram.Left];
            ref Symbol right = ref symbols[bigram.Right];
            // stale: a side was merged away, or grew (then its id changed)
            if (!left.Alive || !right.Alive || left.Id != bigram.LeftId || right.Id != bigram.RightId) continue;

            left.Id = bigram.MergedId;
            right.Alive = false;
            left.Next = right.Next;
            if (right.Next >= 0) symbols[right.Next].Prev = bigram.Left;

            TryAddBigram(symbols, left.Prev, bigram.Left, queue);
            TryAddBigram(symbols, bigram.Left, left.Next, queue);
        }

        int count = _vocab.Count;
        for (int i = 0; i != -1; i = symbols[i].Next)
        {
            int id = symbols[i].Id;
            if (id < count)
            {
                ids.Add(id);
                continue;
            }
            // not a token: llama.cpp looks up each byte of the symbol's text as a one-byte token
            foreach (char c in _virtualTexts[id - count])
            {
                if (c < 128 && _asciiToken[c] >= 0) ids.Add(_asciiToken[c]);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void TryAddBigram(Symbol[] symbols, int left, int right, BigramHeap queue)
    {
        if (left < 0 || right < 0) return;
        int l = symbols[left].Id, r = symbols[right].Id;
        if (!_merges.TryGetValue(Key(l, r), out long entry)) return;
        long rank = entry >>> 32;
        // lowest rank first; equal ranks: leftmost first (llama.cpp's llm_bigram_bpe comparator)
        queue.Push(new Bigram(left, right, l, r, (int)(entry & 0xFFFFFFFF), (rank << 32) | (uint)left));
    }



    private struct Symbol
    {
        public int Id, Prev, Next;
        public bool Alive;
    }

    private readonly record struct Bigram(int Left, int Right, int LeftId, int RightId, int MergedId, long Priority);

    // A binary min-heap on Bigram.Priority (PriorityQueue would run unoptimized JIT code for the first calls of a
    // process, which made long words several times slower).
    private sealed class BigramHeap
    {
        private Bigram[] _items = new Bigram[64];

        public int Count { get; private set; }

        public int Capacity => _items.Length;

        public void Clear() => Count = 0;

        public void TrimExcess() => _items = new Bigram[64];

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Push(in Bigram item)
        {
            if (Count == _items.Length) Array.Resize(ref _items, _items.Length * 2);
            Bigram[] a = _items;
            int i = Count++;
            while (i > 0)
            {
                int parent = (i - 1) >> 1;
                if (a[parent].Priority <= item.Priority) break;
                a[i] = a[parent];
                i = parent;
            }
            a[i] = item;
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public Bigram Pop()
        {
            Bigram[] a = _items;
            Bigram top = a[0];
            int n = --Count;
            if (n > 0)
            {
                Bigram last = a[n];
                int i = 0;
                while (true)
                {
                    int child = 2 * i + 1;
                    if (child >= n) break;
                    if (child + 1 < n && a[child + 1].Priority < a[child].Priority) child++;
                    if (a[child].Priority >= last.Priority) break;
                    a[i] = a[child];
                    i = child;
                }
                a[i] = last;
            }
            return top;
        }
    }

    // long.GetHashCode is left ^ right, which puts every (x, x) pair (and many near-diagonal ones) in one bucket
    private sealed class PairComparer : IEqualityComparer<long>
    {
        public static readonly PairComparer Instance = new();
        public bool Equals(long a, long b) => a == b;
        public int GetHashCode(long key) => (int)(((ulong)key * 0x9E3779B97F4A7C15UL) >> 32);
    }

    // per-thread reusable buffers
    private sealed class Session
    {
        private const int KeepLimit = 1 << 16;
        public int[] CodePoints = new int[256];
        public byte[] Flags = new byte[256];
        public int[] CharStarts = new int[257];
        private byte[] _bytes = new byte[256];
        private char[] _chars = new char[256];
        private Symbol[] _symbols = new Symbol[256];
        public readonly BigramHeap Queue = new();
        public readonly List<int> Output = new(256);
        public readonly List<int> WordEnds = new(256);
        public readonly List<int> WordIds = new(64);
        public readonly List<TextFragment> FragmentsA = new(8), FragmentsB = new(8);

        public void EnsureCodePoints(int n)
        {
            if (CodePoints.Length < n)
            {
                int size = Math.Max(n, CodePoints.Length * 2);
                CodePoints = new int[size];
                Flags = new byte[size];
                CharStarts = new int[size + 1];
            }
        }

        public byte[] RentBytes(int n)
        {
            if (_bytes.Length < n) _bytes = new byte[Math.Max(n, _bytes.Length * 2)];
            return _bytes;
        }

        public char[] RentChars(int n)
        {
            if (_chars.Length < n) _chars = new char[Math.Max(n, _chars.Length * 2)];
            return _chars;
        }

        public Symbol[] RentSymbols(int n)
        {
            if (_symbols.Length < n) _symbols = new Symbol[Math.Max(n, _symbols.Length * 2)];
            return _symbols;
        }

        // do not keep huge buffers alive after a very long text
        public void Trim()
        {
            if (CodePoints.Length > KeepLimit)
            {
                CodePoints = new int[256];
                Flags = new byte[256];
                CharStarts = new int[257];
            }
            if (_bytes.Length > KeepLimit) _bytes = new byte[256];
            if (_chars.Length > KeepLimit) _chars = new char[256];
            if (_symbols.Length > KeepLimit) _symbols = new Symbol[256];
            if (Output.Capacity > KeepLimit) { Output.Clear(); Output.Capacity = 256; }
            if (WordEnds.Capacity > KeepLimit) { WordEnds.Clear(); WordEnds.Capacity = 256; }
            if (WordIds.Capacity > KeepLimit) { WordIds.Clear(); WordIds.Capacity = 64; }
            Queue.Clear();
            if (Queue.Capacity > KeepLimit) Queue.TrimExcess();
        }
    }
}
