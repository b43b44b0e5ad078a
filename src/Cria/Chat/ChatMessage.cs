using System.Text.Json.Nodes;

namespace Cria.Chat;

/// <summary>
/// One message of a conversation, as the template sees it: <c>{"role": ..., "content": ...}</c> plus the
/// optional <c>name</c>, <c>tool_call_id</c> and <c>tool_calls</c>. A null <see cref="Content"/> leaves
/// <c>content</c> out (as for an assistant message that only calls tools). For content that is not a
/// string (a dict or list tool result) or other fields, build the JSON yourself and use
/// <see cref="ChatTemplateRequest(JsonArray)"/>.
/// </summary>
public sealed record ChatMessage(string Role, string? Content)
{
    /// <summary><c>[{"type": "function", "function": {"name": ..., "arguments": {...}}}]</c>, passed through unchanged.</summary>
    public JsonArray? ToolCalls { get; init; }

    public string? Name { get; init; }

    public string? ToolCallId { get; init; }

    public static ChatMessage System(string content) => new("system", content);
    public static ChatMessage User(string content) => new("user", content);
    public static ChatMessage Assistant(string content) => new("assistant", content);

    /// <summary>The message as the JSON object the template receives.</summary>
    public JsonObject ToJson()
    {
        var o = new JsonObject { ["role"] = Role };
        if (Content != null) o["content"] = Content;
        if (Name != null) o["name"] = Name;
        if (ToolCallId != null) o["tool_call_id"] = ToolCallId;
        if (ToolCalls != null) o["tool_calls"] = ToolCalls.DeepClone();
        return o;
    }
}
