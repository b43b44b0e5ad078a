using Cria.Gguf;
using Cria.Model;
using Cria.Numerics;
using Cria.Numerics.Kernels;
using Cria.Quantization;
using Xunit;

namespace Cria.Tests.Model;

/// <summary>
/// Loading with repacking (the default; Q4_0, Q8_0, Q4_K and Q6_K): which matrices are repacked, and that the model computes
/// what the unrepacked one does. Decode differs only in the float rounding of the accumulation (one int32 per block, the
/// batched order, instead of ggml's eight lanes), so logits agree closely and greedy tokens exactly.
/// </summary>
public sealed class RepackedWeightsTests : IDisposable
{
    private readonly string _path = Path.Combine(Path.GetTempPath(), $"cria-repack-{Guid.NewGuid():N}.gguf");

    public RepackedWeightsTests() =>
        SyntheticModel.Write(new SyntheticModel.SyntheticModelSpec
        {
            EmbeddingLength = 128, FeedForwardLength = 352, BlockCount = 2, HeadCount = 4, KvHeadCount = 2,
            ContextLength = 256, Type = GgmlType.Q4_0, Seed = 11,
        }, _path);

    public void Dispose() => File.Delete(_path);

    /// <summary>
    /// Bytes of the matrices the loader should repack (Q4_0, Q8_0, and Q4_K and Q6_K on CPUs with AVX2 and FMA): block matrices and
    /// the output (a tied one as its own copy), rows a multiple of 8.
    /// </summary>
    private static long RepackableBytes(GgufFile file)
    {
        bool tied = !file.TryGetTensor("output.weight", out _);
        return file.Tensors.Where(t => (t.Name.StartsWith("blk.", StringComparison.Ordinal) || t.Name == "output.weight" || tied && t.Name == "token_embd.weight")
                                       && (t.Type is GgmlType.Q4_0 or GgmlType.Q8_0 || t.Type is GgmlType.Q4_K or GgmlType.Q6_K && CpuFeatures.Avx2Fma)
                                       && t.Dimensions.Length == 2 && t.Dimensions[1] % 8 == 0)
                           .Sum(t => (long)t.ByteSize);
    }

    [Fact]
    public void Q4_0Matrices_AreRepacked_ButNotTheTokenEmbeddingLookups()
    {
        using var packed = LlamaModel.Load(_path, new ModelOptions { Threads = 2 });
        using var plain = LlamaModel.Load(_path, new ModelOptions { Threads = 2, RepackWeights = false });
        long expected = RepackableBytes(packed.File);
        Assert.True(expected > 0);
        Assert.Equal(expected, packed.Weights.RepackedBytes);
        Assert.Equal(0, plain.Weights.RepackedBytes);
        Assert.All(packed.Weights.Blocks, b => Assert.Equal(WeightLayout.Q4_0x8, b.Down.Layout));
        Assert.All(plain.Weights.Blocks, b => Assert.Equal(WeightLayout.Rows, b.Down.Layout));
        Assert.Equal(WeightLayout.Rows, packed.Weights.TokenEmbedding.Layout);
        Assert.Equal(packed.Weights.Output.Rows % 8 == 0 ? WeightLayout.Q4_0x8 : WeightLayout.Rows, packed.Weights.Output.Layout);
    }

    /// <summary>A tied output projection gets a repacked copy of the embedding; lookups still read the mapped rows.</summary>
    [Fact]
    public void TiedOutput_GetsItsOwnRepackedCopy()
    {
        string tied = Path.Combine(Path.GetTempPath(), $"cria-repack-{Guid.NewGuid():N}.gguf");
        try
        {
            SyntheticModel.Write(new SyntheticModel.SyntheticModelSpec
            {
                EmbeddingLength = 128, FeedForwardLength = 256, BlockCount = 1, HeadCount = 4, KvHeadCount = 2,
                ContextLength = 256, Type = GgmlType.Q4_0, TiedEmbeddings = true, Seed = 13,
            }, tied);
            using (var model = LlamaModel.Load(tied, new ModelOptions { Threads = 2 }))
            {
                Assert.True(model.Weights.OutputIsTied);
                Assert.Equal(WeightLayout.Rows, model.Weights.TokenEmbedding.Layout);
                Assert.Equal(model.Weights.TokenEmbedding.Rows % 8 == 0 ? WeightLayout.Q4_0x8 : WeightLayout.Rows, model.Weights.Output.Layout);
                Assert.Equal(RepackableBytes(model.File), model.Weights.RepackedBytes);
            }
            SameAsUnrepacked(tied, promptBitsEqual: true);
        }
        finally
        {
            File.Delete(tied);
        }
    }

