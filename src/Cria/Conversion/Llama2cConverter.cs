using Cria.Tokenizers;
using System.Text;
using Cria.Gguf;
using Cria.Numerics;
using Cria.Numerics.Formats;

namespace Cria.Conversion;

/// <summary>
/// Converts a llama2.c checkpoint (Karpathy's <c>run.c</c> format: a 7-int header, then float32
/// weights) and its <c>tokenizer.bin</c> into a GGUF file laid out as llama.cpp's
/// convert-llama2c-to-ggml writes it: same metadata keys, tensor names and order. llama2.c
/// already stores Q and K in the adjacent-pair RoPE layout, so no permutation is applied.
/// </summary>
public static class Llama2cConverter
{
    /// <summary>The header of a llama2.c checkpoint.</summary>
    public sealed record Header(int Dim, int HiddenDim, int Layers, int Heads, int KvHeads, int VocabSize, bool SharedClassifier, int SeqLen)
    {
        public int HeadSize => Dim / Heads;
    }

    public static Header ReadHeader(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length < 28) throw new InvalidDataException("not a llama2.c checkpoint: shorter than its 28-byte header");
        Span<int> v = stackalloc int[7];
        for (int i = 0; i < 7; i++) v[i] = BitConverter.ToInt32(bytes.Slice(4 * i, 4));
        int dim = v[0], hidden = v[1], layers = v[2], heads = v[3], kvHeads = v[4], vocab = v[5], seq = v[6];
        bool shared = vocab > 0;
        vocab = Math.Abs(vocab);
        if (dim <= 0 || hidden <= 0 || layers <= 0 || heads <= 0 || kvHeads <= 0 || vocab <= 0 || seq <= 0
            || dim > 1 << 16 || hidden > 1 << 18 || layers > 1024 || vocab > 1 << 20 || seq > 1 << 20)
            throw new InvalidDataException($"not a llama2.c checkpoint: implausible header (dim {dim}, hidden {hidden}, layers {layers}, heads {heads}, kv heads {kvHeads}, vocab {vocab}, seq_len {seq})");
        if (dim % heads != 0 || heads % kvHeads != 0)
            throw new InvalidDataException($"llama2.c header is inconsistent: dim {dim}, heads {heads}, kv heads {kvHeads}");
        return new Header(dim, hidden, layers, heads, kvHeads, vocab, shared, seq);
    }

    /// <summary>Reads llama2.c's tokenizer.bin: max token length, then (score, length, bytes) per token.</summary>
    public static (string[] Tokens, float[] Scores, int[] Types) ReadVocabulary(string path, int vocabSize)
    {
        byte[] b = File.ReadAllBytes(path);
        int pos = 4;
        var tokens = new string[vocabSize];
        var scores = new float[vocabSize];
        var types = new int[vocabSize];
        for (int id = 0; id < vocabSize; id++)
        {
            if (pos + 8 > b.Length) throw new InvalidDataException($"{path} is truncated at token {id} of {vocabSize}");
            float score = BitConverter.ToSingle(b, pos);
            int len = BitConverter.ToInt32(b, pos + 4);
            pos += 8;
            if (len < 0 || len > b.Length - pos) throw new InvalidDataException($"{path}: token {id} has an impossible length {len}");
            string text = Encoding.UTF8.GetString(b, pos, len);
            pos += len;
            var type = TokenType.Normal;
            if (id == 0) { text = "<unk>"; type = TokenType.Unknown; }
            else if (id == 1) { text = "<s>"; type = TokenType.Control; }
            else if (id == 2) { text = "</s>"; type = TokenType.Control; }
            else if (IsByteToken(text)) type = TokenType.Byte;
            else text = text.Replace(' ', '\u2581');
            tokens[id] = text;
            scores[id] = score;
            types[id] = (int)type;
        }
        return (tokens, scores, types);
    }


    private static bool IsByteToken(string t) =>
        t.Length == 6 && t.StartsWith("<0x", StringComparison.Ordinal) && t[5] == '>' && Uri.IsHexDigit(t[3]) && Uri.IsHexDigit(t[4]);

    /// <summary>Converts <paramref name="checkpoint"/> with <paramref name="vocabulary"/> into a GGUF file.</summary>
    /// <param name="vocabulary">llama2.c's tokenizer.bin, or (a name ending in ".model") the SentencePiece tokenizer.model it
    /// was exported from, whose pieces, scores, types and special ids are then taken as they are
    /// (<see cref="SentencePieceVocabConverter"/>)</param>
    /// <param name="outputType">F32, F16, BF16 or Q8_0 for the matrices (rows that do not fit the block size stay F16); norms stay F32.</param>
    public static void Convert(string checkpoint, string vocabulary, string output, GgmlType outputType = GgmlType.F32, IProgress<string>? progress = null)
    {
        if (outputType is not (GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 or GgmlType.Q8_0))
            throw new ArgumentException($"output type {GgmlTypeInfo.Name(outputType)} is not supported (f32, f16, bf16, q8_0)");
        if (!File.Exists(checkpoint)) throw new FileNotFoundException($"checkpoint not found: {checkpoint}", checkpoint);
        if (!File.Exists(vocabulary)) throw new FileNotFoundException($"vocabulary not found: {vocabulary}", vocabulary);
        byte[] bytes = File.ReadAllBytes(checkpoint);
        var h = ReadHeader(bytes);
        int hs = h.HeadSize, kvDim = h.KvHeads * hs, L = h.Layers, d = h.Dim, ff = h.HiddenDim, V = h.VocabSize;

        long expected = 28 + 4L * ((long)V * d + L * d + L * (long)d * d + 2L * L * d * kvDim + L * (long)d * d
            + L * d + 3L * L * d * ff + d + (long)h.SeqLen * hs) + (h.SharedClassifier ? 0 : 4L * V * d);
        if (bytes.LongLength < expected)
            throw new InvalidDataException($"{checkpoint} is truncated: the header describes {expected} bytes of weights but the file has {bytes.LongLength}");

        string[] tokens; float[] scores; int[] types;
        uint unk = 0, bos = 1, eos = 2;
        bool addSpacePrefix = true;
        if (vocabulary.EndsWith(".model", StringComparison.OrdinalIgnoreCase))
        {
            var sp = SentencePieceModelFile.Read(vocabulary);
            if (sp.Pieces.Count != V)
                throw new InvalidDataException($"{vocabulary} has {sp.Pieces.Count} pieces but the checkpoint's vocabulary has {V} tokens");
            var v = SentencePieceVocabConverter.Build(sp, V, null, null, null, HfTokenIds.None);
            (tokens, scores, types) = (v.Tokens, v.Scores, v.Types);
            uint Id(int id) => id < 0 ? uint.MaxValue : (uint)id;
            (unk, bos, eos) = (Id(sp.UnkId), Id(sp.BosId), Id(sp.EosId));
            addSpacePrefix = sp.AddDummyPrefix;
        }
        else
        {
            (tokens, scores, types) = ReadVocabulary(vocabulary, V);
        }
        long offset = 28;
        float[] Take(long count)
        {
            var f = new float[count];
            Buffer.BlockCopy(bytes, (int)offset, f, 0, (int)(count * 4));
            offset += count * 4;
            return f;
        }

        float[] embedding = Take((long)V * d);
        float[] rmsAtt = Take((long)L * d);
        float[] wq = Take((long)L * d * d);
        float[] wk = Take((long)L * d * kvDim);
        float[] wv = Take((long)L * d * kvDim);
        float[] wo = Take((long)L * d * d);
        float[] rmsFfn = Take((long)L * d);
        float[] w1 = Take((long)L * d * ff);
        float[] w2 = Take((long)L * ff * d);
        float[] w3 = Take((long)L * d * ff);
        float[] rmsFinal = Take(d);
        offset += 4L * h.SeqLen * hs; // freq_cis_real and freq_cis_imag (half a head each): unused
        float[] classifier = h.SharedClassifier ? embedding : Take((long)V * d);

        var w = new GgufWriter()
            .Set("tokenizer.ggml.tokens", GgufArray.Of(tokens))
            .Set("tokenizer.ggml.scores", GgufArray.Of(scores))
            .Set("tokenizer.ggml.token_type", GgufArray.Of(types))
            .Set("tokenizer.ggml.model", "llama")
            .Set("general.architecture", "llama")
            .Set("general.name", "llama")
            .Set("tokenizer.ggml.unknown_token_id", unk)
            .Set("tokenizer.ggml.bos_token_id", bos)
            .Set("tokenizer.ggml.eos_token_id", eos)
            .Set("tokenizer.ggml.seperator_token_id", uint.MaxValue)
            .Set("tokenizer.ggml.padding_token_id", uint.MaxValue)
            .Set("llama.context_length", (uint)h.SeqLen)
            .Set("llama.embedding_length", (uint)d)
            .Set("llama.feed_forward_length", (uint)ff)
            .Set("llama.attention.head_count", (uint)h.Heads)
            .Set("llama.attention.head_count_kv", (uint)h.KvHeads)
            .Set("llama.block_count", (uint)L)
            .Set("llama.rope.dimension_count", (uint)hs)
            .Set("llama.attention.layer_norm_rms_epsilon", 1e-5f);
        if (!addSpacePrefix) w.Set("tokenizer.ggml.add_space_prefix", false);
        if (outputType != GgmlType.F32) w.Set("general.file_type", outputType switch
        {
            GgmlType.F16 => 1u, GgmlType.BF16 => 32u, _ => 7u,
        });

        void Matrix(string name, float[] src, long start, int cols, int rows)
        {
            var type = outputType;
            if (cols % GgmlTypeInfo.BlockSize(type) != 0) type = GgmlType.F16;
            var values = new ReadOnlySpan<float>(src, (int)start, cols * rows).ToArray();
            w.AddTensor(name, type, new long[] { cols, rows }, RowEncoder.Encode(type, values, cols));
        }
        void Vector(string name, float[] src, long start, int n) =>
            w.AddTensor(name, new ReadOnlySpan<float>(src, (int)start, n).ToArray(), new long[] { n });

        Matrix("token_embd.weight", embedding, 0, d, V);
        Vector("output_norm.weight", rmsFinal, 0, d);
        Matrix("output.weight", classifier, 0, d, V);
        for (int l = 0; l < L; l++)
        {
            string p = $"blk.{l}.";
            Matrix(p + "attn_q.weight", wq, (long)l * d * d, d, d);
            Matrix(p + "attn_k.weight", wk, (long)l * d * kvDim, d, kvDim);
            Matrix(p + "attn_v.weight", wv, (long)l * d * kvDim, d, kvDim);
            Matrix(p + "attn_output.weight", wo, (long)l * d * d, d, d);
            Vector(p + "attn_norm.weight", rmsAtt, (long)l * d, d);
            Matrix(p + "ffn_gate.weight", w1, (long)l * d * ff, d, ff);
            Matrix(p + "ffn_down.weight", w2, (long)l * ff * d, ff, d);
            Matrix(p + "ffn_up.weight", w3, (long)l * d * ff, d, ff);
            Vector(p + "ffn_norm.weight", rmsFfn, (long)l * d, d);
            progress?.Report($"layer {l + 1}/{L}");
        }
        w.Write(output);
    }
}
