using System.Text.Json.Nodes;
using Cria.Generation;
using Cria.Model;
using Cria.Sampling;
using Cria.Server;
using Cria.Tests.Differential;
using Xunit;
using static Cria.Tests.Server.ServerTestUtil;

namespace Cria.Tests.Server;

/// <summary>Continuous batching, log-probabilities, embeddings and infill on a running server.</summary>
[Collection("CriaServer")]
public sealed class ServerBatchingTests
{
    private const string QuantizedModel = "stories260K/stories260K-q8_0.gguf";

    private static async Task<CriaServer> StartAsync(LlamaModel model, int parallel)
    {
        var server = new CriaServer(model, new ServerOptions { Host = "127.0.0.1", Port = 0, Parallel = parallel, QueueSize = 8, ContextSize = ServerFixture.Context });
        await server.StartAsync();
        return server;
    }

    private static string Greedy(LlamaModel model, string prompt, int maxTokens)
    {
        using var session = new LlamaSession(model, new ContextOptions { ContextSize = ServerFixture.Context });
        int[] tokens = model.Tokenizer.Encode(prompt, addSpecial: true, parseSpecial: true);
        return string.Concat(session.GenerateText(tokens, new GenerationOptions { MaxTokens = maxTokens, Sampling = SamplerOptions.Greedy }));
    }

    [SkippableFact]
    public async Task ConcurrentRequestsAreDecodedTogetherAndEachGetsItsOwnAnswer()
    {
        using var model = LlamaModel.Load(RefData.Require(QuantizedModel), new ModelOptions { Threads = 2 });
        await using var server = await StartAsync(model, parallel: 4);
        using var client = NewClient(server);
        string[] prompts = { "Once upon a time", "The little dog", "Lily wanted to", "One day, a big" };
        int[] lengths = { 40, 25, 60, 33 };

        // Hold the compute thread so that all four requests are waiting when it resumes: then the
        // decode steps must carry all four sequences at once.
        using var gate = new ManualResetEventSlim();
        var blocker = server.Scheduler.RunAsync(() => gate.Wait(TimeSpan.FromSeconds(20)));
        var requests = prompts.Select((p, i) => PostAsync(client, "/v1/completions",
            new JsonObject { ["prompt"] = p, ["max_tokens"] = lengths[i], ["temperature"] = 0 })).ToArray();
        var until = DateTime.UtcNow.AddSeconds(10);
        while (server.Scheduler.Generating < prompts.Length && DateTime.UtcNow < until) await Task.Delay(5);
        Assert.Equal(prompts.Length, server.Scheduler.Generating);
        gate.Set();
        Assert.True(await blocker);

        var answers = await Task.WhenAll(requests);
        for (int i = 0; i < prompts.Length; i++)
        {
            var (status, body) = answers[i];
            Assert.Equal(200, status);
            // Q8_0 weights: a row's result does not depend on the batch it is in, so batched answers
            // equal the answer decoded alone, token for token.
            Assert.Equal(Greedy(model, prompts[i], lengths[i]), (string?)body["choices"]![0]!["text"]);
        }
        int[] generated = answers.Select(a => (int)a.Body["usage"]!["completion_tokens"]!).ToArray();
        Assert.Equal(prompts.Length, server.Metrics.LargestBatch);
        // Each request's first token comes from its prompt pass, every later one from a decode pass;
        // decoded one request at a time that would be one pass per token.
        int singleSteps = generated.Sum() - prompts.Length;
        Assert.True(singleSteps > 100, $"only {singleSteps} tokens decoded");
        Assert.Equal(singleSteps, server.Metrics.DecodedTokensTotal);
        Assert.True(server.Metrics.DecodeStepsTotal <= generated.Max() - 1, $"{server.Metrics.DecodeStepsTotal} passes for {singleSteps} tokens");
        string metrics = await client.GetStringAsync("/metrics");
        Assert.Contains($"cria_decode_batch_tokens_total {singleSteps}", metrics);
        Assert.Contains("cria_tokens_per_second ", metrics);
    }

