using System.ClientModel;
using System.ClientModel.Primitives;
using System.Text.Json.Nodes;
using Cria.Server;
using OpenAI;
using OpenAI.Chat;
using Xunit;
using CriaMessage = Cria.Chat.ChatMessage;

namespace Cria.Tests.Server;

/// <summary>
/// The official OpenAI .NET SDK against a running server: chat (plain and streamed), stop sequences, usage and
/// errors, each compared with what <see cref="Cria.Generation.LlamaSession"/> generates. (SDK 2.x has no public
/// client for the legacy /v1/completions endpoint: its LegacyCompletionClient is internal.)
/// </summary>
[Collection("CriaServer")]
public sealed class OpenAiSdkTests : IClassFixture<ServerFixture>
{
    private const string SystemPrompt = "You tell stories.";
    private const string UserPrompt = "Tell me about a dog.";

    private readonly ServerFixture _f;

    public OpenAiSdkTests(ServerFixture fixture) => _f = fixture;

    /// <summary>The SDK's client options for a Cria server: its /v1 endpoint, no retries, a short timeout.</summary>
    internal static OpenAIClientOptions ClientOptions(CriaServer server) => new()
    {
        Endpoint = new Uri(server.Url + "/v1"),
        RetryPolicy = new ClientRetryPolicy(maxRetries: 0),
        NetworkTimeout = TimeSpan.FromSeconds(20),
    };

    internal static ChatClient NewChatClient(CriaServer server, string apiKey = "none") =>
        new("cria", new ApiKeyCredential(apiKey), ClientOptions(server));

    private static List<ChatMessage> Messages() => new() { new SystemChatMessage(SystemPrompt), new UserChatMessage(UserPrompt) };

    private (string Text, Cria.Generation.GenerationStats Stats, int PromptTokens) Expected(int maxTokens, params string[] stop) =>
        ChatReference.Greedy(_f.Model!, new[] { new CriaMessage("system", SystemPrompt), new CriaMessage("user", UserPrompt) }, maxTokens, ServerFixture.Context, stop);

    private static ChatFinishReason FinishOf(Cria.Generation.GenerationStats stats) =>
        stats.StopReason is Cria.Generation.StopReason.MaxTokens or Cria.Generation.StopReason.ContextFull ? ChatFinishReason.Length : ChatFinishReason.Stop;

    [SkippableFact]
    public async Task ChatCompletionEqualsGreedyGenerationWithUsage()
    {
        var (_, server, _) = _f.Require();
        var expected = Expected(40);
        ChatCompletion completion = await NewChatClient(server).CompleteChatAsync(Messages(), new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 40 });

