using Cria.Tokenizers;
using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace Cria.Conversion;

/// <summary>
/// Raised for any file that is not a well-formed SentencePiece model (<c>tokenizer.model</c>): the message names the
/// file, says what is wrong and, where it helps, at which byte offset.
/// </summary>
public sealed class SentencePieceModelException : Exception
{
    public SentencePieceModelException(string message) : base(message) { }
}

/// <summary>The segmentation algorithm a SentencePiece model was trained with (<c>TrainerSpec.ModelType</c>).</summary>
public enum SentencePieceModelType
{
    Unigram = 1,
    Bpe = 2,
    Word = 3,
    Char = 4,
}

/// <summary>One vocabulary entry of a SentencePiece model.</summary>
public readonly record struct SentencePiece(string Piece, float Score, TokenType Type);

/// <summary>
/// The parts of a serialized SentencePiece <c>ModelProto</c> (the <c>tokenizer.model</c> of Llama 1/2 and Code Llama)
/// that a GGUF vocabulary needs, read with a small bounds-checked protobuf decoder.
/// </summary>
/// <remarks>
/// <para>Read: <c>pieces</c> (field 1: piece = 1, score = 2, type = 3), <c>trainer_spec</c> (field 2: model_type = 3,
/// vocab_size = 4, byte_fallback = 35, unk_id = 40, bos_id = 41, eos_id = 42, pad_id = 43) and <c>normalizer_spec</c>
/// (field 3: add_dummy_prefix = 3, remove_extra_whitespaces = 4). Absent fields take the proto2 defaults of
/// <c>sentencepiece_model.proto</c> (Unigram, vocab_size 8000, unk 0, bos 1, eos 2, pad -1, no byte fallback, dummy
/// prefix on, extra whitespace removed); every other field is skipped by its wire type.</para>
/// <para>Malformed input — a truncated varint or length, a length past the end of its message, a wire type that is not
/// valid (or a group), a known field with the wrong wire type, a piece that is not UTF-8 or is empty or repeated, an
/// unknown piece type, an id outside the vocabulary — throws <see cref="SentencePieceModelException"/> naming the
/// file and the byte offset.</para>
/// </remarks>
public sealed class SentencePieceModelFile
{
    /// <summary>Files larger than this are not taken for SentencePiece models (Llama 2's is 0.5 MB).</summary>
    public const long MaxFileBytes = 256L << 20;

    private SentencePieceModelFile(string source, SentencePiece[] pieces)
    {
        Source = source;
        Pieces = pieces;
    }

    /// <summary>The file name used in messages.</summary>
    public string Source { get; }

    /// <summary>The vocabulary, in id order (SentencePiece's <c>vocab_size()</c> is its length).</summary>
    public IReadOnlyList<SentencePiece> Pieces { get; }

    public SentencePieceModelType ModelType { get; private set; } = SentencePieceModelType.Unigram;

    /// <summary><c>trainer_spec.vocab_size</c> (the training target; normally equal to the number of pieces).</summary>
    public int TrainerVocabSize { get; private set; } = 8000;

    public bool ByteFallback { get; private set; }

    /// <summary>Special ids of the trainer spec; -1 where the model has none.</summary>
    public int UnkId { get; private set; }
    public int BosId { get; private set; } = 1;
    public int EosId { get; private set; } = 2;
    public int PadId { get; private set; } = -1;

    /// <summary><c>normalizer_spec.add_dummy_prefix</c>: a space is put in front of the text before it is split.</summary>
    public bool AddDummyPrefix { get; private set; } = true;

    /// <summary><c>normalizer_spec.remove_extra_whitespaces</c>: leading, trailing and repeated spaces are removed.</summary>
    public bool RemoveExtraWhitespaces { get; private set; } = true;

