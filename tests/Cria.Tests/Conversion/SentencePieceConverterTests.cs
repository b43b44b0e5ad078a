using System.Text;
using System.Text.Json;
using Cria.Conversion;
using Cria.Gguf;
using Cria.Model;
using Cria.Tests.Cli;
using Cria.Tokenizers;
using Xunit;
using static Cria.Tests.Tokenizers.TokenizerTestData;

namespace Cria.Tests.Conversion;

/// <summary>
/// tokenizer.model (SentencePiece protobuf) → GGUF vocabulary: the reader, llama.cpp's converter rules, the real Llama 2
/// model against llama.cpp's own vocab file and tokenizer vectors, and malformed input.
/// </summary>
public sealed class SentencePieceConverterTests : IDisposable
{
    private const string Llama2Model = "llama2-tokenizer/tokenizer.model";

    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"cria-spm-{Guid.NewGuid():N}");

    public SentencePieceConverterTests() => Directory.CreateDirectory(_dir);

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    private string WriteFile(string name, string content)
    {
        string p = Path.Combine(_dir, name);
        Directory.CreateDirectory(Path.GetDirectoryName(p)!);
        File.WriteAllText(p, content);
        return p;
    }

    // ---- a protobuf writer for synthetic models ----

    private static class Proto
    {
        public static void Varint(List<byte> b, ulong v)
        {
            while (v >= 0x80) { b.Add((byte)(v | 0x80)); v >>= 7; }
            b.Add((byte)v);
        }

        public static void Tag(List<byte> b, int field, int wire) => Varint(b, (ulong)((field << 3) | wire));

        public static void Bytes(List<byte> b, int field, byte[] data)
        {
            Tag(b, field, 2);
            Varint(b, (ulong)data.Length);
            b.AddRange(data);
        }

        public static void Int(List<byte> b, int field, long v)
        {
            Tag(b, field, 0);
            Varint(b, unchecked((ulong)v));
        }

        public static void Float(List<byte> b, int field, float v)
        {
            Tag(b, field, 5);
            b.AddRange(BitConverter.GetBytes(v));
        }
    }

    private static byte[] Piece(string text, float score, int type)
    {
        var b = new List<byte>();
        Proto.Bytes(b, 1, Encoding.UTF8.GetBytes(text));
        Proto.Float(b, 2, score);
        if (type != 1) Proto.Int(b, 3, type);
        return b.ToArray();
    }

    /// <summary>A ModelProto: pieces, then a trainer_spec and a normalizer_spec holding what is given.</summary>
    private static byte[] Model(IEnumerable<(string Text, float Score, int Type)> pieces, int modelType = 2, int? unk = null, int? bos = null,
        int? eos = null, int? pad = null, bool? addDummyPrefix = null, bool? removeExtraWhitespaces = null)
    {
        var b = new List<byte>();
        foreach (var (text, score, type) in pieces) Proto.Bytes(b, 1, Piece(text, score, type));
        var trainer = new List<byte>();
        Proto.Bytes(trainer, 1, Encoding.UTF8.GetBytes("corpus.txt")); // input: an unrelated field, skipped
        Proto.Int(trainer, 3, modelType);
        Proto.Int(trainer, 4, 99);
        Proto.Int(trainer, 35, 1);
        if (unk is int u) Proto.Int(trainer, 40, u);
        if (bos is int s) Proto.Int(trainer, 41, s);
        if (eos is int e) Proto.Int(trainer, 42, e);
        if (pad is int p) Proto.Int(trainer, 43, p);
        Proto.Bytes(b, 2, trainer.ToArray());
        var normalizer = new List<byte>();
        Proto.Bytes(normalizer, 1, Encoding.UTF8.GetBytes("identity"));
        if (addDummyPrefix is bool a) Proto.Int(normalizer, 3, a ? 1 : 0);
        if (removeExtraWhitespaces is bool r) Proto.Int(normalizer, 4, r ? 1 : 0);
        Proto.Bytes(b, 3, normalizer.ToArray());
        return b.ToArray();
    }

    /// <summary>11 pieces: unk, bos, eos, two byte pieces, normal pieces, a user-defined one and an unused one.</summary>
    private static readonly (string, float, int)[] SmallPieces =
    [
        ("<unk>", 0, 2), ("<s>", 0, 3), ("</s>", 0, 3), ("<0x0A>", 0, 6), ("<0x41>", 0, 6),
        ("\u2581", -1, 1), ("\u2581a", -2, 1), ("b", -3, 1), ("<sep>", 0, 4), ("<gone>", 0, 5), ("\u2581ab", -4, 1),
    ];

    // ---- the real Llama 2 tokenizer.model ----

    [SkippableFact]
    public void Llama2TokenizerModel_IsReadAsSentencePieceBpe()
    {
        var sp = SentencePieceModelFile.Read(RefData.Require(Llama2Model));
        Assert.Equal(32000, sp.Pieces.Count);
        Assert.Equal(SentencePieceModelType.Bpe, sp.ModelType);
        Assert.Equal(32000, sp.TrainerVocabSize);
        Assert.True(sp.ByteFallback);
        Assert.Equal((0, 1, 2, -1), (sp.UnkId, sp.BosId, sp.EosId, sp.PadId));
        Assert.True(sp.AddDummyPrefix);
        Assert.False(sp.RemoveExtraWhitespaces);
        Assert.Equal(new SentencePiece("<unk>", 0, Cria.Tokenizers.TokenType.Unknown), sp.Pieces[0]);
        Assert.Equal(new SentencePiece("<s>", 0, Cria.Tokenizers.TokenType.Control), sp.Pieces[1]);
        Assert.Equal(new SentencePiece("<0x0A>", 0, Cria.Tokenizers.TokenType.Byte), sp.Pieces[13]);
        Assert.Equal("\u2581", sp.Pieces[29871].Piece);
        Assert.Equal(256, sp.Pieces.Count(p => p.Type == Cria.Tokenizers.TokenType.Byte));
        Assert.All(sp.Pieces.Skip(259), p => Assert.Equal(Cria.Tokenizers.TokenType.Normal, p.Type));
        Assert.Equal(-1e9f, sp.Pieces[259].Score); // "▁▁"
        Assert.Equal(-31740f, sp.Pieces[31999].Score);
    }

    /// <summary>Every tokenizer.* key of <paramref name="actual"/> equals <paramref name="expected"/>'s (the same key set, exact values).</summary>
    private static void AssertSameTokenizerMetadata(GgufFile expected, GgufFile actual, params string[] ignore)
    {
        static string[] Keys(GgufFile f, string[] ignore) =>
            f.MetadataList.Select(kv => kv.Key).Where(k => k.StartsWith("tokenizer.", StringComparison.Ordinal) && !ignore.Contains(k)).Order().ToArray();
        Assert.Equal(Keys(expected, ignore), Keys(actual, ignore));
        foreach (string key in Keys(expected, ignore))
        {
            GgufValue e = expected.Metadata[key], a = actual.Metadata[key];
            Assert.True(e.Type == a.Type, $"{key}: type {a.Type}, llama.cpp has {e.Type}");
            if (e.Value is GgufArray ea)
            {
                var aa = (GgufArray)a.Value;
                Assert.Equal(ea.ElementType, aa.ElementType);
                Assert.Equal(ea.Count, aa.Count);
                switch (ea.Items)
                {
                    case string[] s:
                        var sa = (string[])aa.Items;
                        for (int i = 0; i < s.Length; i++) Assert.True(s[i] == sa[i], $"{key}[{i}]: \"{sa[i]}\", llama.cpp has \"{s[i]}\"");
                        break;
                    case float[] f:
                        var fa = (float[])aa.Items;
                        for (int i = 0; i < f.Length; i++)
                            Assert.True(BitConverter.SingleToInt32Bits(f[i]) == BitConverter.SingleToInt32Bits(fa[i]), $"{key}[{i}]: {fa[i]}, llama.cpp has {f[i]}");
                        break;
                    case int[] n:
                        Assert.Equal(n, (int[])aa.Items);
                        break;
                    default:
                        throw new InvalidOperationException($"{key}: unexpected array type {ea.ElementType}");
                }
            }
            else
            {
                Assert.True(Equals(e.Value, a.Value), $"{key}: {a.Value}, llama.cpp has {e.Value}");
            }
        }
    }

    [SkippableFact]
    public void Llama2TokenizerModel_ConvertsToLlamaCppsVocabularyExactly()
    {
        string model = RefData.Require(Llama2Model);
        using var reference = GgufFile.Open(RefData.Require(LlamaSpmVocab));
        // Meta's Llama-2-7b-hf tokenizer_config.json states the two flags llama.cpp's vocab file carries.
        string config = WriteFile("tokenizer_config.json", """{ "add_bos_token": true, "add_eos_token": false, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>" }""");
        string output = Path.Combine(_dir, "llama-spm.gguf");
        SentencePieceVocabConverter.WriteVocabularyGguf(model, output, config);

        using var converted = GgufFile.Open(output);
        Assert.Empty(converted.Tensors);
        Assert.Equal("llama-spm", converted.GetString("general.name"));
        Assert.Equal(32000, converted.GetInt("llama.vocab_size"));
        // tokens, scores, token_type, model "llama", pre "default", bos 1 / eos 2 / unk 0, add_bos true / add_eos false, no padding id
        AssertSameTokenizerMetadata(reference, converted);
        Assert.Equal(
            reference.MetadataList.Where(kv => kv.Key.StartsWith("tokenizer.", StringComparison.Ordinal)).Select(kv => kv.Key),
            converted.MetadataList.Where(kv => kv.Key.StartsWith("tokenizer.", StringComparison.Ordinal)).Select(kv => kv.Key));
    }

    // ---- a Hugging Face folder with nothing but tokenizer.model for its tokenizer ----

    private const int TinyHidden = 8, TinyHeads = 2, TinyInter = 16;

    /// <summary>A 1-layer, 8-wide Llama with tied embeddings (random F32 weights) and the given config.json extras.</summary>
    private string TinyHfFolder(string name, int vocab, string configExtras = "")
    {
        string dir = Path.Combine(_dir, name);
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "config.json"), $$"""
            {
              "architectures": ["LlamaForCausalLM"], "model_type": "llama",
              "hidden_size": {{TinyHidden}}, "intermediate_size": {{TinyInter}}, "num_hidden_layers": 1,
              "num_attention_heads": {{TinyHeads}}, "num_key_value_heads": {{TinyHeads}}, "vocab_size": {{vocab}},
              "max_position_embeddings": 64, "rms_norm_eps": 1e-05, "tie_word_embeddings": true{{configExtras}}
            }
            """);
        var rng = new Random(vocab);
        var tensors = new List<(string Name, long[] Shape)>
        {
            ("model.embed_tokens.weight", [vocab, TinyHidden]),
            ("model.layers.0.input_layernorm.weight", [TinyHidden]),
            ("model.layers.0.self_attn.q_proj.weight", [TinyHidden, TinyHidden]),
            ("model.layers.0.self_attn.k_proj.weight", [TinyHidden, TinyHidden]),
            ("model.layers.0.self_attn.v_proj.weight", [TinyHidden, TinyHidden]),
            ("model.layers.0.self_attn.o_proj.weight", [TinyHidden, TinyHidden]),
            ("model.layers.0.post_attention_layernorm.weight", [TinyHidden]),
            ("model.layers.0.mlp.gate_proj.weight", [TinyInter, TinyHidden]),
            ("model.layers.0.mlp.up_proj.weight", [TinyInter, TinyHidden]),
            ("model.layers.0.mlp.down_proj.weight", [TinyHidden, TinyInter]),
            ("model.norm.weight", [TinyHidden]),
        };
        var header = new Dictionary<string, object>();
        var data = new MemoryStream();
        foreach (var (tensor, shape) in tensors)
        {
            long begin = data.Length, n = shape.Aggregate(1L, (a, b) => a * b);
            for (long i = 0; i < n; i++) data.Write(BitConverter.GetBytes((float)(rng.NextDouble() - 0.5)));
            header[tensor] = new { dtype = "F32", shape, data_offsets = new[] { begin, data.Length } };
        }
        byte[] json = JsonSerializer.SerializeToUtf8Bytes(header);
        using var fs = File.Create(Path.Combine(dir, "model.safetensors"));
        fs.Write(BitConverter.GetBytes((ulong)json.Length));
        fs.Write(json);
        data.Position = 0;
        data.CopyTo(fs);
        return dir;
    }

    private static void AssertAllIds(ITokenizer tok, IEnumerable<(string Text, int[] Ids)> cases, bool addSpecial, int expectedCount)
    {
        var failures = new StringBuilder();
        int n = 0;
        foreach (var (text, ids) in cases)
        {
            n++;
            int[] got = tok.Encode(text, addSpecial: addSpecial);
            if (!got.AsSpan().SequenceEqual(ids)) failures.AppendLine($"\"{Escape(text)}\": expected {Show(ids)}, got {Show(got)}");
        }
        Assert.Equal(expectedCount, n);
        Assert.True(failures.Length == 0, failures.ToString());
    }

    [SkippableFact]
    public void HfFolderWithOnlyTokenizerModel_ConvertsAndTokenizesLikeLlama2()
    {
        string spModel = RefData.Require(Llama2Model);
        using var reference = GgufFile.Open(RefData.Require(LlamaSpmVocab));
        string dir = TinyHfFolder("llama2-spm", 32000);
        File.Copy(spModel, Path.Combine(dir, "tokenizer.model"));
        string output = Path.Combine(_dir, "llama2-spm.gguf");
        HfModelConverter.Convert(dir, output);

        using var converted = GgufFile.Open(output);
        // Without tokenizer_config.json no add_bos/add_eos flags are written (llama.cpp's defaults for this vocabulary
        // are the same true/false); everything else is identical to llama.cpp's vocabulary file.
        AssertSameTokenizerMetadata(reference, converted, "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token");
        Assert.False(converted.Metadata.ContainsKey("tokenizer.ggml.add_bos_token"));

        var tok = TokenizerFactory.Create(Vocabulary.FromGguf(converted));
        Assert.True(tok.Vocabulary.AddBos);
        AssertAllIds(tok, ReadInpOut(LlamaSpmVocab + ".inp", LlamaSpmVocab + ".out"), addSpecial: false, expectedCount: 46);
        using var doc = ReadJson("tokenizer-tests/llama2-reference.json");
        var cases = doc.RootElement.GetProperty("cases").EnumerateArray()
            .Select(c => (c.GetProperty("text").GetString()!, Ints(c.GetProperty("ids")))).ToList();
        AssertAllIds(tok, cases, addSpecial: false, expectedCount: 180);
        var withBos = doc.RootElement.GetProperty("llama2c_test_c").GetProperty("cases").EnumerateArray()
            .Select(c => (c.GetProperty("text").GetString()!, Ints(c.GetProperty("ids_with_bos")))).ToList();
        AssertAllIds(tok, withBos, addSpecial: true, expectedCount: 5);

        // The converted model itself loads and runs.
        using var llama = LlamaModel.Load(output, new ModelOptions { Threads = 1 });
        using var ctx = llama.CreateContext(new ContextOptions { ContextSize = 16 });
        var logits = ctx.Evaluate(llama.Tokenizer.Encode("Hello")).ToArray();
        Assert.Equal(32000, logits.Length);
        Assert.All(logits, x => Assert.True(float.IsFinite(x)));
    }

    [SkippableFact]
    public void VocabOptionPointsTheConverterAtATokenizerModelElsewhere()
    {
        string spModel = RefData.Require(Llama2Model);
        string dir = TinyHfFolder("no-tokenizer", 32000);
        string output = Path.Combine(_dir, "vocab-option.gguf");
        var e = Assert.Throws<InvalidDataException>(() => HfModelConverter.Convert(dir, output));
        Assert.Contains("no tokenizer", e.Message);
        Assert.False(File.Exists(output));

        var r = CliRunner.Run("convert", dir, "-o", output, "--vocab", spModel);
        Assert.True(r.ExitCode == 0, r.Stderr);
        using var converted = GgufFile.Open(output);
        using var reference = GgufFile.Open(RefData.Require(LlamaSpmVocab));
        AssertSameTokenizerMetadata(reference, converted, "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token");
    }

    // ---- llama.cpp's rules on a synthetic model ----

    [Fact]
    public void TypesScoresPaddingAndAddedTokensFollowConvertHfToGguf()
    {
        string model = Path.Combine(_dir, "tokenizer.model");
        File.WriteAllBytes(model, Model(SmallPieces, unk: 0, bos: 1, eos: 2));
        string added = WriteFile("added_tokens.json", """{ "<extra>": 12, "<far>": 40 }""");
        string config = WriteFile("tokenizer_config.json", """
            {
              "add_bos_token": false, "add_eos_token": true, "chat_template": "{{ messages }}",
              "added_tokens_decoder": {
                "1": { "content": "<s>", "special": true },
                "13": { "content": "<|im_end|>", "special": false },
                "14": { "content": "\u2581user\u2581name", "special": false }
              }
            }
            """);
        var w = new GgufWriter();
        SentencePieceVocabConverter.AddTo(w, model, config, added, vocabSize: 16);
        using var ms = new MemoryStream();
        w.WriteTo(ms);
        using var f = GgufFile.FromBytes(ms.ToArray());

        string[] tokens = (string[])f.GetArray("tokenizer.ggml.tokens")!.Items;
        float[] scores = (float[])f.GetArray("tokenizer.ggml.scores")!.Items;
        int[] types = (int[])f.GetArray("tokenizer.ggml.token_type")!.Items;
        Assert.Equal(
            ["<unk>", "<s>", "</s>", "<0x0A>", "<0x41>", "\u2581", "\u2581a", "b", "<sep>", "<gone>", "\u2581ab", "[PAD11]", "<extra>", "<|im_end|>", " user name", "[PAD15]"],
            tokens);
        // UNKNOWN, CONTROL (and the decoder's special <s>), BYTE; a user-defined piece is NORMAL (the Python converter
        // asks IsUnknown/IsControl/IsUnused/IsByte only); added_tokens.json is USER_DEFINED; a decoder token that
        // looks special is CONTROL, another is USER_DEFINED with its U+2581 turned into spaces; padding is UNUSED.
        Assert.Equal([2, 3, 3, 6, 6, 1, 1, 1, 1, 5, 1, 5, 4, 3, 4, 5], types);
        Assert.Equal([0f, -1000f, 0f, 0f, 0f, -1f, -2f, -3f, 0f, 0f, -4f, -10000f, -1000f, -1000f, -1000f, -10000f], scores);
        Assert.Equal("llama", f.GetString("tokenizer.ggml.model"));
        Assert.Equal("default", f.GetString("tokenizer.ggml.pre"));
        Assert.Equal((1L, 2L, 0L), (f.GetInt("tokenizer.ggml.bos_token_id"), f.GetInt("tokenizer.ggml.eos_token_id"), f.GetInt("tokenizer.ggml.unknown_token_id")));
        Assert.Null(f.GetInt("tokenizer.ggml.padding_token_id"));
        Assert.False(f.GetBool("tokenizer.ggml.add_bos_token"));
        Assert.True(f.GetBool("tokenizer.ggml.add_eos_token"));
        Assert.Equal("{{ messages }}", f.GetString("tokenizer.chat_template"));
        Assert.False(f.Metadata.ContainsKey("tokenizer.ggml.add_space_prefix"));

        // The result is a usable vocabulary: "\u2581ab" is one token.
        var tok = TokenizerFactory.Create(Vocabulary.FromGguf(f));
        Assert.Equal([10], tok.Encode("ab", addSpecial: false));
    }

    [Fact]
    public void SpecialIdsComeFromTokenizerConfigThenConfigJsonThenGenerationConfigThenTheModel()
    {
        var sp = SentencePieceModelFile.Parse(Model(SmallPieces, unk: 0, bos: 1, eos: 2, pad: 9));
        static Dictionary<string, long> D(params (string, long)[] kv) => kv.ToDictionary(x => x.Item1, x => x.Item2);
        static (int? Bos, int? Eos, int? Unk, int? Pad) Ids(SentencePieceVocabConverter.Result r)
        {
            int? Get(string t) => r.Special.Ids.Where(x => x.Type == t).Select(x => (int?)x.Id).FirstOrDefault();
            return (Get("bos"), Get("eos"), Get("unk"), Get("pad"));
        }

        // nothing but the model: its trainer_spec ids
        Assert.Equal((1, 2, 0, 9), Ids(SentencePieceVocabConverter.Build(sp, null, null, null, null, HfTokenIds.None)));
        // generation_config.json before the model, config.json before generation_config.json
        Assert.Equal((1, 7, 0, 9), Ids(SentencePieceVocabConverter.Build(sp, null, null, null, null, new HfTokenIds(D(), D(("eos", 7))))));
        Assert.Equal((5, 6, 0, 9), Ids(SentencePieceVocabConverter.Build(sp, null, null, null, null, new HfTokenIds(D(("bos", 5), ("eos", 6)), D(("eos", 7))))));
        // ids outside the vocabulary are skipped, as gguf-py does
        Assert.Equal((1, 2, 0, 9), Ids(SentencePieceVocabConverter.Build(sp, null, null, null, null, new HfTokenIds(D(("bos", 50)), D(("eos", 70))))));
        // tokenizer_config.json's texts, looked up among tokenizer.json's added tokens, come first
        string config = WriteFile("tc.json", """{ "bos_token": "<s>", "eos_token": { "content": "b" } }""");
        string tokenizerJson = WriteFile("tokenizer.json", """{ "added_tokens": [ { "id": 7, "content": "b" }, { "id": 1, "content": "<s>" } ] }""");
        Assert.Equal((1, 7, 0, 9), Ids(SentencePieceVocabConverter.Build(sp, null, null, config, tokenizerJson, new HfTokenIds(D(("eos", 6)), D()))));
        // ... but without a tokenizer.json (only tokenizer.model) gguf-py finds no added tokens: config.json decides
        Assert.Equal((1, 6, 0, 9), Ids(SentencePieceVocabConverter.Build(sp, null, null, config, null, new HfTokenIds(D(("eos", 6)), D()))));
        // a model without BOS/pad
        var noBos = SentencePieceModelFile.Parse(Model(SmallPieces, bos: -1, pad: -1));
        Assert.Equal((null, 2, 0, null), Ids(SentencePieceVocabConverter.Build(noBos, null, null, null, null, HfTokenIds.None)));
    }

    [Fact]
    public void NormalizerAndModelTypeAreHonoured()
    {
        var sp = SentencePieceModelFile.Parse(Model(SmallPieces, addDummyPrefix: false, removeExtraWhitespaces: true));
        Assert.False(sp.AddDummyPrefix);
        Assert.True(sp.RemoveExtraWhitespaces);
        var w = new GgufWriter();
        SentencePieceVocabConverter.Build(sp, null, null, null, null, HfTokenIds.None).WriteTo(w);
        using var ms = new MemoryStream();
        w.WriteTo(ms);
        using var f = GgufFile.FromBytes(ms.ToArray());
        Assert.False(f.GetBool("tokenizer.ggml.add_space_prefix"));
        Assert.False(Vocabulary.FromGguf(f).AddSpacePrefix);

        var defaults = SentencePieceModelFile.Parse(Model(SmallPieces));
        Assert.True(defaults.AddDummyPrefix);
        Assert.True(defaults.RemoveExtraWhitespaces); // proto2 default
        Assert.Equal((0, 1, 2, -1), (defaults.UnkId, defaults.BosId, defaults.EosId, defaults.PadId));

        var unigram = SentencePieceModelFile.Parse(Model(SmallPieces, modelType: 1));
        Assert.Equal(SentencePieceModelType.Unigram, unigram.ModelType);
        var e = Assert.Throws<InvalidDataException>(() => SentencePieceVocabConverter.Build(unigram, null, null, null, null, HfTokenIds.None));
        Assert.Contains("Unigram", e.Message);

        e = Assert.Throws<InvalidDataException>(() => SentencePieceVocabConverter.Build(defaults, 5, null, null, null, HfTokenIds.None));
        Assert.Contains("11 pieces but the model's vocab_size is 5", e.Message);
    }

    [Fact]
    public void HfFolderGetsCodeLlamaEotGenerationIdsAndAddPrefixSpace()
    {
        string dir = TinyHfFolder("codellama-like", 32016, """, "bos_token_id": 1""");
        File.WriteAllBytes(Path.Combine(dir, "tokenizer.model"), Model(SmallPieces, unk: 0, bos: 1, eos: 2));
        File.WriteAllText(Path.Combine(dir, "generation_config.json"), """{ "bos_token_id": 3, "eos_token_id": [10, 2], "temperature": 0.6, "top_p": 0.9, "top_k": 40 }""");
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), """{ "add_prefix_space": false }""");
        string output = Path.Combine(_dir, "codellama-like.gguf");
        HfModelConverter.Convert(dir, output);
        using var f = GgufFile.Open(output);
        Assert.Equal(32016, f.GetArray("tokenizer.ggml.tokens")!.Count);
        Assert.Equal("[PAD32015]", ((string[])f.GetArray("tokenizer.ggml.tokens")!.Items)[32015]);
        Assert.Equal(-10000f, ((float[])f.GetArray("tokenizer.ggml.scores")!.Items)[32015]);
        Assert.Equal(32010, f.GetInt("tokenizer.ggml.eot_token_id"));        // LlamaModel.set_vocab for vocab_size 32016
        Assert.Equal(1, f.GetInt("tokenizer.ggml.bos_token_id"));            // config.json beats generation_config.json
        Assert.Equal(10, f.GetInt("tokenizer.ggml.eos_token_id"));           // generation_config.json's list: its first entry
        Assert.False(f.GetBool("tokenizer.ggml.add_space_prefix"));           // tokenizer_config.json's add_prefix_space
        Assert.Equal(GgufValueType.Float32, f.Metadata["general.sampling.temp"].Type);
        Assert.Equal(0.6f, (float)f.GetFloat("general.sampling.temp")!.Value);
        Assert.Equal(0.9f, (float)f.GetFloat("general.sampling.top_p")!.Value);
        Assert.Equal(GgufValueType.Int32, f.Metadata["general.sampling.top_k"].Type);
        Assert.Equal(40, f.GetInt("general.sampling.top_k"));
        using var llama = LlamaModel.Load(output, new ModelOptions { Threads = 1 });
        Assert.Equal(32016, llama.Vocabulary.Count);
        Assert.True(llama.Vocabulary.IsEndOfGeneration(10));
    }

    // ---- llama2.c checkpoints with a tokenizer.model ----

    [SkippableFact]
    public void Llama2TokenizerModelAndItsLlama2cExportGiveTheSameVocabulary()
    {
        var sp = SentencePieceModelFile.Read(RefData.Require(Llama2Model));
        var fromModel = SentencePieceVocabConverter.Build(sp, null, null, null, null, HfTokenIds.None);
        var (tokens, scores, types) = Llama2cConverter.ReadVocabulary(RefData.Require("llama2-tokenizer/tokenizer.bin"), 32000);
        Assert.Equal(tokens, fromModel.Tokens);
        Assert.Equal(scores, fromModel.Scores);
        Assert.Equal(types, fromModel.Types);
    }

    [SkippableFact]
    public void Llama2cCheckpointWithAMismatchedTokenizerModelIsAOneLineError()
    {
        string bin = RefData.Require("stories260K/stories260K.bin");
        string spModel = RefData.Require(Llama2Model);
        string output = Path.Combine(_dir, "l2c.gguf");
        var e = Assert.Throws<InvalidDataException>(() => Llama2cConverter.Convert(bin, spModel, output));
        Assert.Contains("32000 pieces", e.Message);
        var r = CliRunner.Run("convert", bin, "-o", output, "--vocab", spModel);
        Assert.Equal(1, r.ExitCode);
        Assert.Equal("", r.Stdout);
        string[] lines = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.Trim().Length > 0).ToArray();
        Assert.Single(lines);
        Assert.StartsWith("error:", lines[0].TrimStart('\r'));
        Assert.Contains("512 tokens", lines[0]);
        Assert.False(File.Exists(output));
    }

    [Fact]
    public void Llama2cCheckpointTakesItsVocabularyFromATokenizerModel()
    {
        // A 1-layer llama2.c checkpoint with a vocabulary of 11, shared classifier.
        const int dim = 8, hidden = 16, layers = 1, heads = 2, kv = 2, vocab = 11, seq = 16;
        var header = new[] { dim, hidden, layers, heads, kv, vocab, seq };
        int hs = dim / heads;
        long floats = (long)vocab * dim + layers * dim + layers * dim * dim * 2 + 2L * layers * dim * (kv * hs) + layers * dim
            + 3L * layers * dim * hidden + dim + (long)seq * hs;
        var rng = new Random(5);
        string bin = Path.Combine(_dir, "tiny.bin");
        using (var fs = File.Create(bin))
        {
            foreach (int h in header) fs.Write(BitConverter.GetBytes(h));
            for (long i = 0; i < floats; i++) fs.Write(BitConverter.GetBytes((float)(rng.NextDouble() - 0.5)));
        }
        string model = Path.Combine(_dir, "tiny.model");
        File.WriteAllBytes(model, Model(SmallPieces, unk: 0, bos: 1, eos: 2, addDummyPrefix: false));
        string output = Path.Combine(_dir, "tiny.gguf");
        Llama2cConverter.Convert(bin, model, output);
        using var llama = LlamaModel.Load(output, new ModelOptions { Threads = 1 });
        Assert.Equal(SmallPieces.Select(p => p.Item1), (string[])llama.File.GetArray("tokenizer.ggml.tokens")!.Items);
        Assert.Equal(TokenType.Unknown, llama.Vocabulary.GetTokenType(0));
        Assert.Equal(TokenType.Byte, llama.Vocabulary.GetTokenType(3));
        Assert.False(llama.Vocabulary.AddSpacePrefix);
        using var ctx = llama.CreateContext(new ContextOptions { ContextSize = 8 });
        Assert.Equal(vocab, ctx.Evaluate([1, 6, 7]).Length);
    }

    // ---- malformed input ----

    private static void AssertMalformed(byte[] data, string expected)
    {
        var e = Assert.Throws<SentencePieceModelException>(() => SentencePieceModelFile.Parse(data, "bad.model"));
        Assert.StartsWith("bad.model: ", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void MalformedModelsThrowOneClearException()
    {
        byte[] good = Model(SmallPieces);
        Assert.Equal(11, SentencePieceModelFile.Parse(good).Pieces.Count);

        AssertMalformed([], "no pieces");
        AssertMalformed(Encoding.UTF8.GetBytes("""{ "model": { "type": "BPE" } }"""), "wire type");
        AssertMalformed(good[..(good.Length - 3)], "past the end");
        AssertMalformed(good[..1], "past the end");
        AssertMalformed([0x0A, 0x80], "past the end");                                        // a truncated length varint
        AssertMalformed([0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], "longer than");
        AssertMalformed([0x0A, 0x10], "runs past the end");                                    // a piece longer than the file
        AssertMalformed([0x08, 0x01], "field 1 (pieces) has wire type 0");
        AssertMalformed([0x0F], "invalid wire type 7");
        AssertMalformed([0x00], "field number 0");
        var b = new List<byte>();
        Proto.Bytes(b, 1, [0x0A, 0x02, 0xC3, 0x28]);                                          // piece text not UTF-8
        AssertMalformed(b.ToArray(), "not valid UTF-8");
        b.Clear();
        Proto.Bytes(b, 1, Piece("x", 0, 9));
        AssertMalformed(b.ToArray(), "unknown type 9");
        b.Clear();
        Proto.Bytes(b, 1, [0x15, 0x00, 0x00]);                                                // a score cut short
        AssertMalformed(b.ToArray(), "32-bit value");
        b.Clear();
        Proto.Bytes(b, 1, Piece("", 0, 1));
        AssertMalformed(b.ToArray(), "has no text");
        AssertMalformed(Model([("a", 0, 1), ("b", 0, 1), ("a", 0, 1)]), "pieces 0 and 2 are both \"a\"");
        AssertMalformed(Model(SmallPieces, bos: 11), "bos_id 11 is not a piece id");
        AssertMalformed(Model(SmallPieces, pad: -2), "pad_id -2");
        AssertMalformed(Model(SmallPieces, modelType: 7), "model_type 7");
        AssertMalformed(Encoding.ASCII.GetBytes("IQ== 0\nIg== 1\nIw== 2\n"), "tiktoken");
    }

    [SkippableFact]
    public void Llama3TiktokenFileIsNamedForWhatItIs()
    {
        string path = RefData.Require("llama3-tokenizer/tokenizer.model");
        var e = Assert.Throws<SentencePieceModelException>(() => SentencePieceModelFile.Read(path));
        Assert.Contains("tiktoken", e.Message);
        Assert.Contains("tokenizer.json", e.Message);
    }

    [SkippableFact]
    public void CorruptedCopiesOfTheRealModelFailOnlyWithTheOneException()
    {
        byte[] original = File.ReadAllBytes(RefData.Require(Llama2Model));
        var rng = new Random(1234);
        int parsed = 0, rejected = 0;
        for (int trial = 0; trial < 300; trial++)
        {
            byte[] data;
            if (trial % 3 == 0)
            {
                data = original[..rng.Next(original.Length)];
            }
            else
            {
                data = (byte[])original.Clone();
                int flips = 1 + rng.Next(8);
                // most flips land in the pieces; aim some at the specs at the end of the file
                for (int k = 0; k < flips; k++)
                    data[trial % 3 == 1 ? rng.Next(data.Length) : data.Length - 1 - rng.Next(Math.Min(2000, data.Length))] = (byte)rng.Next(256);
            }
            try
            {
                SentencePieceModelFile.Parse(data, "corrupt.model");
                parsed++;
            }
            catch (SentencePieceModelException e)
            {
                Assert.StartsWith("corrupt.model: ", e.Message);
                rejected++;
            }
        }
        Assert.True(rejected > 50, $"only {rejected} of 300 corrupted files were rejected");
        Assert.True(parsed + rejected == 300);
    }

    [SkippableFact]
    public void CliReportsAMalformedTokenizerModelOnOneLine()
    {
        string dir = TinyHfFolder("broken", 32000);
        byte[] original = File.ReadAllBytes(RefData.Require(Llama2Model));
        File.WriteAllBytes(Path.Combine(dir, "tokenizer.model"), original[..1000]);
        string output = Path.Combine(_dir, "broken.gguf");
        var r = CliRunner.Run("convert", dir, "-o", output);
        Assert.Equal(1, r.ExitCode);
        string[] lines = r.Stderr.Split('\n').Select(l => l.Trim('\r', ' ')).Where(l => l.Length > 0).ToArray();
        Assert.Single(lines);
        Assert.StartsWith("error:", lines[0]);
        Assert.Contains("tokenizer.model", lines[0]);
        Assert.Contains("not a valid SentencePiece model", lines[0]);
        Assert.False(File.Exists(output));
    }
}