    /// <summary>
    /// Matrices several times larger than the loader's read chunk (<see cref="WeightRepacker.ChunkBytes"/>), with a partial
    /// last chunk: every row of every repacked matrix reads back exactly as the file's row (Q8_0 and Q4_0).
    /// </summary>
    [Theory]
    [InlineData(GgmlType.Q8_0)]
    [InlineData(GgmlType.Q4_0)]
    public void MatricesLargerThanAReadChunk_ReadBackExactly(GgmlType type)
    {
        string path = Path.Combine(Path.GetTempPath(), $"cria-repack-{Guid.NewGuid():N}.gguf");
        try
        {
            SyntheticModel.Write(new SyntheticModel.SyntheticModelSpec
            {
                EmbeddingLength = 256, FeedForwardLength = 4128, BlockCount = 1, HeadCount = 4, KvHeadCount = 2,
                ContextLength = 256, Type = type, Seed = 15,
            }, path);
            using var packed = LlamaModel.Load(path, new ModelOptions { Threads = 2 });
            using var plain = LlamaModel.Load(path, new ModelOptions { Threads = 2, RepackWeights = false });
            var b = packed.Weights.Blocks[0];
            var q = plain.Weights.Blocks[0];
            foreach (var (p, r) in new[] { (b.Gate, q.Gate), (b.Up, q.Up), (b.Down, q.Down) })
            {
                long bytes = p.RowBytes * p.Rows;
                Assert.True(bytes > 2L * WeightRepacker.ChunkBytes && bytes % WeightRepacker.ChunkBytes != 0, $"{bytes} bytes");
                Assert.NotEqual(WeightLayout.Rows, p.Layout);
                Assert.Equal(WeightLayout.Rows, r.Layout);
                float[] x = new float[p.Cols], y = new float[p.Cols];
                for (int row = 0; row < p.Rows; row++)
                {
                    MatMul.GetRow(p, row, x);
                    MatMul.GetRow(r, row, y);
                    Assert.True(x.AsSpan().SequenceEqual(y), $"row {row} of a {p.Rows} x {p.Cols} matrix");
                }
            }
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void RepackedModel_ComputesTheSameLogits_ToRounding_AndTheSameGreedyTokens() => SameAsUnrepacked(_path, promptBitsEqual: true);

    /// <summary>A Q8_0 file: its block matrices are repacked and it computes what the unrepacked file does.</summary>
    [Fact]
    public void Q8_0Model_RepacksItsMatrices_AndComputesTheSame()
    {
        string q8 = Path.Combine(Path.GetTempPath(), $"cria-repack-{Guid.NewGuid():N}.gguf");
        try
        {
            SyntheticModel.Write(new SyntheticModel.SyntheticModelSpec
            {
                EmbeddingLength = 128, FeedForwardLength = 352, BlockCount = 2, HeadCount = 4, KvHeadCount = 2,
                ContextLength = 256, Type = GgmlType.Q8_0, Seed = 14,
            }, q8);
            using (var model = LlamaModel.Load(q8, new ModelOptions { Threads = 2 }))
            {
                Assert.All(model.Weights.Blocks, b => Assert.Equal(WeightLayout.Q8_0x8, b.Down.Layout));
                Assert.All(model.Weights.Blocks, b => Assert.Equal(WeightLayout.Q8_0x8, b.Query.Layout));
                Assert.Equal(RepackableBytes(model.File), model.Weights.RepackedBytes);
            }
            // Without AVX-VNNI the plain rows' batches keep ggml's lane order, the repacked ones one int32 per block.
            SameAsUnrepacked(q8, promptBitsEqual: CpuFeatures.VnniTiles);
        }
        finally
        {
            File.Delete(q8);
        }
    }

    /// <summary>
    /// A Q4_K_M file (Q4_K with some Q6_K): on CPUs with AVX2 and FMA its Q4_K and Q6_K matrices are repacked and it
    /// computes what the unrepacked file does; without them nothing is repacked.
    /// </summary>
    [Fact]
    public void Q4_K_M_Model_RepacksItsQ4_KAndQ6_KMatrices_AndComputesTheSame()
    {
        string f32 = Path.Combine(Path.GetTempPath(), $"cria-repack-{Guid.NewGuid():N}.gguf");
        string q4km = Path.Combine(Path.GetTempPath(), $"cria-repack-{Guid.NewGuid():N}.gguf");
        try
        {
            SyntheticModel.Write(new SyntheticModel.SyntheticModelSpec
            {
                EmbeddingLength = 256, FeedForwardLength = 512, BlockCount = 2, HeadCount = 4, KvHeadCount = 2, ContextLength = 256, Seed = 12,
            }, f32);
            ModelQuantizer.Quantize(f32, q4km, new QuantizationOptions { FileType = LlamaFileType.MostlyQ4_K_M, Threads = 2 });
            using (var model = LlamaModel.Load(q4km, new ModelOptions { Threads = 2 }))
            {
                var gate = model.Weights.Blocks[0].Gate;
                Assert.Equal(GgmlType.Q4_K, gate.Type);
                Assert.Equal(CpuFeatures.Avx2Fma ? WeightLayout.Q4_Kx8 : WeightLayout.Rows, gate.Layout);
                Assert.Contains(model.Weights.Blocks, b => b.Value.Type == GgmlType.Q6_K); // Q4_K_M keeps some V projections in Q6_K
                Assert.All(model.Weights.Blocks, b => Assert.True(b.Value.Type != GgmlType.Q6_K
                    || b.Value.Layout == (CpuFeatures.Avx2Fma ? WeightLayout.Q6_Kx8 : WeightLayout.Rows)));
                Assert.Equal(RepackableBytes(model.File), model.Weights.RepackedBytes);
            }
            // Without AVX-VNNI the plain rows' Q4_K batches keep ggml's lane order, the repacked ones one int32 per super-block.
            SameAsUnrepacked(q4km, promptBitsEqual: CpuFeatures.VnniTiles);
        }
        finally
        {
            File.Delete(f32);
            File.Delete(q4km);
        }
    }

    /// <summary>
    /// The repacked model against the unrepacked one. <paramref name="promptBitsEqual"/>: the plain rows' batched kernels already sum
    /// each block to one int32 (Q4BatchDot; Q8BatchDot and Q4KBatchDot with AVX-VNNI), so a prompt must give the same bits.
    /// </summary>
    private static void SameAsUnrepacked(string path, bool promptBitsEqual)
    {
        using var packed = LlamaModel.Load(path, new ModelOptions { Threads = 2 });
        using var plain = LlamaModel.Load(path, new ModelOptions { Threads = 2, RepackWeights = false });
        // A prompt with the logits of every position runs every product with several activation rows.
        int[] prompt = { 1, 17, 42, 99, 5, 200, 3, 8, 9 };
        using (var cp = packed.CreateContext(new ContextOptions { ContextSize = 64 }))
        using (var cq = plain.CreateContext(new ContextOptions { ContextSize = 64 }))
        {
            float[] p = cp.EvaluateAll(prompt), q = cq.EvaluateAll(prompt);
            if (promptBitsEqual) Assert.Equal(q, p);
            else AssertWithinRounding(q, p, "prompt");
        }

        // One-row decode is where the orders differ (ggml's eight lanes against one int32 per block): every logit within
        // rounding, the same greedy tokens.
        var (tokensP, logitsP) = Greedy(packed, prompt);
        var (tokensQ, logitsQ) = Greedy(plain, prompt);
        Assert.Equal(tokensQ, tokensP);
        for (int step = 0; step < logitsP.Count; step++) AssertWithinRounding(logitsQ[step], logitsP[step], $"step {step}");
    }

    private static void AssertWithinRounding(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        float scale = expected.Max(MathF.Abs);
        float worst = 0;
        for (int i = 0; i < actual.Length; i++) worst = MathF.Max(worst, MathF.Abs(actual[i] - expected[i]));
        // The two orders of one dot differ by a few float roundings of its partial sums, about 2^-24 of the sum of the
        // terms' magnitudes each (measured here: 6e-8 of a logit scale of 0.73); 1e-5 of the scale leaves room for two
        // blocks of propagation and stays far below what a wrong block, row or scale would do (an error of the logits' own size).
        Assert.True(worst <= 1e-5f * scale, $"{what}: logits differ by {worst} (scale {scale})");
    }

    private static (List<int> tokens, List<float[]> logits) Greedy(LlamaModel model, int[] prompt)
    {
        using var context = model.CreateContext(new ContextOptions { ContextSize = 64 });
        var logits = new List<float[]> { context.Evaluate(prompt).ToArray() }; // a batch: prompt tiles
        var tokens = new List<int>();
        for (int step = 0; step < 8; step++) // one row at a time: the decode kernels
        {
            int next = Array.IndexOf(logits[^1], logits[^1].Max());
            tokens.Add(next);
            logits.Add(context.Evaluate(new[] { next }).ToArray());
        }
        return (tokens, logits);
    }

    /// <summary>A matrix with an infinite scale stays in the file's rows (the kernels convert finite scales only); the others are repacked.</summary>
    [Fact]
    public void MatrixWithInfiniteScale_StaysInRows()
    {
        long offset;
        using (var file = GgufFile.Open(_path))
            offset = file.DataOffset + (long)file.GetTensor("blk.1.ffn_up.weight").Offset + 5 * 18; // block 5's scale
        using (var stream = new FileStream(_path, FileMode.Open, FileAccess.Write))
        {
            stream.Position = offset;
            stream.Write(new byte[] { 0x00, 0x7C }); // +infinity as a half
        }
        using var model = LlamaModel.Load(_path, new ModelOptions { Threads = 2 });
        Assert.Equal(WeightLayout.Rows, model.Weights.Blocks[1].Up.Layout);
        Assert.Equal(WeightLayout.Q4_0x8, model.Weights.Blocks[1].Gate.Layout);
        Assert.Equal(RepackableBytes(model.File) - model.Weights.Blocks[1].Up.RowBytes * model.Weights.Blocks[1].Up.Rows, model.Weights.RepackedBytes);
    }
}
