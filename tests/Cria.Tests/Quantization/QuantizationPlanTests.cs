using Cria.Gguf;
using Cria.Model;
using Cria.Numerics;
using Cria.Quantization;
using Xunit;

namespace Cria.Tests.Quantization;

/// <summary>
/// llama-quantize's per-tensor rules on a synthetic 12-layer Llama with 256-wide rows (where the
/// K-quants apply, unlike stories260K): the attn_v / ffn_down bumps of each mix by layer, output
/// Q6_K, norms kept F32, and the loader's numeric layer order (blk.2 before blk.10) for the
/// counters. Expected types follow src/llama-quant.cpp at c392e5094 by hand.
/// </summary>
public sealed class QuantizationPlanTests : IClassFixture<QuantizationPlanTests.Synthetic>
{
    public sealed class Synthetic : IDisposable
    {
        public string Dir { get; } = Directory.CreateTempSubdirectory("cria-qplan-").FullName;
        public string Path { get; }

        public Synthetic()
        {
            Path = System.IO.Path.Combine(Dir, "synthetic-f32.gguf");
            SyntheticModel.Write(new SyntheticModel.SyntheticModelSpec
            {
                EmbeddingLength = 256, FeedForwardLength = 256, BlockCount = 12, HeadCount = 8, KvHeadCount = 2,
            }, Path);
        }

        public void Dispose()
        {
            try { Directory.Delete(Dir, true); } catch (IOException) { }
        }
    }

    private readonly Synthetic _model;

    public QuantizationPlanTests(Synthetic model) => _model = model;

    private Dictionary<string, GgmlType> Types(LlamaFileType type, bool pure = false)
    {
        using var f = GgufFile.Open(_model.Path);
        var plan = QuantizationPlan.Create(f, new QuantizationOptions { FileType = type, Pure = pure });
        return plan.Tensors.ToDictionary(p => p.Source.Name, p => p.Type);
    }

    private static readonly int[] MoreBits12 = [0, 3, 6, 9, 10, 11]; // use_more_bits(i, 12)

    [Fact]
    public void Q4_K_M_BumpsAttnVAndFfnDownByLayer()
    {
        var t = Types(LlamaFileType.MostlyQ4_K_M);
        for (int i = 0; i < 12; i++)
        {
            var bumped = MoreBits12.Contains(i) ? GgmlType.Q6_K : GgmlType.Q4_K;
            Assert.Equal(bumped, t[$"blk.{i}.attn_v.weight"]);
            Assert.Equal(bumped, t[$"blk.{i}.ffn_down.weight"]);
            Assert.Equal(GgmlType.Q4_K, t[$"blk.{i}.attn_q.weight"]);
            Assert.Equal(GgmlType.Q4_K, t[$"blk.{i}.ffn_up.weight"]);
            Assert.Equal(GgmlType.F32, t[$"blk.{i}.attn_norm.weight"]);
        }
        Assert.Equal(GgmlType.Q6_K, t["output.weight"]);
        Assert.Equal(GgmlType.Q4_K, t["token_embd.weight"]);
        Assert.Equal(GgmlType.F32, t["output_norm.weight"]);
    }

    [Fact]
    public void TensorOrder_IsTheLoadersLayerThenNameOrder()
    {
        using var f = GgufFile.Open(_model.Path);
        var names = QuantizationPlan.Create(f, new QuantizationOptions { FileType = LlamaFileType.MostlyQ6_K }).Tensors.Select(p => p.Source.Name).ToList();
        Assert.Equal(["output.weight", "output_norm.weight", "token_embd.weight", "blk.0.attn_k.weight"], names.Take(4));
        Assert.True(names.IndexOf("blk.2.attn_v.weight") < names.IndexOf("blk.10.attn_v.weight"));
        Assert.Equal("blk.11.ffn_up.weight", names[^1]);
    }

    [Fact]
    public void OtherMixes()
    {
        var q3m = Types(LlamaFileType.MostlyQ3_K_M);
        Assert.Equal(GgmlType.Q5_K, q3m["blk.0.attn_v.weight"]);
        Assert.Equal(GgmlType.Q5_K, q3m["blk.1.attn_v.weight"]);
        Assert.Equal(GgmlType.Q4_K, q3m["blk.2.attn_v.weight"]);
        Assert.Equal(GgmlType.Q4_K, q3m["blk.0.ffn_down.weight"]); // 0 < 12/16 is false
        Assert.Equal(GgmlType.Q4_K, q3m["blk.5.attn_output.weight"]);
        Assert.Equal(GgmlType.Q3_K, q3m["blk.5.ffn_gate.weight"]);

        var q2 = Types(LlamaFileType.MostlyQ2_K);
        Assert.Equal(GgmlType.Q4_K, q2["blk.3.attn_v.weight"]); // n_gqa = 4
        Assert.Equal(GgmlType.Q3_K, q2["blk.3.ffn_down.weight"]);
        Assert.Equal(GgmlType.Q3_K, q2["blk.3.attn_output.weight"]);
        Assert.Equal(GgmlType.Q2_K, q2["blk.3.attn_k.weight"]);
        Assert.Equal(GgmlType.Q6_K, q2["output.weight"]);

        var q4s = Types(LlamaFileType.MostlyQ4_K_S);
        Assert.Equal(GgmlType.Q5_K, q4s["blk.3.attn_v.weight"]);
        Assert.Equal(GgmlType.Q4_K, q4s["blk.4.attn_v.weight"]);
        Assert.Equal(GgmlType.Q5_K, q4s["blk.0.ffn_down.weight"]);
        Assert.Equal(GgmlType.Q4_K, q4s["blk.1.ffn_down.weight"]);

        var q5m = Types(LlamaFileType.MostlyQ5_K_M);
        Assert.Equal(GgmlType.Q6_K, q5m["blk.9.ffn_down.weight"]);
        Assert.Equal(GgmlType.Q5_K, q5m["blk.8.ffn_down.weight"]);

        var xs = Types(LlamaFileType.MostlyIQ4_XS);
        Assert.Equal(GgmlType.Q5_K, xs["blk.7.attn_v.weight"]);
        Assert.Equal(GgmlType.Q5_K, xs["blk.0.ffn_down.weight"]);
        Assert.Equal(GgmlType.IQ4_XS, xs["blk.1.ffn_down.weight"]);
        Assert.Equal(GgmlType.Q6_K, xs["output.weight"]);

        var q40 = Types(LlamaFileType.MostlyQ4_0);
        Assert.Equal(GgmlType.Q4_0, q40["blk.0.ffn_down.weight"]);
        Assert.Equal(GgmlType.Q6_K, q40["output.weight"]);

        var pure = Types(LlamaFileType.MostlyQ4_K_M, pure: true);
        Assert.Equal(GgmlType.Q4_K, pure["blk.0.attn_v.weight"]);
        Assert.Equal(GgmlType.Q4_K, pure["output.weight"]);

        var f16 = Types(LlamaFileType.MostlyF16);
        Assert.Equal(GgmlType.F16, f16["output.weight"]);
        Assert.Equal(GgmlType.F32, f16["blk.0.ffn_norm.weight"]);
    }

