using System.Diagnostics;
using System.Text.Json.Nodes;
using Cria.Model;
using Cria.Server;
using Xunit;
using Xunit.Abstractions;
using static Cria.Tests.Server.ServerTestUtil;

namespace Cria.Tests.Server;

/// <summary>
/// 8 concurrent streaming clients × 25 requests each on loopback: no errors, every stream complete,
/// memory stable. Prints the aggregate token rate against one client's (recorded in docs/BENCHMARKS.md);
/// speed itself is not asserted here.
/// </summary>
[Collection(Name)]
public sealed class ServerLoadTests
{
    /// <summary>
    /// Its own collection, run with nothing else in parallel: the heap check measures the whole
    /// process, which other tests running at the same time would grow.
    /// </summary>
    public const string Name = "ServerLoad";

    private const int Clients = 8, RequestsPerClient = 25, MaxTokens = 48;
    // Responses whose chunked framing did not parse, with the bytes their connection read (see RunClientsAsync).
    private readonly System.Collections.Concurrent.ConcurrentQueue<string> _brokenStreams = new();
    private static readonly string[] Prompts = { "Once upon a time", "The little dog", "Lily wanted to", "One day, a big", "Tom and Sue", "The sun was" };
    private readonly ITestOutputHelper _out;

    public ServerLoadTests(ITestOutputHelper output) => _out = output;

    [SkippableFact]
    public async Task EightStreamingClientsTimesTwentyFiveRequestsAllComplete()
    {
        using var model = LlamaModel.Load(RefData.Require(ServerFixture.ModelFile), new ModelOptions { Threads = 2 });
        await using var server = new CriaServer(model, new ServerOptions
        {
            Host = "127.0.0.1", Port = 0, Parallel = Clients, QueueSize = Clients, ContextSize = 256,
        });
        await server.StartAsync();

        // One client alone first (the baseline), then eight at once.
        var (singleTokens, singleTime) = await RunClientsAsync(server, clients: 1, requests: RequestsPerClient);
        long heapAfterWarmup = HeapBytes();
        var (tokens, time) = await RunClientsAsync(server, Clients, RequestsPerClient);
        long heapAtEnd = HeapBytes();

        double single = singleTokens / singleTime.TotalSeconds, aggregate = tokens / time.TotalSeconds;
        _out.WriteLine($"1 client: {singleTokens} tokens in {singleTime.TotalSeconds:F2} s = {single:F0} tok/s");
        _out.WriteLine($"{Clients} clients: {tokens} tokens in {time.TotalSeconds:F2} s = {aggregate:F0} tok/s aggregate ({aggregate / single:F2}x)");
        _out.WriteLine($"mean decode batch {server.Metrics.DecodedTokensTotal / (double)server.Metrics.DecodeStepsTotal:F2}, largest {server.Metrics.LargestBatch}; managed heap {heapAfterWarmup / 1e6:F1} -> {heapAtEnd / 1e6:F1} MB");

        Assert.True(_brokenStreams.IsEmpty, $"{_brokenStreams.Count} responses arrived with broken chunked framing:\n{string.Join("\n", _brokenStreams)}");
        Assert.Equal(0, server.Metrics.ErrorsTotal);
        // Requests end at different lengths and the clients re-issue at their own pace, so whether all
        // eight ever generate in the same pass depends on timing (on a busy machine they may not);
        // exact batching is asserted deterministically in the batching tests. Here: batching happened.
        Assert.InRange(server.Metrics.LargestBatch, 2, Clients);
        Assert.Equal(0, server.Pool.Active);
        // Memory is stable: 200 requests later the heap has not grown by more than a few MB.
        Assert.True(heapAtEnd - heapAfterWarmup < 16_000_000, $"managed heap grew from {heapAfterWarmup} to {heapAtEnd} bytes");
    }

    /// <summary>The collection that keeps other tests from running beside the load test.</summary>
    [CollectionDefinition(Name, DisableParallelization = true)]
    public sealed class Definition;

    private static long HeapBytes()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        return GC.GetTotalMemory(forceFullCollection: true);
    }

    /// <summary>Runs the clients to completion, checking every stream; returns generated tokens and wall time.</summary>
    private async Task<(long Tokens, TimeSpan Time)> RunClientsAsync(CriaServer server, int clients, int requests)
    {
        long tokens = 0;
        var sw = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, clients).Select(async c =>
        {
            var wire = new WireRecorder();
            using var client = new HttpClient(wire.CreateHandler()) { BaseAddress = new Uri(server.Url!), Timeout = TimeSpan.FromSeconds(60) };
            for (int r = 0; r < requests; r++)
            {
                var body = new JsonObject
                {
                    ["prompt"] = Prompts[(c + r) % Prompts.Length],
                    ["max_tokens"] = MaxTokens,
                    ["temperature"] = 0.9,
                    ["seed"] = c * 1000 + r,
                    ["stream"] = true,
                };
                using var response = await client.PostAsync("/v1/completions", Json(body));
                string sse;
                try { sse = await response.Content.ReadAsStringAsync(); }
                catch (HttpRequestException e) when (e.InnerException is HttpIOException { HttpRequestError: HttpRequestError.InvalidResponse })
                {
                    // Seen in about one full-suite run in three on 2026-11-27 (the client read event bytes where a
                    // chunk header belongs) with HttpClient's own connections, not since the connections record
                    // what they read (0 in 8 full-suite runs). Should it come back, the failure shows the bytes.
                    _brokenStreams.Enqueue($"client {c}, request {r}: {e.InnerException.Message}; the bytes on the wire:\n{wire.Tails(4000)}");
                    continue;
                }
                string where = $"client {c}, request {r}";
                Assert.True(200 == (int)response.StatusCode, $"{where}: HTTP {(int)response.StatusCode}: {sse}");
                var events = sse.Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
                Assert.True(events.Length >= 2 && events[^1].Trim() == "data: [DONE]", $"{where}: stream does not end with [DONE]: {sse}");
                var last = JsonNode.Parse(events[^2]["data: ".Length..])!;
                string? finish = (string?)last["choices"]![0]!["finish_reason"];
                Assert.True(finish is "stop" or "length", $"{where}: finish_reason {finish}");
                int generated = (int)last["usage"]!["completion_tokens"]!;
                // Sampling (temperature 0.9) sees logits that depend on which requests share a decode
                // pass (batched products round differently), so a sequence may draw end-of-text at once.
                Assert.True(generated >= (finish == "stop" ? 0 : 1) && generated <= MaxTokens, $"{where}: {generated} tokens, finish {finish}");
                if (finish == "length") Assert.True(MaxTokens == generated, $"{where}: length stop after {generated} tokens");
                Interlocked.Add(ref tokens, generated);
            }
        }));
        return (tokens, sw.Elapsed);
    }
}