        Assert.False(string.IsNullOrWhiteSpace(expected.Text));
        Assert.Equal(expected.Text, string.Concat(completion.Content.Select(p => p.Text)));
        Assert.Equal(ChatMessageRole.Assistant, completion.Role);
        Assert.Equal(FinishOf(expected.Stats), completion.FinishReason);
        Assert.StartsWith("chatcmpl-", completion.Id);
        Assert.Equal(server.ModelName, completion.Model);
        Assert.Equal(expected.PromptTokens, completion.Usage.InputTokenCount);
        Assert.Equal(expected.Stats.PromptTokens, completion.Usage.InputTokenCount);
        Assert.Equal(expected.Stats.GeneratedTokens, completion.Usage.OutputTokenCount);
        Assert.Equal(completion.Usage.InputTokenCount + completion.Usage.OutputTokenCount, completion.Usage.TotalTokenCount);
    }

    [SkippableFact]
    public async Task StreamedChatAddsUpToTheSameAnswer()
    {
        var (_, server, _) = _f.Require();
        var client = NewChatClient(server);
        ChatCompletion whole = await client.CompleteChatAsync(Messages(), new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 32 });

        var text = new System.Text.StringBuilder();
        var finishes = new List<ChatFinishReason>();
        ChatTokenUsage? usage = null;
        int updates = 0;
        await foreach (var update in client.CompleteChatStreamingAsync(Messages(), new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 32 }))
        {
            updates++;
            foreach (var part in update.ContentUpdate) text.Append(part.Text);
            if (update.FinishReason is { } finish) finishes.Add(finish);
            usage = update.Usage ?? usage;
        }

        Assert.True(updates >= 3, $"only {updates} updates");
        Assert.Equal(Expected(32).Text, text.ToString());
        Assert.Equal(string.Concat(whole.Content.Select(p => p.Text)), text.ToString());
        Assert.Equal(new[] { whole.FinishReason }, finishes);
        Assert.NotNull(usage);
        Assert.Equal(whole.Usage.InputTokenCount, usage.InputTokenCount);
        Assert.Equal(whole.Usage.OutputTokenCount, usage.OutputTokenCount);
    }

    [SkippableFact]
    public async Task StopSequencesCutTheAnswer()
    {
        var (_, server, _) = _f.Require();
        var (full, _, _) = Expected(48);
        var words = full.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(words.Length >= 6, $"the greedy answer is too short to cut: '{full}'");
        string stop = " " + words[4];
        int cut = full.IndexOf(stop, StringComparison.Ordinal);
        var client = NewChatClient(server);
        ChatCompletionOptions Options() => new() { Temperature = 0, MaxOutputTokenCount = 48, StopSequences = { stop, "\u0001never" } };

        ChatCompletion completion = await client.CompleteChatAsync(Messages(), Options());
        Assert.Equal(full[..cut], string.Concat(completion.Content.Select(p => p.Text)));
        Assert.Equal(ChatFinishReason.Stop, completion.FinishReason);
        Assert.Equal(Expected(48, stop).Stats.GeneratedTokens, completion.Usage.OutputTokenCount);

        var streamed = new System.Text.StringBuilder();
        ChatFinishReason? last = null;
        await foreach (var update in client.CompleteChatStreamingAsync(Messages(), Options()))
        {
            foreach (var part in update.ContentUpdate) streamed.Append(part.Text);
            last = update.FinishReason ?? last;
        }
        Assert.Equal(full[..cut], streamed.ToString());
        Assert.Equal(ChatFinishReason.Stop, last);
    }

    [SkippableFact]
    public async Task InvalidRequestsThrowClientResultExceptionWithTheServersError()
    {
        var (_, server, _) = _f.Require();
        var client = NewChatClient(server);
        var error = await Assert.ThrowsAsync<ClientResultException>(() =>
            client.CompleteChatAsync(Messages(), new ChatCompletionOptions { MaxOutputTokenCount = -1 }));
        Assert.Equal(400, error.Status);
        var body = JsonNode.Parse(error.GetRawResponse()!.Content.ToString())!;
        Assert.Equal("invalid_request_error", (string?)body["error"]!["type"]);
        Assert.Equal("max_completion_tokens", (string?)body["error"]!["param"]);
        Assert.Contains((string)body["error"]!["message"]!, error.Message);

        var tooHot = await Assert.ThrowsAsync<ClientResultException>(async () =>
        {
            await foreach (var _ in client.CompleteChatStreamingAsync(Messages(), new ChatCompletionOptions { Temperature = -1 })) { }
        });
        Assert.Equal(400, tooHot.Status);
    }

    [SkippableFact]
    public async Task AnApiKeyServerAnswers401ToAWrongKey()
    {
        var (model, _, _) = _f.Require();
        await using var server = new CriaServer(model, new ServerOptions { Host = "127.0.0.1", Port = 0, Parallel = 1, ContextSize = ServerFixture.Context, ApiKey = "sdk-key" });
        await server.StartAsync();

        var wrong = await Assert.ThrowsAsync<ClientResultException>(() =>
            NewChatClient(server, "not-the-key").CompleteChatAsync(Messages(), new ChatCompletionOptions { MaxOutputTokenCount = 4 }));
        Assert.Equal(401, wrong.Status);
        var body = JsonNode.Parse(wrong.GetRawResponse()!.Content.ToString())!;
        Assert.Equal("invalid_api_key", (string?)body["error"]!["code"]);

        ChatCompletion ok = await NewChatClient(server, "sdk-key").CompleteChatAsync(Messages(), new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 4 });
        Assert.Equal(Expected(4).Text, string.Concat(ok.Content.Select(p => p.Text)));
    }
}
