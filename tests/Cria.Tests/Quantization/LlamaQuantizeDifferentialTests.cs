using Cria.Gguf;
using Cria.Model;
using Cria.Numerics;
using Cria.Quantization;
using Cria.Tests.Differential;
using LLama;
using LLama.Native;
using Xunit;
using Xunit.Abstractions;

namespace Cria.Tests.Quantization;

/// <summary>
/// <c>cria quantize</c> against llama-quantize itself (llama.cpp's <c>llama_model_quantize</c> inside
/// LLamaSharp.Backend.Cpu 0.30.0, called through <see cref="LLamaQuantizer"/>): for every file type,
/// the same input gives every tensor the same type, shape and bytes. Two random-weight F32 inputs
/// exercise the per-tensor rules: "wide" (8 blocks, rows of 256 and 512, n_gqa = 4, so the
/// layer-dependent and GQA-dependent bumps apply) and "narrow" (ffn_down rows of 320, so the K-quants
/// fall back to the legacy types).
/// </summary>
[Collection(LlamaCppCollection.Name)]
public sealed class LlamaQuantizeDifferentialTests : IClassFixture<LlamaQuantizeDifferentialTests.Inputs>
{
    public sealed class Inputs : IDisposable
    {
        public DirectoryInfo Dir { get; } = Directory.CreateTempSubdirectory("cria-llama-quantize-");
        public string Wide { get; }
        public string Narrow { get; }

        public Inputs()
        {
            Wide = Path.Combine(Dir.FullName, "wide-f32.gguf");
            SyntheticModel.Write(new SyntheticModel.SyntheticModelSpec
            {
                EmbeddingLength = 256, FeedForwardLength = 512, BlockCount = 8, HeadCount = 8, KvHeadCount = 2,
                Type = GgmlType.F32, Seed = 41,
            }, Wide);
            Narrow = Path.Combine(Dir.FullName, "narrow-f32.gguf");
            SyntheticModel.Write(new SyntheticModel.SyntheticModelSpec
            {
                EmbeddingLength = 256, FeedForwardLength = 320, BlockCount = 4, HeadCount = 4, KvHeadCount = 2,
                Type = GgmlType.F32, Seed = 42,
            }, Narrow);
        }

        public void Dispose()
        {
            try { Dir.Delete(recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    private readonly Inputs _inputs;
    private readonly ITestOutputHelper _out;

    public LlamaQuantizeDifferentialTests(Inputs inputs, ITestOutputHelper output)
    {
        _inputs = inputs;
        _out = output;
    }

    /// <summary>Every type <c>cria quantize</c> makes except BF16, which LLamaSharp's wrapper refuses to pass on.</summary>
    public static TheoryData<string> FileTypes() => new()
    {
        "F16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L",
        "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS",
    };

    [SkippableTheory]
    [MemberData(nameof(FileTypes))]
    public void SameTensorTypesAndBytesAsLlamaQuantize(string fileType)
    {
        LlamaCppOracle.SkipIfUnavailable();
        Assert.True(LlamaFileTypes.TryParse(fileType, out var type));
        var llamaType = Enum.Parse<LLamaFtype>("MOSTLY_" + fileType);
        foreach (var (label, input) in new[] { ("wide", _inputs.Wide), ("narrow", _inputs.Narrow) })
        {
            string ours = Path.Combine(_inputs.Dir.FullName, $"{label}-{fileType}-cria.gguf");
            string theirs = Path.Combine(_inputs.Dir.FullName, $"{label}-{fileType}-llama.gguf");
            ModelQuantizer.Quantize(input, ours, new QuantizationOptions { FileType = type, Threads = 2 });
            Assert.True(LLamaQuantizer.Quantize(input, theirs, llamaType, nthread: 2, allowRequantize: false, quantizeOutputTensor: true),
                $"llama.cpp could not quantize to {fileType}: {LlamaCppOracle.RecentLog()}");
            try
            {
                using var a = GgufFile.Open(ours);
                using var b = GgufFile.Open(theirs);
                Assert.Equal(b.GetInt("general.file_type"), a.GetInt("general.file_type"));
                Assert.Equal(b.Tensors.Select(t => t.Name).Order(), a.Tensors.Select(t => t.Name).Order());
                var mix = new SortedDictionary<string, int>();
                foreach (var expected in b.Tensors)
                {
                    var actual = a.GetTensor(expected.Name);
                    Assert.True(expected.Type == actual.Type, $"{label} {fileType}: {expected.Name} is {actual.Type} in Cria's file, {expected.Type} in llama-quantize's");
                    Assert.Equal(expected.Dimensions, actual.Dimensions);
                    Assert.True(b.GetTensorBytes(expected).SequenceEqual(a.GetTensorBytes(actual)),
                        $"{label} {fileType}: the bytes of {expected.Name} ({expected.Type}) differ from llama-quantize's");
                    string key = GgmlTypeInfo.Name(expected.Type);
                    mix[key] = mix.GetValueOrDefault(key) + 1;
                }
                _out.WriteLine($"{label} {fileType}: {b.Tensors.Count} tensors identical ({string.Join(", ", mix.Select(kv => $"{kv.Value} {kv.Key}"))})");
            }
            finally
            {
                File.Delete(ours);
                File.Delete(theirs);
            }
        }
    }
}
