using Cria.Chat;
using Cria.Generation;
using Cria.Model;
using Cria.Sampling;
using Xunit;

namespace Cria.Tests.Chat;

public class ChatSessionTests
{
    private static LlamaModel Stories() =>
        LlamaModel.Load(RefData.Require("stories260K/stories260K-f32.gguf"), new ModelOptions { Threads = 2 });

    private static GenerationOptions Greedy(int n) => new() { MaxTokens = n, Sampling = SamplerOptions.Greedy };

    [Fact]
    public void BuiltinTemplatesAreFoundByName()
    {
        Assert.Same(ChatTemplate.Llama2, ChatTemplate.Builtin("llama2"));
        Assert.Same(ChatTemplate.Llama3, ChatTemplate.Builtin("Llama-3"));
        Assert.Null(ChatTemplate.Builtin("chatml"));
        Assert.Equal(new[] { "llama2", "llama3" }, ChatTemplate.BuiltinNames);
    }

    [SkippableFact]
    public async Task ATemplateInTheOptionsReplacesTheModelsOwn()
    {
        using var model = Stories();
        using var session = new LlamaSession(model, new ContextOptions { ContextSize = 256, KvCacheType = KvCacheType.F32 });
        var chat = new ChatSession(session, new ChatSessionOptions { Template = ChatTemplate.Llama3 });
        Assert.Same(ChatTemplate.Llama3, chat.Template);
        await chat.SendAndCollectAsync("Hi", Greedy(2));
        Assert.Equal("<s><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", chat.LastPrompt);
        Assert.Equal(chat.Formatter.Tokenize(chat.LastPrompt!).Length, chat.LastPromptTokenCount);
        chat.Reset();
        Assert.Equal(0, chat.LastPromptTokenCount);
    }

    [SkippableFact]
    public async Task TwoTurnPromptIsTheLlama2TemplatesRenderAndReusesTheCache()
    {
        using var model = Stories();
        using var session = new LlamaSession(model, new ContextOptions { ContextSize = 512, KvCacheType = KvCacheType.F32 });
        var chat = new ChatSession(session, new ChatSessionOptions { SystemPrompt = "You tell stories." });
        Assert.Same(ChatTemplate.Llama2, chat.Template); // stories260K has no tokenizer.chat_template

        string first = await chat.SendAndCollectAsync("Hello there", Greedy(12));
        int firstPromptTokens = chat.LastStats!.PromptTokens;
        string second = await chat.SendAndCollectAsync("Tell me about Lily", Greedy(12));

        string expected = ChatTemplate.Llama2.Render(new ChatTemplateRequest(new[]
        {
            ChatMessage.System("You tell stories."),
            ChatMessage.User("Hello there"),
            ChatMessage.Assistant(first),
            ChatMessage.User("Tell me about Lily"),
        })
        { AddGenerationPrompt = true, BosToken = "<s>", EosToken = "</s>" });
        Assert.Equal(expected, chat.LastPrompt);
        Assert.StartsWith("<s>[INST] <<SYS>>\nYou tell stories.\n<</SYS>>\n\nHello there [/INST]", chat.LastPrompt);

        // BOS is not doubled: the rendered "<s>" becomes the only leading BOS.
        int[] tokens = chat.Formatter.Tokenize(chat.LastPrompt!);
        Assert.Equal(model.Vocabulary.Bos, tokens[0]);
        Assert.NotEqual(model.Vocabulary.Bos, tokens[1]);
        Assert.Equal(2, tokens.Count(t => t == model.Vocabulary.Bos)); // one per [INST] turn

        var stats = chat.LastStats!;
        Assert.Equal(tokens.Length, stats.PromptTokens);
        Assert.True(stats.PromptTokensEvaluated < stats.PromptTokens,
            $"the second turn should reuse the cached prefix ({stats.PromptTokensEvaluated} of {stats.PromptTokens} evaluated)");
        Assert.True(stats.PromptTokensEvaluated <= stats.PromptTokens - firstPromptTokens + 1 + 12);

        Assert.Equal(4, chat.History.Count);
        Assert.Equal(new[] { "user", "assistant", "user", "assistant" }, chat.History.Select(m => m.Role));
        Assert.Equal(second, chat.History[3].Content);

        // The answer equals what a fresh session produces for the same prompt (the reuse is exact).
        using var fresh = new LlamaSession(model, new ContextOptions { ContextSize = 512, KvCacheType = KvCacheType.F32 });
        Assert.Equal(second, string.Concat(fresh.GenerateText(tokens, Greedy(12))));
    }

