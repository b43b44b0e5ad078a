using System.Text;
using System.Text.Json;
using Cria.Conversion;
using Cria.Gguf;
using Cria.Model;
using Cria.Numerics;
using Cria.Numerics.Formats;
using Xunit;

namespace Cria.Tests.Conversion;

[Collection(Cria.Tests.Differential.LlamaCppCollection.Name)] // one test calls llama.cpp
public sealed class HfModelConverterTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"cria-hf-{Guid.NewGuid():N}");

    public HfModelConverterTests() => Directory.CreateDirectory(_dir);

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    // ---- a tiny Hugging Face Llama ----

    private const int Hidden = 64, Layers = 2, Heads = 4, KvHeads = 2, Inter = 128, Vocab = 262, HeadSize = Hidden / Heads;

    /// <summary>HF-layout weights (PyTorch shapes, row-major), as doubles holding exactly the stored values.</summary>
    private sealed class HfWeights
    {
        public readonly Dictionary<string, (long[] Shape, double[] Data)> Tensors = new(StringComparer.Ordinal);
        public double[] this[string name] => Tensors[name].Data;
    }

    private static HfWeights RandomWeights(int seed, bool tied, bool bf16)
    {
        var rng = new Random(seed);
        var w = new HfWeights();
        void Add(string name, double scale, double offset, params long[] shape)
        {
            long n = shape.Aggregate(1L, (a, b) => a * b);
            var data = new double[n];
            for (int i = 0; i < n; i++)
            {
                float f = (float)(offset + scale * (rng.NextDouble() * 2 - 1));
                data[i] = bf16 ? Bf16Format.Round(f) : f;
            }
            w.Tensors[name] = (shape, data);
        }
        Add("model.embed_tokens.weight", 1.0, 0, Vocab, Hidden);
        for (int l = 0; l < Layers; l++)
        {
            string p = $"model.layers.{l}.";
            Add(p + "input_layernorm.weight", 0.2, 1, Hidden);
            Add(p + "self_attn.q_proj.weight", 0.4, 0, Heads * HeadSize, Hidden);
            Add(p + "self_attn.k_proj.weight", 0.4, 0, KvHeads * HeadSize, Hidden);
            Add(p + "self_attn.v_proj.weight", 0.3, 0, KvHeads * HeadSize, Hidden);
            Add(p + "self_attn.o_proj.weight", 0.1, 0, Hidden, Heads * HeadSize);
            Add(p + "post_attention_layernorm.weight", 0.2, 1, Hidden);
            Add(p + "mlp.gate_proj.weight", 0.2, 0, Inter, Hidden);
            Add(p + "mlp.up_proj.weight", 0.2, 0, Inter, Hidden);
            Add(p + "mlp.down_proj.weight", 0.1, 0, Hidden, Inter);
        }
        Add("model.norm.weight", 0.2, 1, Hidden);
        if (!tied) Add("lm_head.weight", 0.2, 0, Vocab, Hidden);
        return w;
    }

    /// <summary>Writes a safetensors file (header padded to 8 bytes) holding the named tensors as F32 or BF16.</summary>
    private static void WriteSafetensors(string path, HfWeights w, IEnumerable<string> names, bool bf16)
    {
        var header = new Dictionary<string, object> { ["__metadata__"] = new Dictionary<string, string> { ["format"] = "pt" } };
        var data = new MemoryStream();
        foreach (string name in names)
        {
            var (shape, values) = w.Tensors[name];
            long begin = data.Length;
            foreach (double v in values)
            {
                if (bf16) data.Write(BitConverter.GetBytes(Bf16Format.FromSingle((float)v)));
                else data.Write(BitConverter.GetBytes((float)v));
            }
            header[name] = new { dtype = bf16 ? "BF16" : "F32", shape, data_offsets = new[] { begin, data.Length } };
        }
        byte[] json = JsonSerializer.SerializeToUtf8Bytes(header);
        int padded = (json.Length + 7) / 8 * 8;
        using var fs = File.Create(path);
        fs.Write(BitConverter.GetBytes((ulong)padded));
        fs.Write(json);
        for (int i = json.Length; i < padded; i++) fs.WriteByte((byte)' ');
        data.Position = 0;
        data.CopyTo(fs);
    }

    /// <summary>The GPT-2 byte → character map of byte-level BPE.</summary>
    private static string ByteChar(int b)
    {
        if (b is >= 33 and <= 126 or >= 161 and <= 172 or >= 174 and <= 255) return ((char)b).ToString();
        int n = 0;
        for (int x = 0; x < b; x++)
            if (!(x is >= 33 and <= 126 or >= 161 and <= 172 or >= 174 and <= 255)) n++;
        return ((char)(256 + n)).ToString();
    }

    /// <summary>A Llama 3-style tokenizer.json: 256 byte tokens, two merges, three special tokens (259 ids; vocab_size 262 pads).</summary>
    private static string TokenizerJson()
    {
        var vocab = new Dictionary<string, int>();
        for (int b = 0; b < 256; b++) vocab[ByteChar(b)] = b;
        vocab["Ġt"] = 256;
        vocab["he"] = 257;
        var doc = new Dictionary<string, object?>
        {
            ["version"] = "1.0",
            ["added_tokens"] = new[]
            {
                new { id = 258, content = "<|begin_of_text|>", special = true, normalized = false },
                new { id = 259, content = "<|end_of_text|>", special = true, normalized = false },
                new { id = 260, content = "<|eot_id|>", special = true, normalized = false },
            },
            ["normalizer"] = null,
            ["pre_tokenizer"] = new Dictionary<string, object>
            {
                ["type"] = "Sequence",
                ["pretokenizers"] = new object[]
                {
                    new Dictionary<string, object> { ["type"] = "Split", ["pattern"] = new Dictionary<string, string> { ["Regex"] = HfTokenizerConverter.Llama3Pattern }, ["behavior"] = "Isolated", ["invert"] = false },
                    new Dictionary<string, object> { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = false },
                },
            },
            ["decoder"] = new Dictionary<string, object> { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = true, ["use_regex"] = true },
            ["model"] = new Dictionary<string, object?>
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["byte_fallback"] = false, ["ignore_merges"] = true,
                ["vocab"] = vocab, ["merges"] = new[] { "Ġ t", "h e" },
            },
        };
        return JsonSerializer.Serialize(doc);
    }

    private const string TokenizerConfig = """
        { "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "add_bos_token": true,
          "chat_template": "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}" }
        """;

    private static string ConfigJson(bool tied, string? ropeScaling = null, string arch = "LlamaForCausalLM") => $$"""
        {
          "architectures": ["{{arch}}"], "model_type": "llama",
          "hidden_size": {{Hidden}}, "intermediate_size": {{Inter}}, "num_hidden_layers": {{Layers}},
          "num_attention_heads": {{Heads}}, "num_key_value_heads": {{KvHeads}}, "vocab_size": {{Vocab}},
          "max_position_embeddings": 256, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
          "tie_word_embeddings": {{(tied ? "true" : "false")}}, "rope_scaling": {{ropeScaling ?? "null"}},
          "torch_dtype": "bfloat16"
        }
        """;

    private const string Llama3Scaling =
        """{ "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192, "rope_type": "llama3" }""";

    /// <summary>Writes the HF folder; sharded puts the layers in two files with an index.</summary>
    private string WriteFolder(string name, HfWeights w, bool tied, bool bf16, bool sharded, string? ropeScaling = null)
    {
        string dir = Path.Combine(_dir, name);
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "config.json"), ConfigJson(tied, ropeScaling));
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), TokenizerJson());
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), TokenizerConfig);
        File.WriteAllText(Path.Combine(dir, "generation_config.json"), """{ "bos_token_id": 258, "eos_token_id": [259, 260] }""");
        var names = w.Tensors.Keys.ToList();
        if (!sharded)
            WriteSafetensors(Path.Combine(dir, "model.safetensors"), w, names, bf16);
        else
        {
            var first = names.Where(n => n.StartsWith("model.embed", StringComparison.Ordinal) || n.StartsWith("model.layers.0.", StringComparison.Ordinal)).ToList();
            var second = names.Except(first).ToList();
            WriteSafetensors(Path.Combine(dir, "model-00001-of-00002.safetensors"), w, first, bf16);
            WriteSafetensors(Path.Combine(dir, "model-00002-of-00002.safetensors"), w, second, bf16);
            var map = first.ToDictionary(n => n, _ => "model-00001-of-00002.safetensors");
            foreach (string n in second) map[n] = "model-00002-of-00002.safetensors";
            File.WriteAllText(Path.Combine(dir, "model.safetensors.index.json"),
                JsonSerializer.Serialize(new { metadata = new { total_size = 0 }, weight_map = map }));
        }
        return dir;
    }

    // ---- an independent float64 reference of HF's LlamaForCausalLM (rotate-half RoPE) ----

    /// <summary>Llama 3 scaling with a short original context, so that the factors matter at the test's positions.</summary>
    private const string Llama3ShortScaling =
        """{ "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64, "rope_type": "llama3" }""";

    private static double[] HfInvFreq(string? scaling, double orig = 64)
    {
        var inv = new double[HeadSize / 2];
        for (int i = 0; i < inv.Length; i++)
        {
            double f = 1.0 / Math.Pow(10000.0, 2.0 * i / HeadSize);
            if (scaling == "llama3")
            {
                double wavelen = 2 * Math.PI / f, lowW = orig / 1.0, highW = orig / 4.0;
                if (wavelen > lowW) f /= 8;
                else if (wavelen >= highW)
                {
                    double smooth = (orig / wavelen - 1) / (4 - 1);
                    f = (1 - smooth) * f / 8 + smooth * f;
                }
            }
            inv[i] = f;
        }
        return inv;
    }

    private static double[] MatVec(double[] w, int rows, int cols, double[] x)
    {
        var y = new double[rows];
        for (int r = 0; r < rows; r++)
        {
            double s = 0;
            for (int c = 0; c < cols; c++) s += w[(long)r * cols + c] * x[c];
            y[r] = s;
        }
        return y;
    }

    private static double[] RmsNorm(double[] x, double[] w, double eps)
    {
        double ss = x.Sum(v => v * v) / x.Length;
        double inv = 1 / Math.Sqrt(ss + eps);
        return x.Select((v, i) => v * inv * w[i]).ToArray();
    }

    private static void RotateHalf(double[] v, int heads, int pos, double[] invFreq)
    {
        int half = HeadSize / 2;
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < half; i++)
            {
                double a = pos * invFreq[i], c = Math.Cos(a), s = Math.Sin(a);
                int o = h * HeadSize;
                double x1 = v[o + i], x2 = v[o + i + half];
                v[o + i] = x1 * c - x2 * s;
                v[o + i + half] = x2 * c + x1 * s;
            }
    }

    private static double[][] ReferenceLogits(HfWeights w, bool tied, int[] tokens, string? scaling)
    {
        const double eps = 1e-5;
        var invFreq = HfInvFreq(scaling);
        int n = tokens.Length, kvd = KvHeads * HeadSize;
        var h = tokens.Select(t => w["model.embed_tokens.weight"].AsSpan(t * Hidden, Hidden).ToArray()).ToArray();
        for (int l = 0; l < Layers; l++)
        {
            string p = $"model.layers.{l}.";
            var q = new double[n][]; var k = new double[n][]; var v = new double[n][];
            for (int t = 0; t < n; t++)
            {
                var x = RmsNorm(h[t], w[p + "input_layernorm.weight"], eps);
                q[t] = MatVec(w[p + "self_attn.q_proj.weight"], Heads * HeadSize, Hidden, x);
                k[t] = MatVec(w[p + "self_attn.k_proj.weight"], kvd, Hidden, x);
                v[t] = MatVec(w[p + "self_attn.v_proj.weight"], kvd, Hidden, x);
                RotateHalf(q[t], Heads, t, invFreq);
                RotateHalf(k[t], KvHeads, t, invFreq);
            }
            for (int t = 0; t < n; t++)
            {
                var attn = new double[Heads * HeadSize];
                for (int hd = 0; hd < Heads; hd++)
                {
                    int kh = hd / (Heads / KvHeads);
                    var scores = new double[t + 1];
                    for (int s = 0; s <= t; s++)
                    {
                        double dot = 0;
                        for (int i = 0; i < HeadSize; i++) dot += q[t][hd * HeadSize + i] * k[s][kh * HeadSize + i];
                        scores[s] = dot / Math.Sqrt(HeadSize);
                    }
                    double max = scores.Max();
                    var e = scores.Select(x => Math.Exp(x - max)).ToArray();
                    double sum = e.Sum();
                    for (int s = 0; s <= t; s++)
                        for (int i = 0; i < HeadSize; i++) attn[hd * HeadSize + i] += e[s] / sum * v[s][kh * HeadSize + i];
                }
                var o = MatVec(w[p + "self_attn.o_proj.weight"], Hidden, Heads * HeadSize, attn);
                for (int i = 0; i < Hidden; i++) h[t][i] += o[i];
            }
            for (int t = 0; t < n; t++)
            {
                var x = RmsNorm(h[t], w[p + "post_attention_layernorm.weight"], eps);
                var g = MatVec(w[p + "mlp.gate_proj.weight"], Inter, Hidden, x);
                var u = MatVec(w[p + "mlp.up_proj.weight"], Inter, Hidden, x);
                var a = g.Select((gv, i) => gv / (1 + Math.Exp(-gv)) * u[i]).ToArray();
                var dn = MatVec(w[p + "mlp.down_proj.weight"], Hidden, Inter, a);
                for (int i = 0; i < Hidden; i++) h[t][i] += dn[i];
            }
        }
        var head = tied ? w["model.embed_tokens.weight"] : w["lm_head.weight"];
        return h.Select(x => MatVec(head, Vocab, Hidden, RmsNorm(x, w["model.norm.weight"], eps))).ToArray();
    }

    /// <summary>llama.cpp's permute written as numpy does it: reshape(n_head, 2, rows/n_head/2, cols) → swapaxes(1, 2) → reshape.</summary>
    private static double[] NumpyPermute(double[] w, int rows, int cols, int nHead)
    {
        int half = rows / nHead / 2;
        var tmp = new double[nHead, half, 2, cols]; // the swapped array
        for (int h = 0; h < nHead; h++)
            for (int a = 0; a < 2; a++)
                for (int b = 0; b < half; b++)
                    for (int c = 0; c < cols; c++)
                        tmp[h, b, a, c] = w[(((long)h * 2 + a) * half + b) * cols + c];
        var result = new double[w.Length];
        long idx = 0;
        foreach (double x in tmp) result[idx++] = x; // C-order flatten
        return result;
    }

    private static float[] Floats(GgufFile f, string name)
    {
        var t = f.GetTensor(name);
        var result = new float[t.ElementCount];
        var bytes = f.GetTensorBytes(t);
        switch (t.Type)
        {
            case GgmlType.F32: System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes).CopyTo(result); break;
            case GgmlType.F16: Fp16Format.Dequantize(bytes, result); break;
            case GgmlType.BF16: Bf16Format.Dequantize(bytes, result); break;
            case GgmlType.Q8_0: Q8_0Format.Dequantize(bytes, result); break;
            default: throw new InvalidOperationException(t.Type.ToString());
        }
        return result;
    }

    // ---- tests ----

    [Fact]
    public void SingleFileF32_KeysNamesShapesAndTokenizer()
    {
        var w = RandomWeights(1, tied: false, bf16: false);
        string dir = WriteFolder("single", w, tied: false, bf16: false, sharded: false);
        string outPath = Path.Combine(_dir, "single.gguf");
        var messages = new List<string>();
        HfModelConverter.Convert(dir, outPath, GgmlType.F32, new SyncProgress(messages.Add));
        Assert.NotEmpty(messages);

        using var f = GgufFile.Open(outPath);
        Assert.Equal("llama", f.GetString("general.architecture"));
        Assert.Equal("single", f.GetString("general.name"));
        Assert.Equal(Layers, f.GetInt("llama.block_count"));
        Assert.Equal(256, f.GetInt("llama.context_length"));
        Assert.Equal(Hidden, f.GetInt("llama.embedding_length"));
        Assert.Equal(Inter, f.GetInt("llama.feed_forward_length"));
        Assert.Equal(Heads, f.GetInt("llama.attention.head_count"));
        Assert.Equal(KvHeads, f.GetInt("llama.attention.head_count_kv"));
        Assert.Equal(10000.0, f.GetFloat("llama.rope.freq_base"));
        Assert.Equal(1e-5f, (float)f.GetFloat("llama.attention.layer_norm_rms_epsilon")!.Value);
        Assert.Equal(Vocab, f.GetInt("llama.vocab_size"));
        Assert.Equal(HeadSize, f.GetInt("llama.rope.dimension_count"));
        Assert.Equal(0, f.GetInt("general.file_type"));
        Assert.Null(f.GetString("llama.rope.scaling.type"));
        Assert.Equal("gpt2", f.GetString("tokenizer.ggml.model"));
        Assert.Equal("llama-bpe", f.GetString("tokenizer.ggml.pre"));
        var tokens = (string[])f.GetArray("tokenizer.ggml.tokens")!.Items;
        Assert.Equal(Vocab, tokens.Length);
        Assert.Equal("<|begin_of_text|>", tokens[258]);
        Assert.Equal("[PAD261]", tokens[261]);
        Assert.Equal(5, ((int[])f.GetArray("tokenizer.ggml.token_type")!.Items)[261]);
        Assert.Equal(258, f.GetInt("tokenizer.ggml.bos_token_id"));
        Assert.Equal(260, f.GetInt("tokenizer.ggml.eos_token_id"));

        var expected = new List<string> { "token_embd.weight" };
        for (int l = 0; l < Layers; l++)
            expected.AddRange(new[] { "attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down" }.Select(s => $"blk.{l}.{s}.weight"));
        expected.Add("output_norm.weight");
        expected.Add("output.weight");
        Assert.Equal(expected, f.Tensors.Select(t => t.Name));
        Assert.Equal(new long[] { Hidden, Vocab }, f.GetTensor("token_embd.weight").Dimensions.Select(d => (long)d));
        Assert.Equal(new long[] { Hidden, KvHeads * HeadSize }, f.GetTensor("blk.1.attn_k.weight").Dimensions.Select(d => (long)d));
        Assert.Equal(new long[] { Inter, Hidden }, f.GetTensor("blk.0.ffn_down.weight").Dimensions.Select(d => (long)d));
        Assert.Equal(new long[] { Hidden }, f.GetTensor("output_norm.weight").Dimensions.Select(d => (long)d));
        Assert.All(f.Tensors, t => Assert.Equal(GgmlType.F32, t.Type));

        // Unpermuted tensors are copied verbatim.
        Assert.Equal(w["model.layers.1.mlp.down_proj.weight"].Select(x => (float)x), Floats(f, "blk.1.ffn_down.weight"));
        Assert.Equal(w["lm_head.weight"].Select(x => (float)x), Floats(f, "output.weight"));
        Assert.Equal(new[] { Path.GetFileName(dir), "single.gguf" }, Directory.GetFileSystemEntries(_dir).Select(Path.GetFileName).Order());
    }

    [Fact]
    public void QueryAndKeyRowsFollowLlamaCppsPermutation()
    {
        var w = RandomWeights(2, tied: true, bf16: true);
        string dir = WriteFolder("perm", w, tied: true, bf16: true, sharded: true);
        string outPath = Path.Combine(_dir, "perm.gguf");
        HfModelConverter.Convert(dir, outPath);
        using var f = GgufFile.Open(outPath);
        for (int l = 0; l < Layers; l++)
        {
            var q = NumpyPermute(w[$"model.layers.{l}.self_attn.q_proj.weight"], Heads * HeadSize, Hidden, Heads);
            var k = NumpyPermute(w[$"model.layers.{l}.self_attn.k_proj.weight"], KvHeads * HeadSize, Hidden, KvHeads);
            Assert.Equal(q.Select(x => (float)x), Floats(f, $"blk.{l}.attn_q.weight"));
            Assert.Equal(k.Select(x => (float)x), Floats(f, $"blk.{l}.attn_k.weight"));
            Assert.Equal(w[$"model.layers.{l}.self_attn.v_proj.weight"].Select(x => (float)x), Floats(f, $"blk.{l}.attn_v.weight"));
        }
        // A few rows by hand: row 1 of head 0 is HF row half (the partner of row 0).
        Assert.Equal(HeadSize / 2, HfModelConverter.PermutedSourceRow(1, Heads * HeadSize, Heads));
        Assert.Equal(HeadSize + 1, HfModelConverter.PermutedSourceRow(HeadSize + 2, Heads * HeadSize, Heads));
        Assert.False(f.TryGetTensor("output.weight", out _));
    }

    [Theory]
    [InlineData(false, false, false, null)]
    [InlineData(true, true, true, null)]
    [InlineData(false, true, true, "llama3")]
    [InlineData(true, false, false, "llama3")]
    public void LogitsMatchAFloat64HuggingFaceReference(bool tied, bool bf16, bool sharded, string? scaling)
    {
        var w = RandomWeights(3, tied, bf16);
        string dir = WriteFolder("logits", w, tied, bf16, sharded, scaling == "llama3" ? Llama3ShortScaling : null);
        string outPath = Path.Combine(_dir, "logits.gguf");
        HfModelConverter.Convert(dir, outPath);
        int[] tokens = { 258, 72, 101, 256, 3, 200, 257, 10, 99, 180, 1, 260 };
        var expected = ReferenceLogits(w, tied, tokens, scaling);
        using var model = LlamaModel.Load(outPath, new ModelOptions { Threads = 1 });
        Assert.Equal(scaling == "llama3", model.Weights.RopeFrequencyFactors is not null);
        using var ctx = model.CreateContext(new ContextOptions { ContextSize = 32, KvCacheType = KvCacheType.F32 });
        var logits = ctx.EvaluateAll(tokens);
        double maxErr = 0, maxAbs = 0;
        for (int t = 0; t < tokens.Length; t++)
            for (int v = 0; v < Vocab; v++)
            {
                maxErr = Math.Max(maxErr, Math.Abs(logits[t * Vocab + v] - expected[t][v]));
                maxAbs = Math.Max(maxAbs, Math.Abs(expected[t][v]));
            }
        Assert.True(maxAbs > 0.5, $"logits too small to be a meaningful check ({maxAbs})");
        Assert.True(maxErr < 1e-4, $"max |Cria - reference| = {maxErr} (max |logit| {maxAbs})");
    }

    /// <summary>The converted file gives llama.cpp the same logits it gives Cria (F32 cache, one batch).</summary>
    [SkippableTheory]
    [InlineData(false, false, null)]
    [InlineData(true, true, "llama3")]
    public void ConvertedFileGivesLlamaCppTheSameLogits(bool tied, bool bf16, string? scaling)
    {
        Cria.Tests.Differential.LlamaCppOracle.SkipIfUnavailable();
        var w = RandomWeights(4, tied, bf16);
        string dir = WriteFolder("llamacpp", w, tied, bf16, sharded: false, scaling == "llama3" ? Llama3ShortScaling : null);
        string outPath = Path.Combine(_dir, "llamacpp.gguf");
        HfModelConverter.Convert(dir, outPath);
        int[] tokens = { 258, 72, 101, 256, 3, 200, 257, 10, 99, 180, 1, 260 };
        float[] theirs = Cria.Tests.Differential.LlamaCppOracle.EvaluateAll(outPath, tokens, threads: 1);
        using var model = LlamaModel.Load(outPath, new ModelOptions { Threads = 1 });
        using var ctx = model.CreateContext(new ContextOptions { ContextSize = 32, KvCacheType = KvCacheType.F32 });
        float[] ours = ctx.EvaluateAll(tokens);
        var cmp = Cria.Tests.Differential.LogitComparison.Of(ours, theirs, Vocab);
        // F32 weights and cache: the bound of the F32 cases in LlamaCppDifferentialTests.
        Assert.True(cmp.MaxDifference <= 1e-4 * cmp.MaxAbsReference + 1e-5, $"logits differ from llama.cpp's on the converted file: {cmp}");
        Assert.True(cmp.MaxAbsReference > 0.5, $"logits too small to be a meaningful check ({cmp.MaxAbsReference})");
    }

    [Fact]
    public void Llama3RopeFreqsFollowTheFormula()
    {
        var w = RandomWeights(4, tied: true, bf16: false);
        string dir = WriteFolder("rope", w, tied: true, bf16: false, sharded: false, Llama3Scaling);
        string outPath = Path.Combine(_dir, "rope.gguf");
        HfModelConverter.Convert(dir, outPath, GgmlType.Q8_0);
        using var f = GgufFile.Open(outPath);
        var t = f.GetTensor("rope_freqs.weight");
        Assert.Equal(GgmlType.F32, t.Type);
        Assert.Equal(new long[] { HeadSize / 2 }, t.Dimensions.Select(d => (long)d));
        var factors = Floats(f, "rope_freqs.weight");
        for (int i = 0; i < HeadSize / 2; i++)
        {
            double freq = 1.0 / Math.Pow(10000.0, 2.0 * i / HeadSize), wavelen = 2 * Math.PI / freq;
            double expected = wavelen < 8192 / 4.0 ? 1 : wavelen > 8192 ? 8 : 1 / ((1 - (8192 / wavelen - 1) / 3) / 8 + (8192 / wavelen - 1) / 3);
            Assert.Equal(expected, factors[i], 1e-5 * expected);
        }
        Assert.Contains(factors, x => x == 1f);
        Assert.Contains(factors, x => x == 8f);
        Assert.Contains(factors, x => x is > 1f and < 8f);
        Assert.Null(f.GetString("llama.rope.scaling.type"));
        Assert.Equal(7, f.GetInt("general.file_type"));
        Assert.Equal(GgmlType.Q8_0, f.GetTensor("blk.0.attn_q.weight").Type);
        Assert.Equal(GgmlType.F32, f.GetTensor("blk.0.attn_norm.weight").Type);

        // And the runtime divides each pair's angle by its factor, as ggml does.
        var cos = new float[HeadSize / 2]; var sin = new float[HeadSize / 2];
        Rope.Angles(100, HeadSize, 10000f, 1f, cos, sin, factors);
        float thetaScale = MathF.Pow(10000f, -2f / HeadSize), theta = 100;
        for (int i = 0; i < HeadSize / 2; i++, theta *= thetaScale)
            Assert.Equal(MathF.Cos(theta / factors[i]), cos[i]);
    }

    [Fact]
    public void LinearScalingAndF16OutputAreWritten()
    {
        var w = RandomWeights(5, tied: true, bf16: false);
        string dir = WriteFolder("linear", w, tied: true, bf16: false, sharded: false, """{ "type": "linear", "factor": 2.0 }""");
        string outPath = Path.Combine(_dir, "linear.gguf");
        HfModelConverter.Convert(dir, outPath, GgmlType.F16);
        using var model = LlamaModel.Load(outPath, new ModelOptions { Threads = 1 });
        Assert.Equal("linear", model.File.GetString("llama.rope.scaling.type"));
        Assert.Equal(0.5f, model.Config.RopeFrequencyScale);
        Assert.Equal(GgmlType.F16, model.File.GetTensor("blk.0.ffn_up.weight").Type);
        Assert.Equal(1, model.File.GetInt("general.file_type"));
    }

    [Fact]
    public void YarnScalingIsRejected()
    {
        var w = RandomWeights(6, tied: true, bf16: false);
        string dir = WriteFolder("yarn", w, tied: true, bf16: false, sharded: false, """{ "rope_type": "yarn", "factor": 4.0 }""");
        var e = Assert.Throws<InvalidDataException>(() => HfModelConverter.Convert(dir, Path.Combine(_dir, "yarn.gguf")));
        Assert.Contains("yarn", e.Message);

        var g = new GgufWriter().Set("general.architecture", "llama").Set("llama.embedding_length", 64u).Set("llama.attention.head_count", 4u)
            .Set("llama.feed_forward_length", 128u).Set("llama.block_count", 1u).Set("llama.vocab_size", 10u)
            .Set("llama.rope.scaling.type", "yarn").Set("llama.rope.scaling.factor", 4f);
        using var ms = new MemoryStream();
        g.WriteTo(ms);
        using var file = GgufFile.FromBytes(ms.ToArray());
        var le = Assert.Throws<ModelLoadException>(() => LlamaConfig.FromGguf(file));
        Assert.Contains("yarn", le.Message);
    }

    private void AssertFailsWithoutOutput(string dir, string expectedText)
    {
        string outPath = Path.Combine(_dir, "bad.gguf");
        var before = Directory.GetFiles(_dir);
        var e = Assert.Throws<InvalidDataException>(() => HfModelConverter.Convert(dir, outPath));
        Assert.Contains(expectedText, e.Message, StringComparison.OrdinalIgnoreCase);
        Assert.False(File.Exists(outPath));
        Assert.Equal(before.Order(), Directory.GetFiles(_dir).Order());
    }

    [Fact]
    public void BrokenFoldersFailCleanly()
    {
        var w = RandomWeights(7, tied: true, bf16: false);

        string missing = Path.Combine(_dir, "empty");
        Directory.CreateDirectory(missing);
        AssertFailsWithoutOutput(missing, "config.json");

        string badJson = WriteFolder("badjson", w, tied: true, bf16: false, sharded: false);
        File.WriteAllText(Path.Combine(badJson, "config.json"), "{ \"hidden_size\": 64,, }");
        AssertFailsWithoutOutput(badJson, "not valid JSON");

        string arch = WriteFolder("arch", w, tied: true, bf16: false, sharded: false);
        File.WriteAllText(Path.Combine(arch, "config.json"), ConfigJson(true, arch: "MistralForCausalLM"));
        AssertFailsWithoutOutput(arch, "MistralForCausalLM");

        string noWeights = WriteFolder("noweights", w, tied: true, bf16: false, sharded: false);
        File.Delete(Path.Combine(noWeights, "model.safetensors"));
        AssertFailsWithoutOutput(noWeights, "no weights");

        string truncated = WriteFolder("truncated", w, tied: true, bf16: false, sharded: false);
        string st = Path.Combine(truncated, "model.safetensors");
        byte[] bytes = File.ReadAllBytes(st);
        File.WriteAllBytes(st, bytes[..(bytes.Length - 100)]);
        AssertFailsWithoutOutput(truncated, "truncated");
        File.WriteAllBytes(st, bytes[..20]);
        AssertFailsWithoutOutput(truncated, "header length");

        string shape = WriteFolder("shape", w, tied: true, bf16: false, sharded: false);
        File.WriteAllText(Path.Combine(shape, "config.json"), ConfigJson(true).Replace($"\"intermediate_size\": {Inter}", "\"intermediate_size\": 96"));
        AssertFailsWithoutOutput(shape, "config.json implies");

        string shardMissing = WriteFolder("shardmissing", w, tied: true, bf16: false, sharded: true);
        File.Delete(Path.Combine(shardMissing, "model-00002-of-00002.safetensors"));
        AssertFailsWithoutOutput(shardMissing, "missing");
    }

    private GgufFile ConvertAndOpen(string dir, string name, List<string>? messages = null)
    {
        string outPath = Path.Combine(_dir, name + ".gguf");
        HfModelConverter.Convert(dir, outPath, GgmlType.F32, messages is null ? null : new SyncProgress(messages.Add));
        return GgufFile.Open(outPath);
    }

    [Fact]
    public void GenerationConfigGivesSamplingKeysAndOnlyTheIdsOthersLeaveOpen()
    {
        var w = RandomWeights(8, tied: true, bf16: false);
        string dir = WriteFolder("gen", w, tied: true, bf16: false, sharded: false);
        string gen = Path.Combine(dir, "generation_config.json");
        File.WriteAllText(gen, """{ "bos_token_id": 258, "eos_token_id": [259, 260], "temperature": 0.6, "top_p": 0.9, "top_k": 50, "min_p": null, "do_sample": true, "max_length": 4096 }""");

        // tokenizer_config.json names BOS and EOS: they win (as in llama.cpp); the sampling settings are gguf-py's keys
        using (var f = ConvertAndOpen(dir, "gen-a"))
        {
            Assert.Equal(258, f.GetInt("tokenizer.ggml.bos_token_id"));
            Assert.Equal(260, f.GetInt("tokenizer.ggml.eos_token_id"));
            Assert.Equal(GgufValueType.Float32, f.Metadata["general.sampling.temp"].Type);
            Assert.Equal(0.6f, (float)f.GetFloat("general.sampling.temp")!.Value);
            Assert.Equal(0.9f, (float)f.GetFloat("general.sampling.top_p")!.Value);
            Assert.Equal(GgufValueType.Int32, f.Metadata["general.sampling.top_k"].Type);
            Assert.Equal(50, f.GetInt("general.sampling.top_k"));
            Assert.False(f.Metadata.ContainsKey("general.sampling.min_p")); // null is skipped
            Assert.DoesNotContain(f.MetadataList, kv => kv.Key.Contains("max_length", StringComparison.Ordinal) || kv.Key.Contains("do_sample", StringComparison.Ordinal));
        }

        // tokenizer_config.json without eos_token and config.json without ids: generation_config.json's list gives its first entry
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), """{ "bos_token": "<|begin_of_text|>", "add_bos_token": true }""");
        using (var f = ConvertAndOpen(dir, "gen-b"))
        {
            Assert.Equal(258, f.GetInt("tokenizer.ggml.bos_token_id"));
            Assert.Equal(259, f.GetInt("tokenizer.ggml.eos_token_id"));
            using var model = LlamaModel.Load(Path.Combine(_dir, "gen-b.gguf"), new ModelOptions { Threads = 1 });
            Assert.True(model.Vocabulary.IsEndOfGeneration(259));
            Assert.True(model.Vocabulary.IsEndOfGeneration(260)); // <|eot_id|>: end of generation by its text
        }

        // config.json's integer eos_token_id comes before generation_config.json
        string config = Path.Combine(dir, "config.json");
        string plainConfig = File.ReadAllText(config);
        File.WriteAllText(config, plainConfig.Replace("\"model_type\": \"llama\",", "\"model_type\": \"llama\", \"eos_token_id\": 257,"));
        using (var f = ConvertAndOpen(dir, "gen-c"))
            Assert.Equal(257, f.GetInt("tokenizer.ggml.eos_token_id"));

        // ... but a list in config.json is ignored, as gguf-py's SpecialVocab does
        File.WriteAllText(config, plainConfig.Replace("\"model_type\": \"llama\",", "\"model_type\": \"llama\", \"eos_token_id\": [257, 260],"));
        File.WriteAllText(gen, """{ "eos_token_id": 260 }""");
        using (var f = ConvertAndOpen(dir, "gen-d"))
        {
            Assert.Equal(260, f.GetInt("tokenizer.ggml.eos_token_id"));
            Assert.False(f.Metadata.ContainsKey("general.sampling.temp"));
        }

        // without generation_config.json nothing names the EOS: no key, exactly as llama.cpp's converter
        File.Delete(gen);
        using (var f = ConvertAndOpen(dir, "gen-e"))
            Assert.Null(f.GetInt("tokenizer.ggml.eos_token_id"));

        // a file that is not JSON is ignored with a warning (gguf-py ignores it); a wrongly typed value is an error
        File.WriteAllText(gen, "{ \"temperature\": 0.6,, ");
        var messages = new List<string>();
        using (var f = ConvertAndOpen(dir, "gen-f", messages))
            Assert.False(f.Metadata.ContainsKey("general.sampling.temp"));
        Assert.Contains(messages, m => m.StartsWith("warning: generation_config.json is not valid JSON", StringComparison.Ordinal));
        File.WriteAllText(gen, """{ "top_k": "many" }""");
        AssertFailsWithoutOutput(dir, "\"top_k\" must be an integer");
        File.WriteAllText(gen, """{ "eos_token_id": ["</s>"] }""");
        AssertFailsWithoutOutput(dir, "eos_token_id");
    }

    [Fact]
    public void ATiktokenTokenizerModelIsPassedOverForTokenizerJson()
    {
        var w = RandomWeights(9, tied: true, bf16: false);
        string dir = WriteFolder("tiktoken", w, tied: true, bf16: false, sharded: false);
        File.WriteAllText(Path.Combine(dir, "tokenizer.model"), "IQ== 0\nIg== 1\nIw== 2\n"); // Llama 3's original/tokenizer.model format
        var messages = new List<string>();
        using (var f = ConvertAndOpen(dir, "tiktoken", messages))
            Assert.Equal("gpt2", f.GetString("tokenizer.ggml.model"));
        Assert.Contains(messages, m => m.Contains("tiktoken", StringComparison.Ordinal));

        File.Delete(Path.Combine(dir, "tokenizer.json"));
        AssertFailsWithoutOutput(dir, "tiktoken");
    }

    [Fact]
    public void SafetensorsHeaderIsValidated()
    {
        static byte[] H(string json) => Encoding.UTF8.GetBytes(json);
        var e = Assert.Throws<InvalidDataException>(() => SafetensorsFile.ParseHeader("x", H("""{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}}"""), 100));
        Assert.Contains("needs 16", e.Message);
        e = Assert.Throws<InvalidDataException>(() => SafetensorsFile.ParseHeader("x", H("""{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"BF16","shape":[4],"data_offsets":[8,16]}}"""), 100));
        Assert.Contains("overlap", e.Message);
        e = Assert.Throws<InvalidDataException>(() => SafetensorsFile.ParseHeader("x", H("""{"a":{"dtype":"F16","shape":[40],"data_offsets":[40,120]}}"""), 100));
        Assert.Contains("past the end", e.Message);
        e = Assert.Throws<InvalidDataException>(() => SafetensorsFile.ParseHeader("x", H("""{"a":{"dtype":"Q4","shape":[4],"data_offsets":[0,2]}}"""), 100));
        Assert.Contains("dtype", e.Message);
        e = Assert.Throws<InvalidDataException>(() => SafetensorsFile.ParseHeader("x", H("""{"a": [1, 2"""), 100));
        Assert.Contains("JSON", e.Message);

        var (tensors, meta) = SafetensorsFile.ParseHeader("x", H("""{"__metadata__":{"format":"pt"},"b":{"dtype":"BF16","shape":[4],"data_offsets":[16,24]},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"""), 24);
        Assert.Equal(new[] { "a", "b" }, tensors.Select(t => t.Name));
        Assert.Equal("pt", meta["format"]);

        string path = Path.Combine(_dir, "huge.safetensors");
        File.WriteAllBytes(path, BitConverter.GetBytes(1UL << 40).Concat(new byte[16]).ToArray());
        e = Assert.Throws<InvalidDataException>(() => SafetensorsFile.Open(path));
        Assert.Contains("header length", e.Message);
    }

    /// <summary>An IProgress that reports synchronously (Progress&lt;T&gt; posts to the thread pool).</summary>
    private sealed class SyncProgress(Action<string> report) : IProgress<string>
    {
        public void Report(string value) => report(value);
    }
}