    [Fact]
    public void TiedEmbeddings_GetTheOutputRule()
    {
        string path = System.IO.Path.Combine(_model.Dir, "tied.gguf");
        SyntheticModel.Write(new SyntheticModel.SyntheticModelSpec
        {
            EmbeddingLength = 256, FeedForwardLength = 256, BlockCount = 1, HeadCount = 4, KvHeadCount = 4, TiedEmbeddings = true,
        }, path);
        using var f = GgufFile.Open(path);
        var plan = QuantizationPlan.Create(f, new QuantizationOptions { FileType = LlamaFileType.MostlyQ4_K_M });
        Assert.Equal(GgmlType.Q6_K, plan.Tensors.Single(p => p.Source.Name == "token_embd.weight").Type);
        var q40 = QuantizationPlan.Create(f, new QuantizationOptions { FileType = LlamaFileType.MostlyQ4_0, TokenEmbeddingType = GgmlType.Q8_0 });
        Assert.Equal(GgmlType.Q8_0, q40.Tensors.Single(p => p.Source.Name == "token_embd.weight").Type);
    }

    [Theory]
    [InlineData(LlamaFileType.MostlyQ4_K_M, 0.05)]
    [InlineData(LlamaFileType.MostlyIQ4_XS, 0.05)]
    [InlineData(LlamaFileType.MostlyQ3_K_S, 0.4)]
    public void KQuantOutput_LoadsAndRunsCloseToF32(LlamaFileType type, double tolerance)
    {
        string output = System.IO.Path.Combine(_model.Dir, $"q-{(int)type}.gguf");
        ModelQuantizer.Quantize(_model.Path, output, new QuantizationOptions { FileType = type, Threads = 2 });
        float[] reference = Logits(_model.Path), quantized = Logits(output);
        double num = 0, den = 0;
        for (int i = 0; i < reference.Length; i++)
        {
            Assert.True(float.IsFinite(quantized[i]));
            num += (quantized[i] - reference[i]) * (double)(quantized[i] - reference[i]);
            den += reference[i] * (double)reference[i];
        }
        Assert.True(num <= tolerance * den, $"relative squared error {num / den:G3}");
    }

    private static float[] Logits(string path)
    {
        using var m = LlamaModel.Load(path, new ModelOptions { Threads = 2 });
        using var ctx = m.CreateContext(new ContextOptions { ContextSize = 32 });
        return ctx.EvaluateAll(m.Tokenizer.Encode("Once upon a time")).ToArray();
    }
}

/// <summary>Inputs llama-quantize's row validation rejects fail with one message and no file.</summary>
public sealed class QuantizerValidationTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cria-qval-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    [Theory]
    [InlineData(float.NaN, LlamaFileType.MostlyQ6_K, "NaN")]
    [InlineData(1e6f, LlamaFileType.MostlyF16, "F16 range")]
    public void BadValues_FailWithoutOutput(float bad, LlamaFileType type, string expected)
    {
        string input = System.IO.Path.Combine(_dir, "in.gguf");
        SyntheticModel.Write(new SyntheticModel.SyntheticModelSpec
        {
            EmbeddingLength = 64, FeedForwardLength = 64, BlockCount = 1, HeadCount = 2, KvHeadCount = 2,
        }, input);
        // Poison one weight of blk.0.attn_q.weight in place.
        long offset;
        using (var f = GgufFile.Open(input))
        {
            var t = f.GetTensor("blk.0.attn_q.weight");
            offset = f.DataOffset + (long)t.Offset + 4 * 70;
        }
        using (var fs = new FileStream(input, FileMode.Open, FileAccess.ReadWrite))
        {
            fs.Position = offset;
            fs.Write(BitConverter.GetBytes(bad));
        }
        string output = System.IO.Path.Combine(_dir, "out.gguf");
        var e = Assert.Throws<QuantizationException>(() => ModelQuantizer.Quantize(input, output, new QuantizationOptions { FileType = type }));
        Assert.Contains("blk.0.attn_q.weight", e.Message);
        Assert.Contains(expected, e.Message);
        Assert.Equal(["in.gguf"], Directory.GetFiles(_dir).Select(System.IO.Path.GetFileName));
    }
}
