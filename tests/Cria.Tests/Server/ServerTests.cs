using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Cria.Server;
using Xunit;
using static Cria.Tests.Server.ServerTestUtil;

namespace Cria.Tests.Server;

[Collection("CriaServer")]
public sealed class ServerTests : IClassFixture<ServerFixture>
{
    private readonly ServerFixture _f;

    public ServerTests(ServerFixture fixture) => _f = fixture;

    [SkippableFact]
    public async Task ModelsListsTheLoadedModel()
    {
        var (_, server, client) = _f.Require();
        using var response = await client.GetAsync("/v1/models");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var body = await ReadObjectAsync(response);
        Assert.Equal("list", (string?)body["object"]);
        var model = Assert.IsType<JsonObject>(Assert.Single(body["data"]!.AsArray()));
        Assert.Equal("stories260K-f32.gguf", (string?)model["id"]);
        Assert.Equal(server.ModelName, (string?)model["id"]);
        Assert.Equal("model", (string?)model["object"]);
        Assert.Equal(ServerFixture.Context, (int)model["meta"]!["n_ctx"]!);
    }

    [SkippableFact]
    public async Task HealthIsOk()
    {
        var (_, _, client) = _f.Require();
        using var response = await client.GetAsync("/health");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("ok", (string?)(await ReadObjectAsync(response))["status"]);
    }

    [SkippableFact]
    public async Task GreedyCompletionEqualsLlamaSession()
    {
        var (_, _, client) = _f.Require();
        const string prompt = "Once upon a time";
        var (expected, stats) = _f.Greedy(prompt, 40);
        var (status, body) = await PostAsync(client, "/v1/completions", new JsonObject
        {
            ["model"] = "whatever",
            ["prompt"] = prompt,
            ["max_tokens"] = 40,
            ["temperature"] = 0,
        });
        Assert.Equal(200, status);
        Assert.Equal("text_completion", (string?)body["object"]);
        Assert.StartsWith("cmpl-", (string?)body["id"]);
        var choice = body["choices"]![0]!;
        Assert.Equal(expected, (string?)choice["text"]);
        Assert.Equal(stats.StopReason == Cria.Generation.StopReason.MaxTokens ? "length" : "stop", (string?)choice["finish_reason"]);
        var usage = body["usage"]!;
        Assert.Equal(stats.PromptTokens, (int)usage["prompt_tokens"]!);
        Assert.Equal(stats.GeneratedTokens, (int)usage["completion_tokens"]!);
        Assert.Equal(stats.PromptTokens + stats.GeneratedTokens, (int)usage["total_tokens"]!);
    }