    /// <summary>Reads a <c>tokenizer.model</c> file.</summary>
    /// <exception cref="SentencePieceModelException">the file is not a well-formed SentencePiece model</exception>
    public static SentencePieceModelFile Read(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        var info = new FileInfo(path);
        if (!info.Exists) throw new FileNotFoundException($"SentencePiece model not found: {path}", path);
        if (info.Length > MaxFileBytes)
            throw new SentencePieceModelException($"{path}: {info.Length} bytes is too large for a SentencePiece model (at most {MaxFileBytes})");
        return Parse(File.ReadAllBytes(path), path);
    }

    /// <summary>Parses a serialized <c>ModelProto</c>.</summary>
    /// <param name="source">name used in error messages</param>
    /// <exception cref="SentencePieceModelException">the bytes are not a well-formed SentencePiece model</exception>
    public static SentencePieceModelFile Parse(ReadOnlySpan<byte> data, string source = "tokenizer.model")
    {
        ArgumentNullException.ThrowIfNull(source);
        if (LooksLikeTiktoken(data))
            throw new SentencePieceModelException(
                $"{source}: not a SentencePiece model: it is a tiktoken BPE rank file (Llama 3's original tokenizer.model); convert the model's tokenizer.json instead");
        var pieces = new List<SentencePiece>();
        var trainer = new List<(int Offset, int Length)>();
        var normalizer = new List<(int Offset, int Length)>();
        var r = new ProtoReader(data, 0, source, "ModelProto");
        while (!r.End)
        {
            var (field, wire, at) = r.ReadTag();
            switch (field)
            {
                case 1:
                    r.Expect(field, wire, WireBytes, at, "pieces");
                    var piece = r.ReadBytes();
                    pieces.Add(ReadPiece(piece, r.Position - piece.Length, source, pieces.Count));
                    break;
                case 2 or 3:
                    r.Expect(field, wire, WireBytes, at, field == 2 ? "trainer_spec" : "normalizer_spec");
                    int length = r.ReadBytes().Length;
                    (field == 2 ? trainer : normalizer).Add((r.Position - length, length));
                    break;
                default:
                    r.Skip(wire, at);
                    break;
            }
        }
        if (pieces.Count == 0)
            throw new SentencePieceModelException($"{source}: not a SentencePiece model: it has no pieces");

        var model = new SentencePieceModelFile(source, pieces.ToArray());
        // Repeated occurrences of an embedded message are merged, later fields winning (protobuf semantics).
        foreach (var (offset, length) in trainer) model.ReadTrainerSpec(data.Slice(offset, length), offset);
        foreach (var (offset, length) in normalizer) model.ReadNormalizerSpec(data.Slice(offset, length), offset);
        model.Validate();
        return model;
    }

    /// <summary>
    /// True when the bytes start like a tiktoken rank file ("base64 rank" lines, the format of Llama 3's
    /// <c>original/tokenizer.model</c>), which shares the file name but is not a SentencePiece model.
    /// </summary>
    public static bool LooksLikeTiktoken(ReadOnlySpan<byte> data)
    {
        int newline = data[..Math.Min(data.Length, 512)].IndexOf((byte)'\n');
        if (newline <= 0) return false;
        var line = data[..newline];
        int space = line.IndexOf((byte)' ');
        if (space <= 0 || space == line.Length - 1) return false;
        foreach (byte b in line[..space])
            if (!(char.IsAsciiLetterOrDigit((char)b) || b is (byte)'+' or (byte)'/' or (byte)'=')) return false;
        foreach (byte b in line[(space + 1)..])
            if (!char.IsAsciiDigit((char)b)) return false;
        return true;
    }

    private const int WireVarint = 0, WireFixed64 = 1, WireBytes = 2, WireFixed32 = 5;

