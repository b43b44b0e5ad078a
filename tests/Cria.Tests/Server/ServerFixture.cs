using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using Cria.Generation;
using Cria.Model;
using Cria.Sampling;
using Cria.Server;
using Xunit;

namespace Cria.Tests.Server;

/// <summary>stories260K loaded once, and a server with 4 slots on a free loopback port.</summary>
public sealed class ServerFixture : IAsyncLifetime
{
    public const string ModelFile = "stories260K/stories260K-f32.gguf";
    public const int Context = 512;

    public LlamaModel? Model { get; private set; }
    public CriaServer? Server { get; private set; }
    public HttpClient? Client { get; private set; }

    public async Task InitializeAsync()
    {
        string? path = RefData.File(ModelFile);
        if (path is null) return;
        Model = LlamaModel.Load(path, new ModelOptions { Threads = 1 });
        Server = new CriaServer(Model, new ServerOptions { Host = "127.0.0.1", Port = 0, Parallel = 4, QueueSize = 8, ContextSize = Context });
        await Server.StartAsync();
        Client = ServerTestUtil.NewClient(Server);
    }

    /// <summary>Skips the test when the model is missing.</summary>
    public (LlamaModel Model, CriaServer Server, HttpClient Client) Require()
    {
        RefData.Require(ModelFile);
        return (Model!, Server!, Client!);
    }

    /// <summary>What <see cref="LlamaSession"/> generates greedily (a fresh context) for the prompt.</summary>
    public (string Text, GenerationStats Stats) Greedy(string prompt, int maxTokens, params string[] stop)
    {
        using var session = new LlamaSession(Model!, new ContextOptions { ContextSize = Context });
        int[] tokens = Model!.Tokenizer.Encode(prompt, addSpecial: true, parseSpecial: true);
        var options = new GenerationOptions { MaxTokens = maxTokens, Sampling = SamplerOptions.Greedy, StopSequences = stop };
        string text = string.Concat(session.GenerateText(tokens, options));
        return (text, session.LastStats!);
    }

    public async Task DisposeAsync()
    {
        Client?.Dispose();
        if (Server != null) await Server.DisposeAsync();
        Model?.Dispose();
    }
}

internal static class ServerTestUtil
{
    public static HttpClient NewClient(CriaServer server, string? apiKey = null)
    {
        var client = new HttpClient { BaseAddress = new Uri(server.Url!), Timeout = TimeSpan.FromSeconds(20) };
        if (apiKey != null) client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
        return client;
    }

    public static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    public static StringContent Json(JsonNode node) => Json(node.ToJsonString());

    public static async Task<(int Status, JsonObject Body)> PostAsync(HttpClient client, string path, JsonNode body)
    {
        using var response = await client.PostAsync(path, Json(body));
        return ((int)response.StatusCode, await ReadObjectAsync(response));
    }

    public static async Task<JsonObject> ReadObjectAsync(HttpResponseMessage response)
    {
        string text = await response.Content.ReadAsStringAsync();
        return JsonNode.Parse(text) as JsonObject ?? throw new Xunit.Sdk.XunitException($"not a JSON object: {text}");
    }

    /// <summary>Reads an SSE stream: the JSON payloads of the data lines, and whether it ended with [DONE].</summary>
    public static async Task<(List<JsonObject> Chunks, bool Done)> ReadEventsAsync(HttpResponseMessage response, CancellationToken ct = default)
    {
        var chunks = new List<JsonObject>();
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(ct));
        bool done = false;
        while (await reader.ReadLineAsync(ct) is { } line)
        {
            if (line.Length == 0) continue;
            Assert.StartsWith("data: ", line);
            string data = line["data: ".Length..];
            Assert.False(done, "data after [DONE]");
            if (data == "[DONE]") { done = true; continue; }
            chunks.Add((JsonObject)JsonNode.Parse(data)!);
        }
        return (chunks, done);
    }

    public static void AssertError(JsonObject body, string? param = null, string? code = null)
    {
        var error = Assert.IsType<JsonObject>(body["error"]);
        Assert.False(string.IsNullOrEmpty((string?)error["message"]));
        Assert.False(string.IsNullOrEmpty((string?)error["type"]));
        Assert.True(error.ContainsKey("param") && error.ContainsKey("code"), "error needs param and code");
        if (param != null) Assert.Equal(param, (string?)error["param"]);
        if (code != null) Assert.Equal(code, (string?)error["code"]);
    }
}
