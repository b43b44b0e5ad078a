using System.Runtime.CompilerServices;
using System.Text;
using Cria.Generation;
using Cria.Model;

namespace Cria.Chat;

/// <summary>What a <see cref="ChatSession"/> does when the conversation no longer fits the context.</summary>
public enum ContextOverflowPolicy
{
    /// <summary>Throw <see cref="ContextOverflowException"/>; the history is left unchanged.</summary>
    Throw,
    /// <summary>Drop the oldest user/assistant pairs until the prompt fits (the system prompt is kept).</summary>
    DropOldestTurns,
}

/// <summary>Settings of a <see cref="ChatSession"/>.</summary>
public sealed record ChatSessionOptions
{
    /// <summary>
    /// The template; null for the model's own (or the built-in Llama 2/3 fallback). Set it to override the model's, e.g.
    /// with <see cref="ChatTemplate.Builtin"/>("llama3") or <see cref="ChatTemplate.Parse"/>(a Jinja source); the model's
    /// BOS/EOS texts are still passed to it.
    /// </summary>
    public ChatTemplate? Template { get; init; }
    public string? SystemPrompt { get; init; }
    public ContextOverflowPolicy OverflowPolicy { get; init; } = ContextOverflowPolicy.Throw;
    /// <summary>
    /// Context positions kept free for the answer when checking that the prompt fits (at most half the
    /// context, and no more than the answer's <see cref="GenerationOptions.MaxTokens"/>).
    /// </summary>
    public int ReservedResponseTokens { get; init; } = 32;
}

/// <summary>
/// A multi-turn conversation over a <see cref="LlamaSession"/>: each <see cref="SendAsync"/> renders the
/// whole conversation with the chat template and generates the answer; the tokens the previous turn left
/// in the KV cache are reused for the shared prefix.
/// </summary>
/// <example>
/// <code>
/// using var model = LlamaModel.Load("model.gguf");
/// using var llama = new LlamaSession(model);
/// var chat = new ChatSession(llama, new ChatSessionOptions { SystemPrompt = "Be brief." });
/// await foreach (string piece in chat.SendAsync("Hello!")) Console.Write(piece);
/// </code>
/// </example>
public sealed class ChatSession
{
    private readonly List<ChatMessage> _history = new();
    private readonly int _reserve;

    public ChatSession(LlamaSession session, ChatSessionOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(session);
        options ??= new ChatSessionOptions();
        if (options.ReservedResponseTokens < 0)
            throw new ArgumentOutOfRangeException(nameof(options), "ReservedResponseTokens must not be negative");
        Session = session;
        Formatter = ChatFormatter.FromModel(session.Model, options.Template);
        SystemPrompt = options.SystemPrompt;
        OverflowPolicy = options.OverflowPolicy;
        _reserve = Math.Min(options.ReservedResponseTokens, session.Context.ContextSize / 2);
    }

    public LlamaSession Session { get; }
    public ChatFormatter Formatter { get; }
    public ChatTemplate Template => Formatter.Template;

    /// <summary>The system message put first (null or empty: none). Takes effect on the next turn.</summary>
    public string? SystemPrompt { get; set; }

    public ContextOverflowPolicy OverflowPolicy { get; set; }

    /// <summary>The user and assistant messages so far, alternating, oldest first.</summary>
    public IReadOnlyList<ChatMessage> History => _history;

    /// <summary>User/assistant pairs dropped so far by <see cref="ContextOverflowPolicy.DropOldestTurns"/>.</summary>
    public int DroppedTurns { get; private set; }

    /// <summary>The rendered text of the last prompt sent to the model.</summary>
    public string? LastPrompt { get; private set; }

    /// <summary>The number of tokens <see cref="LastPrompt"/> was tokenized into (0 before the first prompt).</summary>
    public int LastPromptTokenCount { get; private set; }

    /// <summary>Statistics of the last answer.</summary>
    public GenerationStats? LastStats => Session.LastStats;

    /// <summary>The messages the template receives: the system prompt, the history and an optional new user message.</summary>
    public IReadOnlyList<ChatMessage> Messages(string? nextUserMessage = null)
    {
        var list = new List<ChatMessage>(_history.Count + 2);
        if (!string.IsNullOrEmpty(SystemPrompt)) list.Add(ChatMessage.System(SystemPrompt));
        list.AddRange(_history);
        if (nextUserMessage != null) list.Add(ChatMessage.User(nextUserMessage));
        return list;
    }

    /// <summary>Renders the conversation (with a new user message and the generation prompt).</summary>
    public string RenderPrompt(string? nextUserMessage = null) =>
        Formatter.Render(Messages(nextUserMessage), addGenerationPrompt: true);

    /// <summary>
    /// Sends a user message and streams the answer. The answer is added to <see cref="History"/> when the
    /// stream ends, also when it is cancelled or abandoned (what was produced so far is kept).
    /// </summary>
    /// <exception cref="ContextOverflowException">the conversation does not fit (policy Throw, or even the new message alone)</exception>
    public async IAsyncEnumerable<string> SendAsync(string userMessage, GenerationOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(userMessage);
        options ??= new GenerationOptions();
        options.Validate();
        int[] tokens = PreparePrompt(userMessage, options.MaxTokens);
        await Task.Yield();

        var answer = new StringBuilder();
        bool started = false;
        try
        {
            foreach (string piece in Session.GenerateText(tokens, options, cancellationToken))
            {
                started = true;
                answer.Append(piece);
                yield return piece;
            }
            started = true;
        }
        finally
        {
            // Cancellation before the prompt was evaluated throws and leaves the history as it was;
            // once generation got going, the (possibly partial) answer is kept.
            if (started)
            {
                _history.Add(ChatMessage.User(userMessage));
                _history.Add(ChatMessage.Assistant(answer.ToString()));
            }
        }
    }

    /// <summary>Sends a user message and returns the whole answer.</summary>
    public async Task<string> SendAndCollectAsync(string userMessage, GenerationOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        var sb = new StringBuilder();
        await foreach (string piece in SendAsync(userMessage, options, cancellationToken).ConfigureAwait(false))
            sb.Append(piece);
        return sb.ToString();
    }

    /// <summary>Forgets the history (the system prompt stays) and clears the KV cache.</summary>
    public void Reset()
    {
        _history.Clear();
        DroppedTurns = 0;
        LastPrompt = null;
        LastPromptTokenCount = 0;
        Session.Reset();
    }

    /// <summary>Renders and tokenizes the prompt for <paramref name="userMessage"/>, applying the overflow policy.</summary>
    private int[] PreparePrompt(string userMessage, int maxTokens)
    {
        int ctx = Session.Context.ContextSize;
        int reserve = maxTokens >= 0 ? Math.Min(_reserve, maxTokens) : _reserve;
        while (true)
        {
            string prompt = RenderPrompt(userMessage);
            int[] tokens = Formatter.Tokenize(prompt);
            int needed = tokens.Length + reserve;
            if (needed <= ctx)
            {
                LastPrompt = prompt;
                LastPromptTokenCount = tokens.Length;
                return tokens;
            }
            if (OverflowPolicy != ContextOverflowPolicy.DropOldestTurns || _history.Count < 2)
                throw new ContextOverflowException(needed, ctx);
            _history.RemoveRange(0, 2);
            DroppedTurns++;
        }
    }
}
