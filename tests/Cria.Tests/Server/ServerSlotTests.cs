using System.Diagnostics;
using System.Net;
using System.Text.Json.Nodes;
using Cria.Model;
using Cria.Server;
using Xunit;
using static Cria.Tests.Server.ServerTestUtil;

namespace Cria.Tests.Server;

/// <summary>Servers with their own settings: API key, one slot, no queue; and the slot pool itself.</summary>
[Collection("CriaServer")]
public sealed class ServerSlotTests
{
    private static LlamaModel LoadModel() =>
        LlamaModel.Load(RefData.Require(ServerFixture.ModelFile), new ModelOptions { Threads = 1 });

    private static async Task<CriaServer> StartAsync(LlamaModel model, ServerOptions options)
    {
        var server = new CriaServer(model, options with { Host = "127.0.0.1", Port = 0, ContextSize = ServerFixture.Context });
        await server.StartAsync();
        Assert.StartsWith("http://127.0.0.1:", server.Url);
        return server;
    }

    /// <summary>
    /// Once a client has read a whole response, streamed or not, its slot is free again and the completion is counted:
    /// the server releases the slot before it sends the last bytes, not after.
    /// </summary>
    [SkippableFact]
    public async Task SlotIsFreeAndCompletionCounted_WhenTheClientHasTheWholeResponse()
    {
        using var model = LoadModel();
        await using var server = await StartAsync(model, new ServerOptions { Parallel = 2 });
        using var client = NewClient(server);
        for (int i = 0; i < 40; i++)
        {
            bool stream = i % 2 == 1;
            var request = new JsonObject { ["prompt"] = "Once upon a time", ["max_tokens"] = 2, ["temperature"] = 0, ["stream"] = stream };
            using var response = await client.PostAsync("/v1/completions", Json(request));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            string body = await response.Content.ReadAsStringAsync();
            Assert.Contains(stream ? "[DONE]" : "completion_tokens", body);
            Assert.True(server.Pool.Active == 0, $"request {i} ({(stream ? "streamed" : "whole")}): {server.Pool.Active} slots still active after the response");
            Assert.Equal(i + 1, server.Metrics.CompletionsTotal);
        }
    }

