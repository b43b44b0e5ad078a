using System.Text.Json;
using System.Text.Json.Nodes;

namespace Cria.Chat;

/// <summary>
/// What a chat template is rendered with, as Hugging Face's <c>apply_chat_template</c> passes it:
/// <c>messages</c>, <c>tools</c> (None when absent, so <c>tools is defined</c> holds), <c>documents</c>,
/// <c>add_generation_prompt</c>, <c>bos_token</c>/<c>eos_token</c> (undefined when null) and every key of
/// <see cref="ExtraContext"/> (which may override them). JSON objects keep their key order, which is the
/// order <c>tojson</c> prints.
/// </summary>
public sealed class ChatTemplateRequest
{
    public ChatTemplateRequest(IEnumerable<ChatMessage> messages)
    {
        ArgumentNullException.ThrowIfNull(messages);
        Messages = new JsonArray(messages.Select(m => (JsonNode?)m.ToJson()).ToArray());
    }

    /// <summary>Messages as raw JSON objects, passed to the template unchanged (tool calls, list or dict content...).</summary>
    public ChatTemplateRequest(JsonArray messages)
    {
        ArgumentNullException.ThrowIfNull(messages);
        Messages = messages;
    }

    public JsonArray Messages { get; }

    /// <summary>Tool definitions (a JSON array of function schemas), or null for none.</summary>
    public JsonNode? Tools { get; init; }

    /// <summary>Retrieval documents (Hugging Face's <c>documents</c>), or null.</summary>
    public JsonNode? Documents { get; init; }

    public bool AddGenerationPrompt { get; init; }

    public string? BosToken { get; init; }

    public string? EosToken { get; init; }

    /// <summary>Additional template variables (e.g. <c>date_string</c>, <c>tools_in_user_message</c>, <c>builtin_tools</c>).</summary>
    public JsonObject? ExtraContext { get; init; }

    /// <summary>The time <c>strftime_now</c> formats; null for the current local time.</summary>
    public DateTime? Now { get; init; }

    /// <summary>
    /// Reads a request in the shape of one case of the reference data: <c>messages</c> (required),
    /// <c>tools</c>, <c>documents</c>, <c>add_generation_prompt</c>, <c>bos_token</c>, <c>eos_token</c>,
    /// <c>extra_context</c>; other keys are ignored.
    /// </summary>
    public static ChatTemplateRequest FromJson(string json)
    {
        JsonNode? node;
        try
        {
            node = JsonNode.Parse(json);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"request is not valid JSON: {e.Message}", e);
        }
        return FromJson(node ?? throw new InvalidDataException("request must be a JSON object"));
    }

    /// <inheritdoc cref="FromJson(string)"/>
    public static ChatTemplateRequest FromJson(JsonNode node)
    {
        if (node is not JsonObject o) throw new InvalidDataException("request must be a JSON object");
        if (o["messages"] is not JsonArray messages) throw new InvalidDataException("request needs a \"messages\" array");
        return new ChatTemplateRequest(messages)
        {
            Tools = o["tools"],
            Documents = o["documents"],
            AddGenerationPrompt = o["add_generation_prompt"] switch
            {
                null => false,
                JsonValue v when v.GetValueKind() is JsonValueKind.True or JsonValueKind.False => v.GetValue<bool>(),
                _ => throw new InvalidDataException("\"add_generation_prompt\" must be true or false"),
            },
            BosToken = OptionalString(o, "bos_token"),
            EosToken = OptionalString(o, "eos_token"),
            ExtraContext = o["extra_context"] switch
            {
                null => null,
                JsonObject extra => extra,
                _ => throw new InvalidDataException("\"extra_context\" must be an object"),
            },
        };
    }

    private static string? OptionalString(JsonObject o, string key) => o[key] switch
    {
        null => null,
        JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
        _ => throw new InvalidDataException($"\"{key}\" must be a string"),
    };
}