    [SkippableFact]
    public async Task CancellationKeepsThePartialAnswerInTheHistory()
    {
        using var model = Stories();
        using var session = new LlamaSession(model, new ContextOptions { ContextSize = 512 });
        var chat = new ChatSession(session);
        using var cts = new CancellationTokenSource();
        var pieces = new List<string>();
        await foreach (string piece in chat.SendAsync("Once upon a time", Greedy(200), cts.Token))
        {
            pieces.Add(piece);
            if (pieces.Count == 4) cts.Cancel();
        }
        Assert.Equal(StopReason.Cancelled, chat.LastStats!.StopReason);
        Assert.Equal(2, chat.History.Count);
        Assert.Equal("Once upon a time", chat.History[0].Content);
        Assert.Equal(string.Concat(pieces), chat.History[1].Content);
        Assert.NotEmpty(chat.History[1].Content!);

        // Abandoning the stream also keeps what was produced.
        await foreach (string piece in chat.SendAsync("Again", Greedy(200)))
        {
            Assert.NotNull(piece);
            break;
        }
        Assert.Equal(4, chat.History.Count);
        Assert.NotEmpty(chat.History[3].Content!);
    }

    [SkippableFact]
    public async Task ResetForgetsTheHistoryButKeepsTheSystemPrompt()
    {
        using var model = Stories();
        using var session = new LlamaSession(model, new ContextOptions { ContextSize = 256 });
        var chat = new ChatSession(session, new ChatSessionOptions { SystemPrompt = "Be kind." });
        await chat.SendAndCollectAsync("Hi", Greedy(4));
        chat.Reset();
        Assert.Empty(chat.History);
        Assert.Empty(session.Tokens);
        Assert.Equal("Be kind.", chat.SystemPrompt);
        chat.SystemPrompt = null;
        Assert.Equal("<s>[INST] Hi [/INST]", chat.RenderPrompt("Hi"));
    }

    [SkippableFact]
    public async Task DropOldestTurnsKeepsASmallContextGoingWhileThrowFails()
    {
        using var model = Stories();
        using var session = new LlamaSession(model, new ContextOptions { ContextSize = 64 });
        var chat = new ChatSession(session, new ChatSessionOptions { OverflowPolicy = ContextOverflowPolicy.DropOldestTurns });
        string[] inputs = { "Hello", "Tell me a story", "What happened next", "And then", "Who was there", "The end" };
        foreach (string input in inputs)
        {
            await chat.SendAndCollectAsync(input, Greedy(16));
            Assert.True(chat.LastStats!.PromptTokens <= 64);
        }
        Assert.True(chat.DroppedTurns > 0, "some turns should have been dropped");
        Assert.Equal("The end", chat.History[^2].Content);
        Assert.Equal(2 * (inputs.Length - chat.DroppedTurns), chat.History.Count);

        using var session2 = new LlamaSession(model, new ContextOptions { ContextSize = 64 });
        var strict = new ChatSession(session2);
        var ex = await Assert.ThrowsAsync<ContextOverflowException>(async () =>
        {
            foreach (string input in inputs) await strict.SendAndCollectAsync(input, Greedy(16));
        });
        Assert.Equal(64, ex.ContextSize);
        Assert.Contains("64", ex.Message);
        int before = strict.History.Count;
        Assert.True(before >= 2);
        await Assert.ThrowsAsync<ContextOverflowException>(() => strict.SendAndCollectAsync("More", Greedy(16)));
        Assert.Equal(before, strict.History.Count); // a refused message is not recorded
        Assert.Equal(0, strict.DroppedTurns);
    }
}
