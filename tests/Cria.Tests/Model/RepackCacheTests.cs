using Cria.Gguf;
using Cria.Model;
using Cria.Numerics;
using Cria.Numerics.Kernels;
using Cria.Quantization;
using Cria.Tests.Cli;
using Xunit;

namespace Cria.Tests.Model;

/// <summary>
/// The repack cache (<see cref="ModelOptions.RepackCacheDirectory"/>): the first load writes it, a later load maps it and
/// computes the same bits as repacking in memory; a stale, damaged or unwritable cache never fails a load or changes a
/// result.
/// </summary>
public sealed class RepackCacheTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"cria-rpk-{Guid.NewGuid():N}");
    private readonly string _cacheDir;
    private readonly string _model;

    public RepackCacheTests()
    {
        Directory.CreateDirectory(_dir);
        _cacheDir = Path.Combine(_dir, "cache");
        _model = Path.Combine(_dir, "model.gguf");
        SyntheticModel.Write(new SyntheticModel.SyntheticModelSpec
        {
            EmbeddingLength = 128, FeedForwardLength = 352, BlockCount = 2, HeadCount = 4, KvHeadCount = 2,
            ContextLength = 256, Type = GgmlType.Q4_0, Seed = 21,
        }, _model);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly int[] Prompt = { 1, 17, 42, 99, 5, 200, 3, 8, 9 };

    private ModelOptions WithCache => new() { Threads = 2, RepackCacheDirectory = _cacheDir };

    /// <summary>Logits of every prompt position (batched products), then of eight greedy single-token steps (decode products).</summary>
    private static List<float[]> Run(LlamaModel model)
    {
        using var context = model.CreateContext(new ContextOptions { ContextSize = 64 });
        var all = new List<float[]> { context.EvaluateAll(Prompt) };
        for (int step = 0; step < 8; step++)
        {
            float[] last = all[^1][^model.Config.VocabularySize..];
            int next = Array.IndexOf(last, last.Max());
            all.Add(context.Evaluate(new[] { next }).ToArray());
        }
        return all;
    }

    private static void AssertSameBits(List<float[]> expected, List<float[]> actual)
    {
        Assert.Equal(expected.Count, actual.Count);
        for (int i = 0; i < expected.Count; i++) Assert.Equal(expected[i], actual[i]);
    }

    private string CacheFile() => Assert.Single(Directory.GetFiles(_cacheDir));

    [Fact]
    public void FirstLoadWritesTheCache_LaterLoadsMapIt_AndComputeTheSameBits() => WritesThenMaps(_model, WeightLayout.Q4_0x8);

    [Fact]
    public void Q8_0Model_WritesThenMapsTheCache()
    {
        string q8 = Path.Combine(_dir, "q8.gguf");
        SyntheticModel.Write(new SyntheticModel.SyntheticModelSpec
        {
            EmbeddingLength = 128, FeedForwardLength = 256, BlockCount = 1, HeadCount = 4, KvHeadCount = 2,
            ContextLength = 256, Type = GgmlType.Q8_0, TiedEmbeddings = true, Seed = 22,
        }, q8);
        WritesThenMaps(q8, WeightLayout.Q8_0x8);
    }

    /// <summary>Q4_K_M: Q4_K and Q6_K groups (repacked only on CPUs with AVX2 and FMA).</summary>
    [SkippableFact]
    public void Q4_K_M_Model_WritesThenMapsTheCache()
    {
        Skip.IfNot(CpuFeatures.Avx2Fma, "Q4_K and Q6_K are repacked only on CPUs with AVX2 and FMA");
        string f32 = Path.Combine(_dir, "f32.gguf"), q4km = Path.Combine(_dir, "q4km.gguf");
        SyntheticModel.Write(new SyntheticModel.SyntheticModelSpec
        {
            EmbeddingLength = 256, FeedForwardLength = 512, BlockCount = 2, HeadCount = 4, KvHeadCount = 2, ContextLength = 256, Seed = 23,
        }, f32);
        ModelQuantizer.Quantize(f32, q4km, new QuantizationOptions { FileType = LlamaFileType.MostlyQ4_K_M, Threads = 2 });
        WritesThenMaps(q4km, WeightLayout.Q4_Kx8);
        using var model = LlamaModel.Load(q4km, WithCache);
        Assert.Contains(model.Weights.Blocks, b => b.Value.Layout == WeightLayout.Q6_Kx8);
    }

    private void WritesThenMaps(string path, WeightLayout gateLayout)
    {
        List<float[]> expected;
        long repackedBytes;
        using (var inMemory = LlamaModel.Load(path, new ModelOptions { Threads = 2 }))
        {
            Assert.Equal(RepackCacheState.Off, inMemory.Weights.RepackCacheState);
            Assert.Null(inMemory.Weights.RepackCacheMessage);
            expected = Run(inMemory);
            repackedBytes = inMemory.Weights.RepackedBytes;
            Assert.True(repackedBytes > 0);
        }

        using (var first = LlamaModel.Load(path, WithCache))
        {
            Assert.Equal(RepackCacheState.Written, first.Weights.RepackCacheState);
            Assert.Contains(CacheFile(), first.Weights.RepackCacheMessage);
            Assert.Equal(repackedBytes, first.Weights.RepackedBytes);
            AssertSameBits(expected, Run(first));
        }
        Assert.True(new FileInfo(CacheFile()).Length >= repackedBytes);

        for (int i = 0; i < 2; i++)
        {
            using var later = LlamaModel.Load(path, WithCache);
            Assert.Equal(RepackCacheState.Loaded, later.Weights.RepackCacheState);
            Assert.Equal(repackedBytes, later.Weights.RepackedBytes);
            Assert.All(later.Weights.Blocks, b => Assert.Equal(gateLayout, b.Gate.Layout));
            AssertSameBits(expected, Run(later));
        }
        Assert.Single(Directory.GetFiles(_cacheDir)); // no temporary file left behind
    }

    [Fact]
    public void ChangedModelFile_MakesTheCacheStale_AndItIsWrittenAgain()
    {
        using (var first = LlamaModel.Load(_model, WithCache)) Assert.Equal(RepackCacheState.Written, first.Weights.RepackCacheState);
        File.SetLastWriteTimeUtc(_model, File.GetLastWriteTimeUtc(_model).AddSeconds(5));
        using (var again = LlamaModel.Load(_model, WithCache))
        {
            Assert.Equal(RepackCacheState.Written, again.Weights.RepackCacheState);
            Assert.Contains("model file changed", again.Weights.RepackCacheMessage);
        }
        using var third = LlamaModel.Load(_model, WithCache);
        Assert.Equal(RepackCacheState.Loaded, third.Weights.RepackCacheState);
    }

    /// <summary>A model rewritten with other weights but the same length and time is caught by the hash of its GGUF header.</summary>
    [Fact]
    public void ModelWithAnotherHeader_SameLengthAndTime_MakesTheCacheStale()
    {
        using (var first = LlamaModel.Load(_model, WithCache)) Assert.Equal(RepackCacheState.Written, first.Weights.RepackCacheState);
        var time = File.GetLastWriteTimeUtc(_model);
        byte[] bytes = File.ReadAllBytes(_model);
        int at = bytes.AsSpan().IndexOf("llama.context_length"u8);
        Assert.True(at > 0);
        bytes[at + "llama.context_length".Length + 4] ^= 1; // the value after the type: 256 becomes 257
        File.WriteAllBytes(_model, bytes);
        File.SetLastWriteTimeUtc(_model, time);
        using var again = LlamaModel.Load(_model, WithCache);
        Assert.Equal(257, again.Config.ContextLength);
        Assert.Equal(RepackCacheState.Written, again.Weights.RepackCacheState);
        Assert.Contains("model file changed", again.Weights.RepackCacheMessage);
    }

    public static TheoryData<string> Damages => new() { "truncated", "extended", "header byte", "magic", "version", "empty" };

    [Theory]
    [MemberData(nameof(Damages))]
    public void DamagedCache_IsIgnoredAndWrittenAgain_ResultsUnchanged(string damage)
    {
        List<float[]> expected;
        using (var first = LlamaModel.Load(_model, WithCache)) expected = Run(first);
        string cache = CacheFile();
        using (var f = new FileStream(cache, FileMode.Open, FileAccess.ReadWrite))
        {
            switch (damage)
            {
                case "truncated": f.SetLength(f.Length - 4096); break;
                case "extended": f.SetLength(f.Length + 1); break;
                case "header byte": f.Position = 100; int b = f.ReadByte(); f.Position = 100; f.WriteByte((byte)(b ^ 0x40)); break;
                case "magic": f.Position = 0; f.WriteByte((byte)'X'); break;
                case "version": f.Position = 8; f.WriteByte(99); break;
                case "empty": f.SetLength(0); break;
            }
        }
        using (var again = LlamaModel.Load(_model, WithCache))
        {
            Assert.Equal(RepackCacheState.Written, again.Weights.RepackCacheState);
            Assert.Contains("not used", again.Weights.RepackCacheMessage);
            AssertSameBits(expected, Run(again));
        }
        using var third = LlamaModel.Load(_model, WithCache);
        Assert.Equal(RepackCacheState.Loaded, third.Weights.RepackCacheState);
        AssertSameBits(expected, Run(third));
    }

    [Fact]
    public void UnwritableCacheDirectory_DoesNotFailTheLoad()
    {
        string notADirectory = Path.Combine(_dir, "file");
        File.WriteAllText(notADirectory, "x");
        List<float[]> expected;
        using (var plain = LlamaModel.Load(_model, new ModelOptions { Threads = 2 })) expected = Run(plain);
        using var model = LlamaModel.Load(_model, new ModelOptions { Threads = 2, RepackCacheDirectory = Path.Combine(notADirectory, "cache") });
        Assert.Equal(RepackCacheState.Failed, model.Weights.RepackCacheState);
        Assert.Contains("could not write the repack cache", model.Weights.RepackCacheMessage);
        AssertSameBits(expected, Run(model));
        Assert.Equal("x", File.ReadAllText(notADirectory));
    }

    [Fact]
    public void CacheDirectoryNameTheSystemRejects_DoesNotFailTheLoad()
    {
        using var model = LlamaModel.Load(_model, new ModelOptions { Threads = 2, RepackCacheDirectory = "bad\0name" });
        Assert.Equal(RepackCacheState.Failed, model.Weights.RepackCacheState);
        Assert.Contains("bad\0name", model.Weights.RepackCacheMessage);
        Assert.True(model.Weights.RepackedBytes > 0);
    }

    [Fact]
    public void WithoutRepacking_TheCacheIsNeitherReadNorWritten()
    {
        using var model = LlamaModel.Load(_model, new ModelOptions { Threads = 2, RepackWeights = false, RepackCacheDirectory = _cacheDir });
        Assert.Equal(RepackCacheState.Off, model.Weights.RepackCacheState);
        Assert.False(Directory.Exists(_cacheDir));
    }

    /// <summary>Two processes' worth of loads writing the same cache at once: each gets a whole file, the survivor is valid.</summary>
    [Fact]
    public async Task ConcurrentFirstLoads_LeaveOneValidCache()
    {
        var loads = Enumerable.Range(0, 3).Select(_ => Task.Run(() =>
        {
            using var m = LlamaModel.Load(_model, WithCache);
            return m.Weights.RepackCacheState;
        })).ToArray();
        RepackCacheState[] states = await Task.WhenAll(loads);
        Assert.All(states, s => Assert.True(s is RepackCacheState.Written or RepackCacheState.Loaded, s.ToString()));
        CacheFile();
        using var later = LlamaModel.Load(_model, WithCache);
        Assert.Equal(RepackCacheState.Loaded, later.Weights.RepackCacheState);
    }

    [Fact]
    public void CacheFileName_DependsOnTheModelsFullPath()
    {
        string a = RepackCache.PathFor(_cacheDir, Path.Combine(_dir, "a", "m.gguf"));
        string b = RepackCache.PathFor(_cacheDir, Path.Combine(_dir, "b", "m.gguf"));
        Assert.NotEqual(a, b);
        Assert.StartsWith(Path.Combine(_cacheDir, "m.gguf."), a);
        Assert.Equal(a, RepackCache.PathFor(_cacheDir, Path.Combine(_dir, "a", ".", "m.gguf")));
    }

    [Fact]
    public void Cli_RunsWithTheCache_AndRejectsAFileAsTheDirectory()
    {
        var first = CliRunner.Run("run", "-m", _model, "-p", "Hi", "-n", "4", "--temp", "0", "-t", "2", "--repack-cache", _cacheDir);
        Assert.Equal(0, first.ExitCode);
        Assert.Contains("repack cache written", first.Stderr);
        var second = CliRunner.Run("run", "-m", _model, "-p", "Hi", "-n", "4", "--temp", "0", "-t", "2", "--repack-cache", _cacheDir);
        Assert.Equal(0, second.ExitCode);
        Assert.Contains("mapped from the cache", second.Stderr);
        Assert.Equal(first.StdoutBytes, second.StdoutBytes);

        string file = Path.Combine(_dir, "file");
        File.WriteAllText(file, "x");
        var bad = CliRunner.Run("run", "-m", _model, "-p", "Hi", "-n", "4", "--repack-cache", file);
        Assert.NotEqual(0, bad.ExitCode);
        Assert.Contains("is a file, not a directory", bad.Stderr);
        Assert.DoesNotContain("   at ", bad.Stderr);
    }
}