    private static SentencePiece ReadPiece(ReadOnlySpan<byte> message, int baseOffset, string source, int index)
    {
        string? text = null;
        float score = 0;
        var type = TokenType.Normal;
        var r = new ProtoReader(message, baseOffset, source, $"piece {index}");
        while (!r.End)
        {
            var (field, wire, at) = r.ReadTag();
            switch (field)
            {
                case 1:
                    r.Expect(field, wire, WireBytes, at, "piece");
                    int textAt = r.Position;
                    text = r.ReadUtf8(textAt);
                    break;
                case 2:
                    r.Expect(field, wire, WireFixed32, at, "score");
                    score = BitConverter.Int32BitsToSingle((int)r.ReadFixed32());
                    break;
                case 3:
                    r.Expect(field, wire, WireVarint, at, "type");
                    ulong t = r.ReadVarint();
                    if (t is < 1 or > 6)
                        throw r.Error(at, $"piece {index} has the unknown type {(long)t}");
                    type = (TokenType)t;
                    break;
                default:
                    r.Skip(wire, at);
                    break;
            }
        }
        if (string.IsNullOrEmpty(text))
            throw new SentencePieceModelException($"{source}: piece {index} (at byte {baseOffset}) has no text");
        return new SentencePiece(text, score, type);
    }

    private void ReadTrainerSpec(ReadOnlySpan<byte> message, int baseOffset)
    {
        var r = new ProtoReader(message, baseOffset, Source, "trainer_spec");
        while (!r.End)
        {
            var (field, wire, at) = r.ReadTag();
            switch (field)
            {
                case 3:
                    r.Expect(field, wire, WireVarint, at, "model_type");
                    ulong mt = r.ReadVarint();
                    if (mt is < 1 or > 4) throw r.Error(at, $"unknown trainer_spec.model_type {(long)mt}");
                    ModelType = (SentencePieceModelType)mt;
                    break;
                case 4:
                    r.Expect(field, wire, WireVarint, at, "vocab_size");
                    TrainerVocabSize = r.ReadInt32(at, "vocab_size");
                    break;
                case 35:
                    r.Expect(field, wire, WireVarint, at, "byte_fallback");
                    ByteFallback = r.ReadVarint() != 0;
                    break;
                case 40 or 41 or 42 or 43:
                    string name = field switch { 40 => "unk_id", 41 => "bos_id", 42 => "eos_id", _ => "pad_id" };
                    r.Expect(field, wire, WireVarint, at, name);
                    int id = r.ReadInt32(at, name);
                    switch (field)
                    {
                        case 40: UnkId = id; break;
                        case 41: BosId = id; break;
                        case 42: EosId = id; break;
                        default: PadId = id; break;
                    }
                    break;
                default:
                    r.Skip(wire, at);
                    break;
            }
        }
    }

    private void ReadNormalizerSpec(ReadOnlySpan<byte> message, int baseOffset)
    {
        var r = new ProtoReader(message, baseOffset, Source, "normalizer_spec");
        while (!r.End)
        {
            var (field, wire, at) = r.ReadTag();
            switch (field)
            {
                case 3:
                    r.Expect(field, wire, WireVarint, at, "add_dummy_prefix");
                    AddDummyPrefix = r.ReadVarint() != 0;
                    break;
                case 4:
                    r.Expect(field, wire, WireVarint, at, "remove_extra_whitespaces");
                    RemoveExtraWhitespaces = r.ReadVarint() != 0;
                    break;
                default:
                    r.Skip(wire, at);
                    break;
            }
        }
    }

    private void Validate()
    {
        int n = Pieces.Count;
        var seen = new Dictionary<string, int>(n, StringComparer.Ordinal);
        for (int i = 0; i < n; i++)
            if (!seen.TryAdd(Pieces[i].Piece, i))
                throw new SentencePieceModelException($"{Source}: pieces {seen[Pieces[i].Piece]} and {i} are both \"{Pieces[i].Piece}\"");
        foreach (var (name, id) in new[] { ("unk_id", UnkId), ("bos_id", BosId), ("eos_id", EosId), ("pad_id", PadId) })
            if (id < -1 || id >= n)
                throw new SentencePieceModelException(
                    $"{Source}: trainer_spec.{name} {id.ToString(CultureInfo.InvariantCulture)} is not a piece id (the model has {n} pieces; -1 means none)");
    }

