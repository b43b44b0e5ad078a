using System.Text.Json.Nodes;

namespace Cria.Server;

/// <summary>An error answered in OpenAI's shape: <c>{"error": {"message", "type", "param", "code"}}</c>.</summary>
internal sealed class ApiException : Exception
{
    public ApiException(int status, string message, string? param = null, string? code = null, string? type = null)
        : base(message)
    {
        Status = status;
        Param = param;
        Code = code;
        Type = type ?? DefaultType(status);
    }

    public int Status { get; }
    public string? Param { get; }
    public string? Code { get; }
    public string Type { get; }

    public static ApiException BadRequest(string message, string? param = null, string? code = null) => new(400, message, param, code);

    public static string DefaultType(int status) => status switch
    {
        401 => "authentication_error",
        404 => "not_found_error",
        503 => "unavailable_error",
        >= 500 => "server_error",
        _ => "invalid_request_error",
    };

    public static JsonObject Body(int status, string message, string? type = null, string? param = null, string? code = null) => new()
    {
        ["error"] = new JsonObject
        {
            ["message"] = message,
            ["type"] = type ?? DefaultType(status),
            ["param"] = param,
            ["code"] = code,
        },
    };

    public JsonObject Body() => Body(Status, Message, Type, Param, Code);
}
