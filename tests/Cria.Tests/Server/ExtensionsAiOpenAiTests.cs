using Microsoft.Extensions.AI;
using Xunit;
using CriaMessage = Cria.Chat.ChatMessage;

namespace Cria.Tests.Server;

/// <summary>
/// Microsoft.Extensions.AI over the OpenAI SDK (<c>ChatClient.AsIChatClient()</c>) against a running server:
/// the <see cref="ChatOptions"/> (temperature, output limit, stop sequences) reach it, and text, finish reason and
/// usage come back as <see cref="Cria.Generation.LlamaSession"/> computes them.
/// </summary>
[Collection("CriaServer")]
public sealed class ExtensionsAiOpenAiTests : IClassFixture<ServerFixture>
{
    private const string SystemPrompt = "You are a storyteller.";
    private const string UserPrompt = "Tell me about a bird.";

    private readonly ServerFixture _f;

    public ExtensionsAiOpenAiTests(ServerFixture fixture) => _f = fixture;

    private static List<ChatMessage> Messages() => new() { new(ChatRole.System, SystemPrompt), new(ChatRole.User, UserPrompt) };

    private (string Text, Cria.Generation.GenerationStats Stats, int PromptTokens) Expected(int maxTokens, params string[] stop) =>
        ChatReference.Greedy(_f.Model!, new[] { new CriaMessage("system", SystemPrompt), new CriaMessage("user", UserPrompt) }, maxTokens, ServerFixture.Context, stop);

    [SkippableFact]
    public async Task GetResponseEqualsGreedyGenerationWithUsage()
    {
        var (_, server, _) = _f.Require();
        using IChatClient client = OpenAiSdkTests.NewChatClient(server).AsIChatClient();
        var expected = Expected(36);

        ChatResponse response = await client.GetResponseAsync(Messages(), new ChatOptions { Temperature = 0, MaxOutputTokens = 36 });

        Assert.False(string.IsNullOrWhiteSpace(expected.Text));
        Assert.Equal(expected.Text, response.Text);
        Assert.Equal(ChatRole.Assistant, Assert.Single(response.Messages).Role);
        var finish = expected.Stats.StopReason == Cria.Generation.StopReason.MaxTokens ? ChatFinishReason.Length : ChatFinishReason.Stop;
        Assert.Equal(finish, response.FinishReason);
        Assert.NotNull(response.Usage);
        Assert.Equal(expected.PromptTokens, response.Usage.InputTokenCount);
        Assert.Equal(expected.Stats.GeneratedTokens, response.Usage.OutputTokenCount);
        Assert.Equal(expected.PromptTokens + expected.Stats.GeneratedTokens, response.Usage.TotalTokenCount);
    }

    [SkippableFact]
    public async Task StreamingResponseHonoursStopSequences()
    {
        var (_, server, _) = _f.Require();
        using IChatClient client = OpenAiSdkTests.NewChatClient(server).AsIChatClient();
        var (full, _, _) = Expected(48);
        var words = full.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(words.Length >= 6, $"the greedy answer is too short to cut: '{full}'");
        string stop = " " + words[4];
        var expected = Expected(48, stop);
        Assert.Equal(full[..full.IndexOf(stop, StringComparison.Ordinal)], expected.Text);

        var updates = new List<ChatResponseUpdate>();
        await foreach (var update in client.GetStreamingResponseAsync(Messages(), new ChatOptions { Temperature = 0, MaxOutputTokens = 48, StopSequences = new[] { stop } }))
            updates.Add(update);
        ChatResponse response = updates.ToChatResponse();

        Assert.True(updates.Count(u => u.Text.Length > 0) >= 2, "the answer should arrive in several pieces");
        Assert.Equal(expected.Text, response.Text);
        Assert.Equal(ChatFinishReason.Stop, response.FinishReason);
        Assert.NotNull(response.Usage);
        Assert.Equal(expected.PromptTokens, response.Usage.InputTokenCount);
        Assert.Equal(expected.Stats.GeneratedTokens, response.Usage.OutputTokenCount);
    }
}