    [SkippableFact]
    public async Task ChatLogprobsAreTheModelsLogSoftmaxAndGreedyPicksTheTopToken()
    {
        using var model = LlamaModel.Load(RefData.Require(ServerFixture.ModelFile), new ModelOptions { Threads = 1 });
        await using var server = await StartAsync(model, parallel: 1);
        using var client = NewClient(server);
        var (status, body) = await PostAsync(client, "/v1/completions", new JsonObject
        {
            ["prompt"] = "Once upon a time",
            ["max_tokens"] = 6,
            ["temperature"] = 0,
            ["logprobs"] = 3,
        });
        Assert.Equal(200, status);
        var lp = body["choices"]![0]!["logprobs"]!;
        var tokens = lp["tokens"]!.AsArray().Select(t => (string)t!).ToArray();
        var values = lp["token_logprobs"]!.AsArray().Select(t => (double)t!).ToArray();
        Assert.Equal(6, tokens.Length);
        Assert.Equal((string?)body["choices"]![0]!["text"], string.Concat(tokens));

        // Independent reference: the prompt's logits from a fresh context, log-softmax in double.
        using var ctx = model.CreateContext(new ContextOptions { ContextSize = 64 });
        float[] logits = ctx.Evaluate(model.Tokenizer.Encode("Once upon a time")).ToArray();
        int best = Array.IndexOf(logits, logits.Max());
        double max = logits.Max(), logZ = max + Math.Log(logits.Sum(l => Math.Exp(l - max)));
        Assert.Equal(logits[best] - logZ, values[0], 4);
        var top = lp["top_logprobs"]![0]!.AsObject();
        Assert.Equal(3, top.Count);
        Assert.Equal(tokens[0], top.First().Key); // greedy took the most likely token
        foreach (var v in values) Assert.True(v <= 0);

        // Chat shape, streamed: one entry per token, with bytes and alternatives.
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = Json(new JsonObject
            {
                ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Hi" }),
                ["max_tokens"] = 5, ["temperature"] = 0, ["stream"] = true, ["logprobs"] = true, ["top_logprobs"] = 2,
            }),
        };
        using var response = await client.SendAsync(request);
        string sse = await response.Content.ReadAsStringAsync();
        var entries = sse.Split('\n').Where(l => l.StartsWith("data: {"))
            .Select(l => JsonNode.Parse(l[6..])!["choices"]![0]!["logprobs"])
            .Where(n => n != null).SelectMany(n => n!["content"]!.AsArray()).ToArray();
        Assert.Equal(5, entries.Length);
        foreach (var e in entries)
        {
            Assert.Equal(2, e!["top_logprobs"]!.AsArray().Count);
            Assert.Equal((string?)e["token"], (string?)e["top_logprobs"]![0]!["token"]);
            Assert.NotEmpty(e["bytes"]!.AsArray());
        }

