using System.Runtime.CompilerServices;
using System.Text;
using Cria.Generation;
using Cria.Model;
using Cria.Sampling;
using Microsoft.Extensions.AI;
using AiChatMessage = Microsoft.Extensions.AI.ChatMessage;

namespace Cria.Chat;

/// <summary>
/// An <see cref="IChatClient"/> (Microsoft.Extensions.AI) over a <see cref="LlamaModel"/>. Calls are
/// serialized over one <see cref="LlamaSession"/>, so a request that repeats the previous conversation
/// reuses its KV cache. Messages are rendered with the model's chat template; only their text is used.
/// </summary>
/// <example>
/// <code>
/// using var model = LlamaModel.Load("model.gguf");
/// using IChatClient client = new CriaChatClient(model);
/// var response = await client.GetResponseAsync("Hello!", new ChatOptions { MaxOutputTokens = 64 });
/// Console.WriteLine(response.Text);
/// </code>
/// </example>
public sealed class CriaChatClient : IChatClient
{
    private readonly SemaphoreSlim _lock = new(1, 1);
    private readonly LlamaSession _session;
    private readonly ChatFormatter _formatter;
    private readonly ChatClientMetadata _metadata;
    private bool _disposed;

    /// <param name="model">The model (not disposed by the client).</param>
    /// <param name="contextOptions">Context settings of the client's session.</param>
    /// <param name="template">The chat template; null for the model's own.</param>
    /// <param name="defaultOptions">Generation settings the request's <see cref="ChatOptions"/> override.</param>
    public CriaChatClient(LlamaModel model, ContextOptions? contextOptions = null, ChatTemplate? template = null,
        GenerationOptions? defaultOptions = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        Model = model;
        _session = new LlamaSession(model, contextOptions);
        _formatter = ChatFormatter.FromModel(model, template);
        DefaultOptions = defaultOptions ?? new GenerationOptions();
        ModelId = model.File.GetString("general.name") ?? "llama";
        _metadata = new ChatClientMetadata("cria", null, ModelId);
    }

    public LlamaModel Model { get; }
    /// <summary>The model name reported in metadata and responses (<c>general.name</c>).</summary>
    public string ModelId { get; }
    public GenerationOptions DefaultOptions { get; }

    /// <summary>Statistics of the last completed request.</summary>
    public GenerationStats? LastStats { get; private set; }

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<AiChatMessage> messages, ChatOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        var text = new StringBuilder();
        ChatFinishReason? finish = null;
        UsageDetails? usage = null;
        string? responseId = null;
        await foreach (var update in GetStreamingResponseAsync(messages, options, cancellationToken).ConfigureAwait(false))
        {
            text.Append(update.Text);
            finish ??= update.FinishReason;
            responseId ??= update.ResponseId;
            foreach (var c in update.Contents)
                if (c is UsageContent u) usage = u.Details;
        }
        cancellationToken.ThrowIfCancellationRequested();
        return new ChatResponse(new AiChatMessage(ChatRole.Assistant, text.ToString()))
        {
            FinishReason = finish,
            Usage = usage,
            ModelId = ModelId,
            ResponseId = responseId,
            CreatedAt = DateTimeOffset.UtcNow,
        };
    }

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<AiChatMessage> messages,
        ChatOptions? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        ObjectDisposedException.ThrowIf(_disposed, this);
        var generation = ToGenerationOptions(options, DefaultOptions);
        var templateMessages = ToTemplateMessages(messages, options?.Instructions);
        string responseId = Guid.NewGuid().ToString("N");

        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await Task.Yield();
            int[] tokens = _formatter.Format(templateMessages, addGenerationPrompt: true);
            foreach (string piece in _session.GenerateText(tokens, generation, cancellationToken))
            {
                yield return new ChatResponseUpdate(ChatRole.Assistant, piece)
                {
                    ModelId = ModelId,
                    ResponseId = responseId,
                    CreatedAt = DateTimeOffset.UtcNow,
                };
            }
            var stats = _session.LastStats!;
            LastStats = stats;
            cancellationToken.ThrowIfCancellationRequested();
            var usage = new UsageDetails
            {
                InputTokenCount = stats.PromptTokens,
                OutputTokenCount = stats.GeneratedTokens,
                TotalTokenCount = stats.PromptTokens + stats.GeneratedTokens,
            };
            yield return new ChatResponseUpdate(ChatRole.Assistant, new List<AIContent> { new UsageContent(usage) })
            {
                FinishReason = ToFinishReason(stats.StopReason),
                ModelId = ModelId,
                ResponseId = responseId,
                CreatedAt = DateTimeOffset.UtcNow,
            };
        }
        finally
        {
            _lock.Release();
        }
    }

    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey != null) return null;
        if (serviceType == typeof(ChatClientMetadata)) return _metadata;
        if (serviceType == typeof(LlamaModel)) return Model;
        if (serviceType.IsInstanceOfType(this)) return this;
        return null;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _session.Dispose();
        _lock.Dispose();
    }

    /// <summary>Maps <see cref="ChatOptions"/> onto generation settings (unset values keep the defaults).</summary>
    public static GenerationOptions ToGenerationOptions(ChatOptions? options, GenerationOptions? defaults = null)
    {
        defaults ??= new GenerationOptions();
        if (options is null) return defaults;
        var s = defaults.Sampling;
        var sampling = s with
        {
            Temperature = options.Temperature ?? s.Temperature,
            TopP = options.TopP ?? s.TopP,
            TopK = options.TopK ?? s.TopK,
            FrequencyPenalty = options.FrequencyPenalty ?? s.FrequencyPenalty,
            PresencePenalty = options.PresencePenalty ?? s.PresencePenalty,
            Seed = options.Seed is long seed ? unchecked((ulong)seed) : s.Seed,
        };
        if (options.MaxOutputTokens is < 0)
            throw new ArgumentOutOfRangeException(nameof(options), "MaxOutputTokens must not be negative");
        var result = defaults with
        {
            Sampling = sampling,
            MaxTokens = options.MaxOutputTokens ?? defaults.MaxTokens,
            StopSequences = options.StopSequences is { Count: > 0 } stops
                ? defaults.StopSequences.Concat(stops).ToArray()
                : defaults.StopSequences,
        };
        result.Validate();
        return result;
    }

    /// <summary>The template messages for a request: roles as given, text content only, instructions as a system message.</summary>
    public static List<ChatMessage> ToTemplateMessages(IEnumerable<AiChatMessage> messages, string? instructions = null)
    {
        var list = new List<ChatMessage>();
        foreach (var m in messages)
        {
            ArgumentNullException.ThrowIfNull(m);
            list.Add(new ChatMessage(m.Role.Value, m.Text) { Name = m.AuthorName });
        }
        if (!string.IsNullOrEmpty(instructions))
        {
            if (list.Count > 0 && list[0].Role == "system")
                list[0] = list[0] with { Content = list[0].Content + "\n\n" + instructions };
            else
                list.Insert(0, ChatMessage.System(instructions));
        }
        return list;
    }

    private static ChatFinishReason? ToFinishReason(StopReason reason) => reason switch
    {
        StopReason.EndOfGeneration or StopReason.StopSequence => ChatFinishReason.Stop,
        StopReason.MaxTokens or StopReason.ContextFull => ChatFinishReason.Length,
        _ => null,
    };
}