    [SkippableFact]
    public async Task StreamingChunksConcatenateToTheSameText()
    {
        var (_, _, client) = _f.Require();
        const string prompt = "The little dog";
        var (expected, stats) = _f.Greedy(prompt, 30);
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = Json(new JsonObject { ["prompt"] = prompt, ["max_tokens"] = 30, ["temperature"] = 0.0, ["stream"] = true }),
        };
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        var (chunks, done) = await ReadEventsAsync(response);
        Assert.True(done, "the stream must end with data: [DONE]");
        Assert.True(chunks.Count >= 2);
        string text = string.Concat(chunks.Select(c => (string?)c["choices"]![0]!["text"]));
        Assert.Equal(expected, text);
        Assert.All(chunks.SkipLast(1), c => Assert.Null(c["choices"]![0]!["finish_reason"]));
        var last = chunks[^1];
        Assert.Equal(stats.StopReason == Cria.Generation.StopReason.MaxTokens ? "length" : "stop", (string?)last["choices"]![0]!["finish_reason"]);
        Assert.Equal(stats.GeneratedTokens, (int)last["usage"]!["completion_tokens"]!);
        Assert.Single(chunks.Select(c => (string?)c["id"]).Distinct());
    }

    [SkippableFact]
    public async Task ChatCompletionReturnsAnAssistantMessageAndUsage()
    {
        var (_, _, client) = _f.Require();
        var request = new JsonObject
        {
            ["messages"] = new JsonArray(
                new JsonObject { ["role"] = "system", ["content"] = "You tell stories." },
                new JsonObject { ["role"] = "user", ["content"] = new JsonArray(new JsonObject { ["type"] = "text", ["text"] = "Tell me about a cat." }) }),
            ["max_tokens"] = 24,
            ["temperature"] = 0,
        };
        var (status, body) = await PostAsync(client, "/v1/chat/completions", request);
        Assert.Equal(200, status);
        Assert.Equal("chat.completion", (string?)body["object"]);
        var message = body["choices"]![0]!["message"]!;
        Assert.Equal("assistant", (string?)message["role"]);
        string content = (string?)message["content"] ?? "";
        var usage = body["usage"]!;
        Assert.True((int)usage["prompt_tokens"]! > 10);
        int completion = (int)usage["completion_tokens"]!;
        Assert.InRange(completion, 1, 24);
        Assert.Equal((int)usage["prompt_tokens"]! + completion, (int)usage["total_tokens"]!);

        // Streaming: a role chunk, content deltas that add up to the same answer, a finish chunk, [DONE].
        request["stream"] = true;
        using var response = await client.PostAsync("/v1/chat/completions", Json(request));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var (chunks, done) = await ReadEventsAsync(response);
        Assert.True(done);
        Assert.All(chunks, c => Assert.Equal("chat.completion.chunk", (string?)c["object"]));
        Assert.Equal("assistant", (string?)chunks[0]["choices"]![0]!["delta"]!["role"]);
        string streamed = string.Concat(chunks.Select(c => (string?)c["choices"]![0]!["delta"]!["content"]));
        Assert.Equal(content, streamed);
        Assert.NotNull((string?)chunks[^1]["choices"]![0]!["finish_reason"]);
        Assert.Equal(completion, (int)chunks[^1]["usage"]!["completion_tokens"]!);
    }

    [SkippableFact]
    public async Task StopSequenceEndsTheText()
    {
        var (_, _, client) = _f.Require();
        const string prompt = "Once upon a time, there was a";
        var (full, _) = _f.Greedy(prompt, 48);
        // A stop string taken from the middle of the greedy text: the answer is what precedes it.
        var words = full.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(words.Length >= 6, $"the greedy text is too short to cut: '{full}'");
        string stop = " " + words[4];
        int cut = full.IndexOf(stop, StringComparison.Ordinal);
        Assert.True(cut >= 0);
        foreach (bool stream in new[] { false, true })
        {
            var request = new JsonObject { ["prompt"] = prompt, ["max_tokens"] = 48, ["temperature"] = 0, ["stop"] = new JsonArray(stop, "\u0001never"), ["stream"] = stream };
            string text;
            string? finish;
            using var response = await client.PostAsync("/v1/completions", Json(request));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            if (stream)
            {
                var (chunks, done) = await ReadEventsAsync(response);
                Assert.True(done);
                text = string.Concat(chunks.Select(c => (string?)c["choices"]![0]!["text"]));
                finish = (string?)chunks[^1]["choices"]![0]!["finish_reason"];
            }
            else
            {
                var body = await ReadObjectAsync(response);
                text = (string?)body["choices"]![0]!["text"] ?? "";
                finish = (string?)body["choices"]![0]!["finish_reason"];
            }
            Assert.Equal(full[..cut], text);
            Assert.Equal("stop", finish);
        }
    }

    [SkippableFact]
    public async Task InvalidRequestsAre400WithAnOpenAiError()
    {
        var (_, _, client) = _f.Require();
        async Task Expect400(string path, string json, string? param = null, string? code = null)
        {
            using var response = await client.PostAsync(path, Json(json));
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
            var body = await ReadObjectAsync(response);
            AssertError(body, param, code);
            Assert.Equal("invalid_request_error", (string?)body["error"]!["type"]);
        }
        await Expect400("/v1/completions", "{\"prompt\": \"x\", ", code: "invalid_json");
        await Expect400("/v1/completions", "[1, 2]", code: "invalid_json");
        await Expect400("/v1/completions", "", code: null);
        await Expect400("/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": -5}", "max_tokens");
        await Expect400("/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": \"ten\"}", "max_tokens", "invalid_type");
        await Expect400("/v1/completions", "{\"prompt\": \"x\", \"temperature\": \"hot\"}", "temperature", "invalid_type");
        await Expect400("/v1/completions", "{\"prompt\": \"x\", \"top_p\": 0}", "top_p");
        await Expect400("/v1/completions", "{\"prompt\": \"x\", \"stream\": \"yes\"}", "stream");
        await Expect400("/v1/completions", "{\"prompt\": \"x\", \"stop\": 3}", "stop");
        await Expect400("/v1/completions", "{\"prompt\": 42}", "prompt");
        await Expect400("/v1/completions", "{\"max_tokens\": 3}", "prompt");
        await Expect400("/v1/completions", "{\"prompt\": [1, 999999]}", "prompt");
        string longPrompt = string.Concat(Enumerable.Repeat("Once upon a time ", 300));
        await Expect400("/v1/completions", new JsonObject { ["prompt"] = longPrompt }.ToJsonString(), "prompt", "context_length_exceeded");
        await Expect400("/v1/chat/completions", "{\"messages\": []}", "messages");
        await Expect400("/v1/chat/completions", "{\"messages\": [{\"content\": \"hi\"}]}", "messages[0].role");
        await Expect400("/v1/chat/completions", new JsonObject
        {
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = longPrompt }),
        }.ToJsonString(), "messages", "context_length_exceeded");
        await Expect400("/tokenize", "{\"content\": 5}", "content");
        await Expect400("/detokenize", "{\"tokens\": [\"a\"]}", "tokens");
    }

    [SkippableFact]
    public async Task UnknownRoutesAre404AndWrongMethodsAreErrors()
    {
        var (_, _, client) = _f.Require();
        using (var response = await client.GetAsync("/v1/nothing-here"))
        {
            Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
            AssertError(await ReadObjectAsync(response));
        }
        using (var response = await client.GetAsync("/v1/completions"))
        {
            Assert.True(response.StatusCode is HttpStatusCode.NotFound or HttpStatusCode.MethodNotAllowed, response.StatusCode.ToString());
            AssertError(await ReadObjectAsync(response));
        }
    }

    [SkippableFact]
    public async Task BodiesOverTheLimitAre413()
    {
        var (_, _, client) = _f.Require();
        string big = new JsonObject { ["prompt"] = new string('a', (1 << 20) + 100) }.ToJsonString();
        using var response = await client.PostAsync("/v1/completions", Json(big));
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        AssertError(await ReadObjectAsync(response), code: "request_too_large");
    }

    [SkippableFact]
    public async Task TokenizeDetokenizeRoundTrip()
    {
        var (model, _, client) = _f.Require();
        const string text = "Once upon a time, a girl named Lily";
        var (status, body) = await PostAsync(client, "/tokenize", new JsonObject { ["content"] = text });
        Assert.Equal(200, status);
        int[] tokens = body["tokens"]!.AsArray().Select(t => (int)t!).ToArray();
        Assert.Equal(model.Tokenizer.Encode(text, addSpecial: false, parseSpecial: true), tokens);

        var (status2, body2) = await PostAsync(client, "/tokenize", new JsonObject { ["content"] = text, ["add_special"] = true });
        Assert.Equal(200, status2);
        Assert.Equal(model.Vocabulary.Bos, (int)body2["tokens"]![0]!);

        var (status3, body3) = await PostAsync(client, "/detokenize", new JsonObject { ["tokens"] = new JsonArray(tokens.Select(t => (JsonNode)t).ToArray()) });
        Assert.Equal(200, status3);
        Assert.Equal(text, (string?)body3["content"]);

        var (_, body4) = await PostAsync(client, "/tokenize", new JsonObject { ["content"] = "Once", ["with_pieces"] = true });
        var first = body4["tokens"]![0]!;
        Assert.Equal(tokens[0], (int)first["id"]!);
        Assert.Contains("Once", (string?)first["piece"]);
    }

    [SkippableFact]
    public async Task MetricsExposeTheCounters()
    {
        var (_, _, client) = _f.Require();
        var (status, _) = await PostAsync(client, "/v1/completions", new JsonObject { ["prompt"] = "A bird", ["max_tokens"] = 5, ["temperature"] = 0 });
        Assert.Equal(200, status);
        using var response = await client.GetAsync("/metrics");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/plain", response.Content.Headers.ContentType?.MediaType);
        string text = await response.Content.ReadAsStringAsync();
        long Value(string name)
        {
            var line = text.Split('\n').Single(l => l.StartsWith(name + " ", StringComparison.Ordinal));
            return long.Parse(line[(name.Length + 1)..], System.Globalization.CultureInfo.InvariantCulture);
        }
        Assert.Contains("# TYPE cria_requests_total counter", text);
        Assert.True(Value("cria_requests_total") >= 2);
        Assert.True(Value("cria_tokens_generated_total") >= 1);
        Assert.True(Value("cria_completions_total") >= 1);
        Assert.Equal(0, Value("cria_queue_depth"));
        Assert.InRange(Value("cria_slots_active"), 0, 4);
        Assert.Equal(4, Value("cria_slots_total"));
    }

    [SkippableFact]
    public async Task FourConcurrentStreamsAllCompleteCorrectly()
    {
        var (_, _, client) = _f.Require();
        string[] prompts = { "Lily and Ben", "One day, a cat", "The sun was", "Tom had a red" };
        var expected = prompts.Select(p => _f.Greedy(p, 24).Text).ToArray();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var results = await Task.WhenAll(prompts.Select(async p =>
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
            {
                Content = Json(new JsonObject { ["prompt"] = p, ["max_tokens"] = 24, ["temperature"] = 0, ["stream"] = true }),
            };
            using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var (chunks, done) = await ReadEventsAsync(response, timeout.Token);
            Assert.True(done);
            return string.Concat(chunks.Select(c => (string?)c["choices"]![0]!["text"]));
        }));
        Assert.Equal(expected, results);
    }
}
