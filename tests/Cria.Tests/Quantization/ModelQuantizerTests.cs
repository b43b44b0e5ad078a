using Cria.Gguf;
using Cria.Model;
using Cria.Numerics;
using Cria.Quantization;
using Cria.Tests.Cli;
using Xunit;

namespace Cria.Tests.Quantization;

/// <summary>
/// <c>cria quantize</c> against llama-quantize's own output for stories260K (refdata/README.md,
/// "Quantization notes"): the files must be byte-identical, the legacy types must fail on the
/// 172-wide ffn_down rows like llama-quantize does, and failures must leave no file behind.
/// </summary>
public sealed class ModelQuantizerTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cria-quant-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    private string Out(string name) => Path.Combine(_dir, name);

    private static string F32 => RefData.Require("stories260K/stories260K-f32.gguf");

    private string Run(LlamaFileType type, string name, QuantizationOptions? options = null)
    {
        string output = Out(name);
        ModelQuantizer.Quantize(F32, output, (options ?? new QuantizationOptions { FileType = type }) with { FileType = type, Threads = 2 });
        return output;
    }

    [SkippableTheory]
    [InlineData(LlamaFileType.MostlyQ4_K_M, "stories260K/stories260K-q4_k_m.gguf")]
    [InlineData(LlamaFileType.MostlyQ5_K_M, "stories260K/stories260K-q5_k_m.gguf")]
    public void Quantize_IsByteIdenticalToLlamaQuantize(LlamaFileType type, string reference)
    {
        string expected = RefData.Require(reference);
        string output = Run(type, "out.gguf");
        byte[] a = File.ReadAllBytes(expected), b = File.ReadAllBytes(output);
        Assert.Equal(a.Length, b.Length);
        int first = a.AsSpan().CommonPrefixLength(b);
        Assert.True(first == a.Length, $"first difference at byte {first}");
    }

    /// <summary>
    /// stories260K-q2_k.gguf comes from the older llama.cpp (c392e5094), whose fallback for Q2_K/Q3_K rows
    /// that are not whole 256-blocks was IQ4_NL; the reference llama.cpp (LLamaSharp.Backend.Cpu 0.30.0,
    /// see LlamaQuantizeDifferentialTests) and Cria use Q4_0. Every other tensor is byte-identical, and
    /// the layout and metadata agree apart from the sizes that follow from the type.
    /// </summary>
    [SkippableFact]
    public void Q2_K_MatchesTheOlderLlamaQuantizeExceptTheChangedFallbackType()
    {
        string expected = RefData.Require("stories260K/stories260K-q2_k.gguf");
        string output = Run(LlamaFileType.MostlyQ2_K, "q2k.gguf");
        using var e = GgufFile.Open(expected);
        using var o = GgufFile.Open(output);
        Assert.Equal(e.MetadataList.Select(kv => kv.Key), o.MetadataList.Select(kv => kv.Key));
        foreach (var kv in e.MetadataList)
            Assert.Equal(kv.Value.ToString(), o.Metadata[kv.Key].ToString());
        Assert.Equal(e.Tensors.Select(t => t.Name), o.Tensors.Select(t => t.Name));
        int changed = 0;
        foreach (var et in e.Tensors)
        {
            var ot = o.GetTensor(et.Name);
            Assert.Equal(et.Dimensions, ot.Dimensions);
            if (et.Type == GgmlType.IQ4_NL)
            {
                Assert.Equal(GgmlType.Q4_0, ot.Type);
                changed++;
            }
            else
            {
                Assert.Equal(et.Type, ot.Type);
                Assert.True(e.GetTensorBytes(et).SequenceEqual(o.GetTensorBytes(ot)), $"{et.Name} ({et.Type}) differs");
            }
        }
        Assert.True(changed > 10, $"{changed} fallback tensors");
    }

    /// <summary>
    /// refdata's stories260K-q4_0.gguf was made by llama-quantize through the Q4_0 fallback (TQ1_0 with a
    /// Q8_0 output, see refdata/README.md). Cria's Q2_K reaches the same types through the same fallback,
    /// so every tensor must be byte-identical to that file's.
    /// </summary>
    [SkippableFact]
    public void Q2_K_GivesTheTensorsOfTheQ4_0ReferenceFile()
    {
        string expected = RefData.Require("stories260K/stories260K-q4_0.gguf");
        string output = Run(LlamaFileType.MostlyQ2_K, "q2k-vs-q40.gguf");
        using var e = GgufFile.Open(expected);
        using var o = GgufFile.Open(output);
        Assert.Equal(e.Tensors.Select(t => (t.Name, t.Type, string.Join(",", t.Dimensions))),
                     o.Tensors.Select(t => (t.Name, t.Type, string.Join(",", t.Dimensions))));
        foreach (var et in e.Tensors)
            Assert.True(e.GetTensorBytes(et).SequenceEqual(o.GetTensorBytes(o.GetTensor(et.Name))), $"{et.Name} ({et.Type}) differs");
    }

    [SkippableFact]
    public void Q6_K_GivesTheQ8_0ReferenceTensors()
    {
        // stories260K-q8_0.gguf is `llama-quantize f32 Q6_K` with general.file_type changed to 7.
        string expected = RefData.Require("stories260K/stories260K-q8_0.gguf");
        string output = Run(LlamaFileType.MostlyQ6_K, "q6k.gguf");
        using var e = GgufFile.Open(expected);
        using var o = GgufFile.Open(output);
        Assert.Equal(e.MetadataList.Select(kv => kv.Key), o.MetadataList.Select(kv => kv.Key));
        foreach (var kv in e.MetadataList.Where(kv => kv.Key != "general.file_type"))
            Assert.Equal(kv.Value.ToString(), o.Metadata[kv.Key].ToString());
        Assert.Equal(7, e.GetInt("general.file_type"));
        Assert.Equal(18, o.GetInt("general.file_type"));
        Assert.Equal(e.Tensors.Select(t => (t.Name, t.Type, string.Join(",", t.Dimensions), t.Offset)),
                     o.Tensors.Select(t => (t.Name, t.Type, string.Join(",", t.Dimensions), t.Offset)));
        Assert.Equal(e.DataOffset, o.DataOffset);
        byte[] a = File.ReadAllBytes(expected), b = File.ReadAllBytes(output);
        Assert.True(a.AsSpan((int)e.DataOffset).SequenceEqual(b.AsSpan((int)o.DataOffset)));
        Assert.Equal(GgmlType.F16, o.GetTensor("blk.0.ffn_down.weight").Type);
        Assert.Equal(GgmlType.Q8_0, o.GetTensor("token_embd.weight").Type);
        Assert.Equal(GgmlType.F32, o.GetTensor("output_norm.weight").Type);
    }

    [SkippableTheory]
    [InlineData(LlamaFileType.MostlyQ8_0)]
    [InlineData(LlamaFileType.MostlyQ4_0)]
    [InlineData(LlamaFileType.MostlyQ5_1)]
    public void LegacyTypes_FailOnRowsOf172_LikeLlamaQuantize_AndLeaveNoFile(LlamaFileType type)
    {
        string f32 = F32;
        var e = Assert.Throws<QuantizationException>(() => ModelQuantizer.Quantize(f32, Out("x.gguf"), new QuantizationOptions { FileType = type }));
        Assert.Contains("ffn_down", e.Message);
        Assert.Contains("172", e.Message);
        Assert.Contains("Unsupported tensor size", e.Message);
        Assert.Empty(Directory.GetFileSystemEntries(_dir));
    }

    [SkippableFact]
    public void Pure_Q4_0_FailsClearly()
    {
        string f32 = F32;
        var e = Assert.Throws<QuantizationException>(() =>
            ModelQuantizer.Quantize(f32, Out("x.gguf"), new QuantizationOptions { FileType = LlamaFileType.MostlyQ4_0, Pure = true }));
        Assert.Contains("172", e.Message);
        Assert.Empty(Directory.GetFileSystemEntries(_dir));
    }

    [SkippableFact]
    public void QuantizedInput_IsRejectedUnlessAllowed()
    {
        string q = RefData.Require("stories260K/stories260K-q4_k_m.gguf");
        var e = Assert.Throws<QuantizationException>(() => ModelQuantizer.Quantize(q, Out("x.gguf"), new QuantizationOptions { FileType = LlamaFileType.MostlyQ6_K }));
        Assert.Contains("already quantized", e.Message);
        Assert.Empty(Directory.GetFileSystemEntries(_dir));
        var log = new StringWriter();
        ModelQuantizer.Quantize(q, Out("re.gguf"), new QuantizationOptions { FileType = LlamaFileType.MostlyQ6_K, AllowRequantize = true }, log);
        Assert.Contains("requantizing", log.ToString());
        using var f = GgufFile.Open(Out("re.gguf"));
        Assert.Equal(GgmlType.Q8_0, f.GetTensor("blk.0.attn_q.weight").Type);
    }

    [SkippableFact]
    public void F16AndTypeOverrides()
    {
        string output = Run(LlamaFileType.MostlyF16, "f16.gguf");
        using (var f = GgufFile.Open(output))
        {
            // Same tensor types and data as llama-quantize's F16 file.
            using var e = GgufFile.Open(RefData.Require("stories260K/stories260K-f16.gguf"));
            Assert.Equal(e.Tensors.Select(t => (t.Name, t.Type)), f.Tensors.Select(t => (t.Name, t.Type)));
            foreach (var t in e.Tensors) Assert.True(e.GetTensorBytes(t).SequenceEqual(f.GetTensorBytes(f.GetTensor(t.Name))), t.Name);
        }
        string o2 = Run(LlamaFileType.MostlyQ4_K_M, "ovr.gguf", new QuantizationOptions
        {
            FileType = LlamaFileType.MostlyQ4_K_M, OutputTensorType = GgmlType.F16, TokenEmbeddingType = GgmlType.IQ4_NL,
        });
        using var g = GgufFile.Open(o2);
        Assert.Equal(GgmlType.F16, g.GetTensor("output.weight").Type);
        Assert.Equal(GgmlType.IQ4_NL, g.GetTensor("token_embd.weight").Type);
        Assert.Equal(2, g.GetInt("general.quantization_version"));
    }

    [SkippableFact]
    public void NonLlamaInput_IsRejected()
    {
        string vocab = RefData.Require("vocab/ggml-vocab-gpt-2.gguf");
        var e = Assert.Throws<QuantizationException>(() => ModelQuantizer.Quantize(vocab, Out("x.gguf"), new QuantizationOptions { FileType = LlamaFileType.MostlyQ6_K }));
        Assert.Contains("architecture", e.Message);
        Assert.Empty(Directory.GetFileSystemEntries(_dir));
    }

    [Fact]
    public void FileTypeNames_ParseCaseInsensitively()
    {
        Assert.True(LlamaFileTypes.TryParse("q4_k_m", out var t));
        Assert.Equal(LlamaFileType.MostlyQ4_K_M, t);
        Assert.Equal(15, (int)t);
        Assert.True(LlamaFileTypes.TryParse("Iq4_Xs", out t));
        Assert.Equal(30, (int)t);
        Assert.False(LlamaFileTypes.TryParse("Q4_K_X", out _));
        Assert.False(LlamaFileTypes.TryParse("IQ2_XXS", out _));
        Assert.Equal(18, LlamaFileTypes.Names.Count);
    }

    [SkippableFact]
    public void Output_LoadsAndRuns()
    {
        string q2 = Run(LlamaFileType.MostlyQ2_K, "q2.gguf");
        string xs = Run(LlamaFileType.MostlyIQ4_XS, "xs.gguf");
        foreach (var path in new[] { q2, xs })
        {
            using var m = LlamaModel.Load(path, new ModelOptions { Threads = 2 });
            using var ctx = m.CreateContext(new ContextOptions { ContextSize = 64 });
            var logits = ctx.Evaluate(m.Tokenizer.Encode("Once upon a time"));
            Assert.All(logits.ToArray(), v => Assert.True(float.IsFinite(v)));
        }
    }

    [SkippableFact]
    public void Cli_BadTypeName_IsOneClearError_AndWritesNothing()
    {
        var r = CliRunner.Run("quantize", F32, Out("x.gguf"), "Q4_K_X");
        Assert.Equal(1, r.ExitCode);
        Assert.StartsWith("error: unknown quantization type 'Q4_K_X'", r.Stderr);
        Assert.Empty(Directory.GetFileSystemEntries(_dir));
        r = CliRunner.Run("quantize", F32, Out("x.gguf"), "q8_0");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("Unsupported tensor size", r.Stderr);
        Assert.Empty(Directory.GetFileSystemEntries(_dir));
        r = CliRunner.Run("quantize", F32, Out("ok.gguf"), "q4_k_m", "--threads", "2");
        Assert.Equal(0, r.ExitCode);
        Assert.Equal(File.ReadAllBytes(RefData.Require("stories260K/stories260K-q4_k_m.gguf")), File.ReadAllBytes(Out("ok.gguf")));
    }
}