    /// <summary>A protobuf wire-format reader over one message; every read is checked against the message's end.</summary>
    private ref struct ProtoReader
    {
        private readonly ReadOnlySpan<byte> _data;
        private readonly int _base;
        private readonly string _source, _message;
        private int _pos;

        public ProtoReader(ReadOnlySpan<byte> data, int baseOffset, string source, string message)
        {
            _data = data;
            _base = baseOffset;
            _source = source;
            _message = message;
            _pos = 0;
        }

        public readonly bool End => _pos >= _data.Length;

        /// <summary>Offset of the next byte in the whole file.</summary>
        public readonly int Position => _base + _pos;

        public readonly SentencePieceModelException Error(int fileOffset, string what) =>
            new($"{_source}: not a valid SentencePiece model: {what} (in {_message}, at byte {fileOffset})");

        public (int Field, int Wire, int At) ReadTag()
        {
            int at = Position;
            ulong tag = ReadVarint();
            int wire = (int)(tag & 7);
            ulong field = tag >> 3;
            if (field == 0 || field > (1 << 29) - 1) throw Error(at, $"field number {field} is out of range");
            if (wire is 3 or 4) throw Error(at, $"field {field} uses the group wire type {wire}, which SentencePiece models do not");
            if (wire is 6 or 7) throw Error(at, $"field {field} has the invalid wire type {wire}");
            return ((int)field, wire, at);
        }

        public ulong ReadVarint()
        {
            int at = Position;
            ulong result = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                if (_pos >= _data.Length) throw Error(at, "a varint runs past the end of its message");
                byte b = _data[_pos++];
                if (shift == 63 && b > 1) throw Error(at, "a varint is longer than 64 bits");
                result |= (ulong)(b & 0x7F) << shift;
                if ((b & 0x80) == 0) return result;
            }
            throw Error(at, "a varint is longer than 10 bytes");
        }

        /// <summary>An int32 varint (negative values are sign-extended to 10 bytes by protobuf).</summary>
        public int ReadInt32(int at, string name)
        {
            long v = unchecked((long)ReadVarint());
            if (v is < int.MinValue or > int.MaxValue) throw Error(at, $"{name} {v} does not fit an int32");
            return (int)v;
        }

        public uint ReadFixed32()
        {
            int at = Position;
            if (_data.Length - _pos < 4) throw Error(at, "a 32-bit value runs past the end of its message");
            uint v = BinaryPrimitives.ReadUInt32LittleEndian(_data.Slice(_pos, 4));
            _pos += 4;
            return v;
        }

        public ReadOnlySpan<byte> ReadBytes()
        {
            int at = Position;
            ulong length = ReadVarint();
            if (length > (ulong)(_data.Length - _pos))
                throw Error(at, $"a length of {length} bytes runs past the end of its message ({_data.Length - _pos} bytes left)");
            var slice = _data.Slice(_pos, (int)length);
            _pos += (int)length;
            return slice;
        }

        public string ReadUtf8(int at)
        {
            var bytes = ReadBytes();
            try
            {
                return StrictUtf8.GetString(bytes);
            }
            catch (DecoderFallbackException)
            {
                throw Error(at, "a piece is not valid UTF-8");
            }
        }

        public void Skip(int wire, int at)
        {
            switch (wire)
            {
                case WireVarint: ReadVarint(); break;
                case WireFixed64:
                    if (_data.Length - _pos < 8) throw Error(at, "a 64-bit value runs past the end of its message");
                    _pos += 8;
                    break;
                case WireBytes: ReadBytes(); break;
                case WireFixed32: ReadFixed32(); break;
                default: throw Error(at, $"invalid wire type {wire}");
            }
        }

        public readonly void Expect(int field, int wire, int expected, int at, string name)
        {
            if (wire != expected)
                throw Error(at, $"field {field} ({name}) has wire type {wire}, expected {expected}");
        }
    }

    private static readonly UTF8Encoding StrictUtf8 = new(false, true);
}