        var (badStatus, bad) = await PostAsync(client, "/v1/chat/completions", new JsonObject
        {
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Hi" }),
            ["top_logprobs"] = 2,
        });
        Assert.Equal(400, badStatus);
        Assert.Equal("top_logprobs", (string?)bad["error"]!["param"]);
    }

    [SkippableFact]
    public async Task EmbeddingsAreUnitVectorsInFloatOrBase64()
    {
        using var model = LlamaModel.Load(RefData.Require(ServerFixture.ModelFile), new ModelOptions { Threads = 1 });
        await using var server = await StartAsync(model, parallel: 1);
        using var client = NewClient(server);
        var (status, body) = await PostAsync(client, "/v1/embeddings", new JsonObject
        {
            ["input"] = new JsonArray("Once upon a time", "The dog ran", "Once upon a time"),
        });
        Assert.Equal(200, status);
        var data = body["data"]!.AsArray();
        Assert.Equal(3, data.Count);
        var vectors = data.Select(d => d!["embedding"]!.AsArray().Select(x => (float)x!).ToArray()).ToArray();
        foreach (var v in vectors)
        {
            Assert.Equal(model.Config.EmbeddingLength, v.Length);
            Assert.Equal(1.0, Math.Sqrt(v.Sum(x => (double)x * x)), 4);
        }
        Assert.Equal(vectors[0], vectors[2]);
        Assert.NotEqual(vectors[0], vectors[1]);
        int expectedTokens = new[] { "Once upon a time", "The dog ran", "Once upon a time" }.Sum(t => model.Tokenizer.Encode(t).Length);
        Assert.Equal(expectedTokens, (int)body["usage"]!["prompt_tokens"]!);

        var (_, b64) = await PostAsync(client, "/v1/embeddings", new JsonObject { ["input"] = "Once upon a time", ["encoding_format"] = "base64" });
        byte[] raw = Convert.FromBase64String((string)b64["data"]![0]!["embedding"]!);
        Assert.Equal(vectors[0], System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(raw).ToArray());

        // The slot's cache was used for the embedding; a completion afterwards is still right.
        var (_, completion) = await PostAsync(client, "/v1/completions", new JsonObject { ["prompt"] = "Once upon a time", ["max_tokens"] = 12, ["temperature"] = 0 });
        Assert.Equal(Greedy(model, "Once upon a time", 12), (string?)completion["choices"]![0]!["text"]);

        var (badStatus, bad) = await PostAsync(client, "/v1/embeddings", new JsonObject { ["input"] = 5 });
        Assert.Equal(400, badStatus);
        Assert.Equal("input", (string?)bad["error"]!["param"]);
    }

    /// <summary>
    /// A random-weight model whose SentencePiece vocabulary has Code Llama's FIM tokens: /infill answers
    /// with what a session generates greedily for <see cref="Infill.BuildPrompt"/>'s prompt.
    /// </summary>
    [Fact]
    public async Task InfillFillsTheMiddleLikeTheLibrary()
    {
        string dir = Directory.CreateTempSubdirectory("cria-infill-").FullName;
        try
        {
            string vocabPath = Path.Combine(dir, "vocab.gguf"), modelPath = Path.Combine(dir, "model.gguf");
            var tokens = new List<string> { "<unk>", "<s>", "</s>", "<PRE>", "<SUF>", "<MID>", "<EOT>", "▁" };
            var types = new List<int> { 2, 3, 3, 3, 3, 3, 3, 1 };
            foreach (char c in "abcdefghijklmnopqrstuvwxyz():=+ ") { tokens.Add(c.ToString()); types.Add(1); tokens.Add("▁" + c); types.Add(1); }
            var scores = tokens.Select((t, i) => -(float)i).ToArray();
            new Cria.Gguf.GgufWriter()
                .Set("general.architecture", "llama")
                .Set(Cria.Tokenizers.Vocabulary.KeyModel, "llama")
                .Set(Cria.Tokenizers.Vocabulary.KeyTokens, Cria.Gguf.GgufArray.Of(tokens.ToArray()))
                .Set(Cria.Tokenizers.Vocabulary.KeyScores, Cria.Gguf.GgufArray.Of(scores))
                .Set(Cria.Tokenizers.Vocabulary.KeyTokenType, Cria.Gguf.GgufArray.Of(types.ToArray()))
                .Write(vocabPath);
            using (var vocab = Cria.Gguf.GgufFile.Open(vocabPath))
                SyntheticModel.Write(new SyntheticModel.SyntheticModelSpec
                {
                    EmbeddingLength = 64, FeedForwardLength = 128, BlockCount = 2, HeadCount = 4, KvHeadCount = 2, ContextLength = 256, Seed = 5,
                }, modelPath, vocab);
            using var model = LlamaModel.Load(modelPath, new ModelOptions { Threads = 1 });
            Assert.True(Infill.IsSupported(model.Vocabulary));
            await using var server = await StartAsync(model, parallel: 1);
            using var client = NewClient(server);

            var (status, body) = await PostAsync(client, "/infill", new JsonObject
            {
                ["input_prefix"] = "def f(a):", ["input_suffix"] = "return b", ["n_predict"] = 12, ["temperature"] = 0,
            });
            Assert.Equal(200, status);
            using var session = new LlamaSession(model, new ContextOptions { ContextSize = ServerFixture.Context });
            var prompt = Infill.BuildPrompt(model.Tokenizer, "def f(a):", "return b");
            string expected = string.Concat(session.GenerateText(prompt, new GenerationOptions { MaxTokens = 12, Sampling = SamplerOptions.Greedy }));
            Assert.True((int)body["usage"]!["completion_tokens"]! > 0, "nothing was generated");
            Assert.Equal(expected, (string?)body["content"]);
            Assert.Equal(expected, (string?)body["choices"]![0]!["text"]);
            Assert.Equal(prompt.Length, (int)body["usage"]!["prompt_tokens"]!);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [SkippableFact]
    public async Task InfillNeedsFillInTheMiddleTokens()
    {
        using var model = LlamaModel.Load(RefData.Require(ServerFixture.ModelFile), new ModelOptions { Threads = 1 });
        await using var server = await StartAsync(model, parallel: 1);
        using var client = NewClient(server);
        var (status, body) = await PostAsync(client, "/infill", new JsonObject { ["input_prefix"] = "def f(", ["input_suffix"] = "):" });
        Assert.Equal(400, status);
        Assert.Equal("infill_not_supported", (string?)body["error"]!["code"]);
    }
}

/// <summary>The server's embeddings against llama.cpp's own mean-pooled embeddings of the same file.</summary>
[Collection(LlamaCppCollection.Name)]
public sealed class ServerEmbeddingDifferentialTests
{
    [SkippableFact]
    public async Task EmbeddingsMatchLlamaCppMeanPooling()
    {
        string path = RefData.Require(ServerFixture.ModelFile);
        LlamaCppOracle.SkipIfUnavailable();
        using var model = LlamaModel.Load(path, new ModelOptions { Threads = 1 });
        var server = new CriaServer(model, new ServerOptions { Host = "127.0.0.1", Port = 0, ContextSize = 256, KvCacheType = KvCacheType.F32 });
        await using (server)
        {
            await server.StartAsync();
            using var client = NewClient(server);
            foreach (string text in new[] { "Once upon a time", "The little dog was happy because it found a big red ball." })
            {
                var (status, body) = await PostAsync(client, "/v1/embeddings", new JsonObject { ["input"] = text });
                Assert.Equal(200, status);
                var ours = body["data"]![0]!["embedding"]!.AsArray().Select(x => (float)x!).ToArray();
                float[] theirs = LlamaCppOracle.MeanEmbedding(path, text);
                double norm = Math.Sqrt(theirs.Sum(x => (double)x * x));
                double maxDiff = ours.Zip(theirs, (a, b) => Math.Abs(a - b / norm)).Max();
                // F32 weights and cache: the forward passes agree to ~1e-6 relative (LlamaCppDifferentialTests).
                Assert.True(maxDiff < 1e-4, $"max |Δ| {maxDiff} for \"{text}\"");
            }
        }
    }
}
