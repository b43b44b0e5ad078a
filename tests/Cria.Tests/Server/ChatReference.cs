using Cria.Chat;
using Cria.Generation;
using Cria.Model;
using Cria.Sampling;

namespace Cria.Tests.Server;

/// <summary>
/// What a chat request should answer at temperature 0: the conversation formatted with the model's chat
/// template exactly as the server does (<see cref="ChatFormatter.FromModel"/>), then generated greedily by a
/// fresh <see cref="LlamaSession"/>.
/// </summary>
internal static class ChatReference
{
    public static (string Text, GenerationStats Stats, int PromptTokens) Greedy(
        LlamaModel model, IEnumerable<ChatMessage> messages, int maxTokens, int contextSize, params string[] stop)
    {
        int[] prompt = ChatFormatter.FromModel(model).Format(messages);
        using var session = new LlamaSession(model, new ContextOptions { ContextSize = contextSize });
        var options = new GenerationOptions { MaxTokens = maxTokens, Sampling = SamplerOptions.Greedy, StopSequences = stop };
        string text = string.Concat(session.GenerateText(prompt, options));
        return (text, session.LastStats!, prompt.Length);
    }
}
