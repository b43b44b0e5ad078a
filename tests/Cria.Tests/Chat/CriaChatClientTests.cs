using Cria.Chat;
using Cria.Model;
using Microsoft.Extensions.AI;
using Xunit;
using AiChatMessage = Microsoft.Extensions.AI.ChatMessage;

namespace Cria.Tests.Chat;

public class CriaChatClientTests
{
    private static LlamaModel Stories() =>
        LlamaModel.Load(RefData.Require("stories260K/stories260K-f32.gguf"), new ModelOptions { Threads = 2 });

    private static List<AiChatMessage> Conversation() => new()
    {
        new(ChatRole.System, "You tell stories."),
        new(ChatRole.User, "Once upon a time"),
    };

    [SkippableFact]
    public async Task StreamingAndNonStreamingGiveTheSameTextWithAFixedSeed()
    {
        using var model = Stories();
        using var client = new CriaChatClient(model, new ContextOptions { ContextSize = 256 });
        var options = new ChatOptions { Temperature = 0.9f, TopK = 20, TopP = 0.9f, Seed = 1234, MaxOutputTokens = 24 };

        var response = await client.GetResponseAsync(Conversation(), options);
        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in client.GetStreamingResponseAsync(Conversation(), options)) updates.Add(u);

        Assert.NotEmpty(response.Text);
        Assert.Equal(response.Text, string.Concat(updates.Select(u => u.Text)));
        Assert.True(updates.Count > 2, "the answer should stream in pieces");
        Assert.Equal(ChatRole.Assistant, response.Messages.Single().Role);
        Assert.Equal(response.Text, updates.ToChatResponse().Text);
        Assert.Equal(client.LastStats!.PromptTokens - 1, client.LastStats.PromptTokens - client.LastStats.PromptTokensEvaluated);
    }

    [SkippableFact]
    public async Task MaxOutputTokensGivesLengthAndUsage()
    {
        using var model = Stories();
        using var client = new CriaChatClient(model, new ContextOptions { ContextSize = 256 });
        var response = await client.GetResponseAsync(Conversation(), new ChatOptions { Temperature = 0, MaxOutputTokens = 5 });
        Assert.Equal(ChatFinishReason.Length, response.FinishReason);
        Assert.NotNull(response.Usage);
        Assert.Equal(5, response.Usage!.OutputTokenCount);
        var formatter = ChatFormatter.FromModel(model);
        int promptTokens = formatter.Format(CriaChatClient.ToTemplateMessages(Conversation())).Length;
        Assert.Equal(promptTokens, response.Usage.InputTokenCount);
        Assert.Equal(promptTokens + 5, response.Usage.TotalTokenCount);
        Assert.Equal(client.ModelId, response.ModelId);
    }

    [SkippableFact]
    public async Task StopSequencesEndTheAnswerBeforeThem()
    {
        using var model = Stories();
        using var client = new CriaChatClient(model, new ContextOptions { ContextSize = 256 });
        var greedy = new ChatOptions { Temperature = 0, MaxOutputTokens = 40 };
        string full = (await client.GetResponseAsync(Conversation(), greedy)).Text;
        string[] words = full.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(words.Length > 4, full);
        string stop = words[3];
        var stopped = await client.GetResponseAsync(Conversation(), new ChatOptions { Temperature = 0, MaxOutputTokens = 40, StopSequences = new[] { stop } });
        Assert.Equal(full[..full.IndexOf(stop, StringComparison.Ordinal)], stopped.Text);
        Assert.Equal(ChatFinishReason.Stop, stopped.FinishReason);
    }

    [SkippableFact]
    public async Task CancellationStopsStreamingAndThrows()
    {
        using var model = Stories();
        using var client = new CriaChatClient(model, new ContextOptions { ContextSize = 256 });
        using var cts = new CancellationTokenSource();
        int count = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var _ in client.GetStreamingResponseAsync(Conversation(), new ChatOptions { Temperature = 0, MaxOutputTokens = 200 }, cts.Token))
                if (++count == 3) cts.Cancel();
        });
        Assert.Equal(3, count);
        Assert.Equal(Cria.Generation.StopReason.Cancelled, client.LastStats!.StopReason);

        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => client.GetResponseAsync(Conversation(), null, cancelled.Token));

        // The client still works afterwards (the lock was released).
        var ok = await client.GetResponseAsync(Conversation(), new ChatOptions { Temperature = 0, MaxOutputTokens = 3 });
        Assert.Equal(3, ok.Usage!.OutputTokenCount);
    }

    [SkippableFact]
    public async Task ConcurrentCallsAreSerializedAndMetadataIsReported()
    {
        using var model = Stories();
        using var client = new CriaChatClient(model, new ContextOptions { ContextSize = 256 });
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 8 };
        var tasks = Enumerable.Range(0, 4).Select(_ => Task.Run(() => client.GetResponseAsync(Conversation(), options))).ToArray();
        var results = await Task.WhenAll(tasks);
        Assert.All(results, r => Assert.Equal(results[0].Text, r.Text));

        var metadata = client.GetService<ChatClientMetadata>();
        Assert.NotNull(metadata);
        Assert.Equal("cria", metadata!.ProviderName);
        Assert.Equal(client.ModelId, metadata.DefaultModelId);
        Assert.False(string.IsNullOrEmpty(metadata.DefaultModelId));
        Assert.Same(client, client.GetService<CriaChatClient>());
        Assert.Null(client.GetService<ChatClientMetadata>("some key"));
    }

    [Fact]
    public void ChatOptionsMapOntoGenerationOptions()
    {
        var g = CriaChatClient.ToGenerationOptions(new ChatOptions
        {
            Temperature = 0.5f, TopP = 0.7f, TopK = 7, MaxOutputTokens = 9, StopSequences = new[] { "END" },
            Seed = 42, FrequencyPenalty = 0.25f, PresencePenalty = 0.5f,
        });
        Assert.Equal(0.5f, g.Sampling.Temperature);
        Assert.Equal(0.7f, g.Sampling.TopP);
        Assert.Equal(7, g.Sampling.TopK);
        Assert.Equal(9, g.MaxTokens);
        Assert.Equal(new[] { "END" }, g.StopSequences);
        Assert.Equal(42UL, g.Sampling.Seed);
        Assert.Equal(0.25f, g.Sampling.FrequencyPenalty);
        Assert.Equal(0.5f, g.Sampling.PresencePenalty);

        var messages = CriaChatClient.ToTemplateMessages(new[] { new AiChatMessage(ChatRole.User, "hi") }, "Be brief.");
        Assert.Equal(new[] { ("system", "Be brief."), ("user", "hi") }, messages.Select(m => (m.Role, m.Content!)));
    }
}
