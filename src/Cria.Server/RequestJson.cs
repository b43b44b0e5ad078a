using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;

namespace Cria.Server;

/// <summary>Reads request bodies and typed fields, failing with 400 (or 413) <see cref="ApiException"/>s.</summary>
internal static class RequestJson
{
    /// <summary>How much of an oversized body is read and discarded before answering 413, so that clients
    /// which send the whole body first still see the answer (Kestrel stops reading beyond this).</summary>
    public static long DrainLimit(long limit) => Math.Max(limit * 8, 8L << 20);

    public static async Task<JsonObject> ReadObjectAsync(HttpContext ctx, long limit)
    {
        var tooLarge = new ApiException(413, $"the request body is larger than {limit} bytes", code: "request_too_large");
        long drain = DrainLimit(limit);
        if (ctx.Request.ContentLength > drain) throw tooLarge;
        using var buffer = new MemoryStream();
        var chunk = new byte[16384];
        long total = 0;
        while (true)
        {
            int n = await ctx.Request.Body.ReadAsync(chunk, ctx.RequestAborted).ConfigureAwait(false);
            if (n == 0) break;
            total += n;
            if (total > drain) throw tooLarge;
            if (total <= limit) buffer.Write(chunk, 0, n);
        }
        if (total > limit) throw tooLarge;
        if (buffer.Length == 0) throw ApiException.BadRequest("the request body is empty; expected a JSON object");
        JsonNode? node;
        try
        {
            node = JsonNode.Parse(buffer.GetBuffer().AsMemory(0, (int)buffer.Length).Span,
                documentOptions: new JsonDocumentOptions { MaxDepth = 64 });
        }
        catch (JsonException e)
        {
            throw ApiException.BadRequest($"the request body is not valid JSON: {e.Message}", code: "invalid_json");
        }
        return node as JsonObject ?? throw ApiException.BadRequest("the request body must be a JSON object", code: "invalid_json");
    }

    private static JsonValue? Value(JsonObject o, string name, string expected)
    {
        var node = o[name];
        if (node is null) return null; // missing or null
        return node as JsonValue ?? throw ApiException.BadRequest($"'{name}' must be {expected}", name, "invalid_type");
    }

    public static string? String(JsonObject o, string name)
    {
        var v = Value(o, name, "a string");
        if (v is null) return null;
        if (v.GetValueKind() != JsonValueKind.String) throw ApiException.BadRequest($"'{name}' must be a string", name, "invalid_type");
        return v.GetValue<string>();
    }

    public static bool? Bool(JsonObject o, string name)
    {
        var v = Value(o, name, "true or false");
        if (v is null) return null;
        return v.GetValueKind() switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw ApiException.BadRequest($"'{name}' must be true or false", name, "invalid_type"),
        };
    }

    public static long? Integer(JsonObject o, string name)
    {
        var v = Value(o, name, "an integer");
        if (v is null) return null;
        if (v.GetValueKind() == JsonValueKind.Number)
        {
            if (v.TryGetValue(out long l)) return l;
            if (v.TryGetValue(out double d) && d == Math.Floor(d) && Math.Abs(d) < 9e15) return (long)d;
        }
        throw ApiException.BadRequest($"'{name}' must be an integer", name, "invalid_type");
    }

    public static int? Int(JsonObject o, string name, int min = int.MinValue, int max = int.MaxValue)
    {
        long? l = Integer(o, name);
        if (l is null) return null;
        if (l < min || l > max)
            throw ApiException.BadRequest(
                min == 0 && l < 0 ? $"'{name}' must not be negative, got {l}" : $"'{name}' must be in {min}..{max}, got {l}",
                name, "invalid_value");
        return (int)l;
    }

    public static double? Number(JsonObject o, string name)
    {
        var v = Value(o, name, "a number");
        if (v is null) return null;
        if (v.GetValueKind() == JsonValueKind.Number && v.TryGetValue(out double d) && double.IsFinite(d)) return d;
        throw ApiException.BadRequest($"'{name}' must be a number", name, "invalid_type");
    }

    public static float? Float(JsonObject o, string name, double min = double.NegativeInfinity, double max = double.PositiveInfinity)
    {
        double? d = Number(o, name);
        if (d is null) return null;
        if (d < min || d > max)
            throw ApiException.BadRequest($"'{name}' must be in [{min}, {max}], got {d}", name, "invalid_value");
        return (float)d.Value;
    }

    /// <summary>An array of token ids within the vocabulary.</summary>
    public static int[]? Tokens(JsonObject o, string name, int vocabularySize)
    {
        var node = o[name];
        if (node is null) return null;
        if (node is not JsonArray a) throw ApiException.BadRequest($"'{name}' must be an array of token ids", name, "invalid_type");
        return TokenArray(a, name, vocabularySize);
    }

    public static int[] TokenArray(JsonArray a, string name, int vocabularySize)
    {
        var ids = new int[a.Count];
        for (int i = 0; i < a.Count; i++)
        {
            if (a[i] is JsonValue v && v.GetValueKind() == JsonValueKind.Number && v.TryGetValue(out long id))
            {
                if (id < 0 || id >= vocabularySize)
                    throw ApiException.BadRequest($"token id {id} in '{name}' is outside the vocabulary (0..{vocabularySize - 1})", name, "invalid_value");
                ids[i] = (int)id;
            }
            else
            {
                throw ApiException.BadRequest($"'{name}' must be an array of integer token ids", name, "invalid_type");
            }
        }
        return ids;
    }

    /// <summary>"stop": a string or an array of strings.</summary>
    public static string[] Stop(JsonObject o, string name = "stop")
    {
        var node = o[name];
        switch (node)
        {
            case null:
                return Array.Empty<string>();
            case JsonValue v when v.GetValueKind() == JsonValueKind.String:
                return new[] { v.GetValue<string>() };
            case JsonArray a:
                if (a.Count > 16) throw ApiException.BadRequest($"'{name}' has {a.Count} sequences; at most 16 are allowed", name, "invalid_value");
                return a.Select(e => e is JsonValue s && s.GetValueKind() == JsonValueKind.String
                    ? s.GetValue<string>()
                    : throw ApiException.BadRequest($"'{name}' must be a string or an array of strings", name, "invalid_type")).ToArray();
            default:
                throw ApiException.BadRequest($"'{name}' must be a string or an array of strings", name, "invalid_type");
        }
    }
}
