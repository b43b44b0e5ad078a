using System.Globalization;
using System.Text;

namespace Cria.Chat.Jinja;

/// <summary>
/// Python's <c>json.dumps(x, ensure_ascii, indent, separators, sort_keys)</c>, which Hugging Face's
/// <c>tojson</c> filter is: keys in insertion order, separators <c>", "</c>/<c>": "</c> (<c>","</c> with an indent),
/// floats as Python prints them, only <c>"</c>, <c>\</c> and control characters escaped unless ensure_ascii.
/// </summary>
internal sealed class PyJson
{
    private readonly bool _ensureAscii;
    private readonly string? _indent;
    private readonly string _itemSeparator;
    private readonly string _keySeparator;
    private readonly bool _sortKeys;

    public PyJson(bool ensureAscii = false, string? indent = null, string? itemSeparator = null, string? keySeparator = null, bool sortKeys = false)
    {
        _ensureAscii = ensureAscii;
        _indent = indent;
        _itemSeparator = itemSeparator ?? (indent is null ? ", " : ",");
        _keySeparator = keySeparator ?? ": ";
        _sortKeys = sortKeys;
    }

    public string Dumps(object? value)
    {
        var sb = new StringBuilder();
        Write(sb, value, 0);
        return sb.ToString();
    }

    private void NewLine(StringBuilder sb, int level)
    {
        sb.Append('\n');
        for (int i = 0; i < level; i++) sb.Append(_indent);
    }

    private void Write(StringBuilder sb, object? v, int level)
    {
        switch (v)
        {
            case null: sb.Append("null"); break;
            case bool b: sb.Append(b ? "true" : "false"); break;
            case long l: sb.Append(l.ToString(CultureInfo.InvariantCulture)); break;
            case double d: sb.Append(FloatText(d)); break;
            case string s: WriteString(sb, s); break;
            case PyList list:
                if (list.Count == 0) { sb.Append("[]"); break; }
                sb.Append('[');
                for (int i = 0; i < list.Count; i++)
                {
                    if (i > 0) sb.Append(_itemSeparator);
                    if (_indent != null) NewLine(sb, level + 1);
                    Write(sb, list[i], level + 1);
                }
                if (_indent != null) NewLine(sb, level);
                sb.Append(']');
                break;
            case PyDict dict:
                if (dict.Count == 0) { sb.Append("{}"); break; }
                sb.Append('{');
                IEnumerable<KeyValuePair<object?, object?>> pairs = dict.Pairs;
                if (_sortKeys)
                {
                    var sorted = pairs.ToList();
                    sorted.Sort((x, y) => PyValue.Equals(x.Key, y.Key) ? 0 : PyValue.Compare("<", x.Key, y.Key) ? -1 : 1);
                    pairs = sorted;
                }
                bool first = true;
                foreach (var kv in pairs)
                {
                    if (!first) sb.Append(_itemSeparator);
                    first = false;
                    if (_indent != null) NewLine(sb, level + 1);
                    WriteString(sb, KeyText(kv.Key));
                    sb.Append(_keySeparator);
                    Write(sb, kv.Value, level + 1);
                }
                if (_indent != null) NewLine(sb, level);
                sb.Append('}');
                break;
            default:
                throw ChatTemplateException.Type($"Object of type {PyValue.TypeName(v)} is not JSON serializable");
        }
    }

    private static string FloatText(double d) =>
        double.IsNaN(d) ? "NaN" : double.IsPositiveInfinity(d) ? "Infinity" : double.IsNegativeInfinity(d) ? "-Infinity" : PyFloat.Repr(d);

    private static string KeyText(object? key) => key switch
    {
        string s => s,
        null => "null",
        bool b => b ? "true" : "false",
        long l => l.ToString(CultureInfo.InvariantCulture),
        double d => FloatText(d),
        _ => throw ChatTemplateException.Type($"keys must be str, int, float, bool or None, not {PyValue.TypeName(key)}"),
    };

    private void WriteString(StringBuilder sb, string s)
    {
        sb.Append('"');
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    if (c < 0x20 || (_ensureAscii && c > 0x7E))
                        sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else
                        sb.Append(c);
                    break;
            }
        }
        sb.Append('"');
    }
}