    [SkippableFact]
    public async Task ApiKeyIsRequiredExceptForHealth()
    {
        using var model = LoadModel();
        await using var server = await StartAsync(model, new ServerOptions { ApiKey = "sekrit" });
        using var anonymous = NewClient(server);
        using var wrong = NewClient(server, "nope");
        using var right = NewClient(server, "sekrit");
        var completion = new JsonObject { ["prompt"] = "Hi", ["max_tokens"] = 2 };

        foreach (var client in new[] { anonymous, wrong })
        {
            foreach (var response in new[] { await client.GetAsync("/v1/models"), await client.PostAsync("/v1/completions", Json(completion)) })
            {
                using (response)
                {
                    Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
                    var body = await ReadObjectAsync(response);
                    AssertError(body, code: "invalid_api_key");
                    Assert.Equal("authentication_error", (string?)body["error"]!["type"]);
                }
            }
        }
        using (var response = await anonymous.GetAsync("/health")) Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using (var response = await right.GetAsync("/v1/models")) Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using (var response = await right.PostAsync("/v1/completions", Json(completion))) Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [SkippableFact]
    public async Task FullQueueGives503()
    {
        using var model = LoadModel();
        await using var server = await StartAsync(model, new ServerOptions { Parallel = 1, QueueSize = 0 });
        using var client = NewClient(server);
        var request = new JsonObject { ["prompt"] = "Hi", ["max_tokens"] = 2 };
        // Hold the only slot so the request finds neither a slot nor room in the queue.
        var slot = await server.Pool.AcquireAsync(new[] { 1 }, CancellationToken.None);
        try
        {
            using var response = await client.PostAsync("/v1/completions", Json(request));
            Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
            AssertError(await ReadObjectAsync(response), code: "queue_full");
        }
        finally
        {
            server.Pool.Release(slot);
        }
        using (var response = await client.PostAsync("/v1/completions", Json(request)))
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(1, server.Metrics.RejectedTotal);
    }

    [SkippableFact]
    public async Task CancelledRequestsFreeTheirSlotAndQueuePlace()
    {
        using var model = LoadModel();
        await using var server = await StartAsync(model, new ServerOptions { Parallel = 1, QueueSize = 2 });
        using var client = NewClient(server);
        var streaming = new JsonObject { ["prompt"] = "Once upon a time", ["max_tokens"] = 400, ["temperature"] = 1.0, ["seed"] = 7, ["stream"] = true };

        // 1. A request waiting in the queue, cancelled by its client, leaves the queue.
        var held = await server.Pool.AcquireAsync(new[] { 1 }, CancellationToken.None);
        using (var cts = new CancellationTokenSource())
        {
            var waiting = client.PostAsync("/v1/completions", Json(streaming), cts.Token);
            await WaitUntil(() => server.Pool.QueueDepth == 1);
            cts.Cancel();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting);
            await WaitUntil(() => server.Pool.QueueDepth == 0);
        }
        server.Pool.Release(held);
        Assert.Equal(0, server.Pool.Active);

        // 2. A streaming request abandoned after its first chunk stops generating and frees the slot.
        using (var cts = new CancellationTokenSource())
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = Json(streaming) };
            var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cts.Token);
            var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cts.Token));
            string? first = await reader.ReadLineAsync(cts.Token);
            Assert.StartsWith("data: ", first);
            cts.Cancel();
            response.Dispose();
            reader.Dispose();
        }
        await WaitUntil(() => server.Pool.Active == 0);

        // 3. The next request gets the slot at once.
        var sw = Stopwatch.StartNew();
        var (status, body) = await PostAsync(client, "/v1/completions", new JsonObject { ["prompt"] = "Once upon a time", ["max_tokens"] = 8, ["temperature"] = 0 });
        Assert.Equal(200, status);
        Assert.Equal(8, (int)body["usage"]!["completion_tokens"]!);
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(5), $"took {sw.Elapsed}");
        Assert.Equal(0, server.Pool.Active);
    }

    [SkippableFact]
    public async Task PoolPicksTheSlotWithTheLongestCachedPrefixAndQueuesFifo()
    {
        using var model = LoadModel();
        using var pool = new SlotPool(model, 2, new ContextOptions { ContextSize = 64 }, queueLimit: 1);
        int[] a = model.Tokenizer.Encode("Once upon a time"), b = model.Tokenizer.Encode("The dog ran");
        var options = new Cria.Generation.GenerationOptions { MaxTokens = 2, Sampling = Cria.Sampling.SamplerOptions.Greedy };

        // Fill slot caches: one with prompt a, the other with prompt b.
        var s1 = await pool.AcquireAsync(a, CancellationToken.None);
        var s2 = await pool.AcquireAsync(b, CancellationToken.None);
        Assert.NotSame(s1, s2);
        _ = s1.Session.GenerateTokens(a, options).ToList();
        _ = s2.Session.GenerateTokens(b, options).ToList();

        // Both busy: one request may wait, the next is refused.
        var waiter = pool.AcquireAsync(b, CancellationToken.None);
        Assert.False(waiter.IsCompleted);
        Assert.Equal(1, pool.QueueDepth);
        await Assert.ThrowsAsync<QueueFullException>(() => pool.AcquireAsync(a, CancellationToken.None));
        pool.Release(s1);
        Assert.Same(s1, await waiter.WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.Equal(0, pool.QueueDepth);
        pool.Release(s1);
        pool.Release(s2);
        Assert.Equal(0, pool.Active);

        // Free slots: the prompt extending b's cached tokens goes to b's slot, and a's to a's.
        int[] bLonger = model.Tokenizer.Encode("The dog ran and ran");
        var forB = await pool.AcquireAsync(bLonger, CancellationToken.None);
        Assert.Same(s2, forB);
        var forA = await pool.AcquireAsync(a, CancellationToken.None);
        Assert.Same(s1, forA);
        pool.Release(forA);
        pool.Release(forB);

        // A cancelled waiter leaves the queue without taking a slot.
        var x = await pool.AcquireAsync(a, CancellationToken.None);
        var y = await pool.AcquireAsync(a, CancellationToken.None);
        using var cts = new CancellationTokenSource();
        var cancelled = pool.AcquireAsync(a, cts.Token);
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled);
        Assert.Equal(0, pool.QueueDepth);
        pool.Release(x);
        pool.Release(y);
        Assert.Equal(0, pool.Active);
    }

    private static async Task WaitUntil(Func<bool> condition)
    {
        var sw = Stopwatch.StartNew();
        while (!condition())
        {
            if (sw.Elapsed > TimeSpan.FromSeconds(5)) throw new TimeoutException("condition not reached within 5 s");
            await Task.Delay(10);
        }
    }
}
