using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Cria.Chat.Jinja;

/// <summary>
/// Turns JSON into template values as Python's <c>json.loads</c> does: objects keep their key order,
/// numbers written with a fraction or exponent become floats, the others ints.
/// </summary>
internal static class JsonValues
{
    public static object? FromNode(JsonNode? node)
    {
        switch (node)
        {
            case null:
                return null;
            case JsonObject obj:
                var dict = new PyDict();
                foreach (var kv in obj) dict.Set(kv.Key, FromNode(kv.Value));
                return dict;
            case JsonArray arr:
                var items = new List<object?>(arr.Count);
                foreach (var item in arr) items.Add(FromNode(item));
                return new PyList(items);
            case JsonValue value:
                if (value.TryGetValue(out JsonElement element)) return FromElement(element);
                if (value.TryGetValue(out string? s)) return s;
                if (value.TryGetValue(out bool b)) return b;
                if (value.TryGetValue(out long l)) return l;
                if (value.TryGetValue(out int i)) return (long)i;
                if (value.TryGetValue(out double d)) return d;
                if (value.TryGetValue(out float f)) return (double)f;
                if (value.TryGetValue(out decimal m)) return (double)m;
                return FromElement(JsonSerializer.SerializeToElement(value));
            default:
                throw new ArgumentException($"unsupported JSON node {node.GetType().Name}");
        }
    }

    public static object? FromElement(JsonElement e)
    {
        switch (e.ValueKind)
        {
            case JsonValueKind.Object:
                var dict = new PyDict();
                foreach (var p in e.EnumerateObject()) dict.Set(p.Name, FromElement(p.Value));
                return dict;
            case JsonValueKind.Array:
                var items = new List<object?>();
                foreach (var item in e.EnumerateArray()) items.Add(FromElement(item));
                return new PyList(items);
            case JsonValueKind.String:
                return e.GetString();
            case JsonValueKind.True:
                return true;
            case JsonValueKind.False:
                return false;
            case JsonValueKind.Null:
            case JsonValueKind.Undefined:
                return null;
            case JsonValueKind.Number:
                string raw = e.GetRawText();
                if (raw.IndexOfAny(['.', 'e', 'E']) < 0 && long.TryParse(raw, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long l))
                    return l;
                return double.Parse(raw, NumberStyles.Float, CultureInfo.InvariantCulture);
            default:
                return null;
        }
    }
}
