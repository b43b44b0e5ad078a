namespace Cria.Chat.Jinja;

/// <summary>
/// Python semantics of template values. Values are plain objects: <c>null</c> (None), <see cref="bool"/>,
/// <see cref="long"/> (int), <see cref="double"/> (float), <see cref="string"/>, <see cref="PyList"/>,
/// <see cref="PyDict"/>, <see cref="Undefined"/>, <see cref="JinjaNamespace"/>, <see cref="LoopContext"/>
/// and <see cref="IJinjaCallable"/>. bool counts as int, as in Python.
/// </summary>
internal static class PyValue
{
    public static string TypeName(object? v) => v switch
    {
        null => "NoneType",
        bool => "bool",
        long => "int",
        double => "float",
        string => "str",
        PyList l => l.IsTuple ? "tuple" : "list",
        PyDict => "dict",
        Undefined => "Undefined",
        JinjaNamespace => "Namespace",
        LoopContext => "LoopContext",
        Macro => "Macro",
        IJinjaCallable => "builtin_function_or_method",
        _ => v.GetType().Name,
    };

    public static bool Truthy(object? v) => v switch
    {
        null => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        string s => s.Length > 0,
        PyList l => l.Count > 0,
        PyDict d => d.Count > 0,
        Undefined => false,
        _ => true,
    };

    public static bool IsInt(object? v) => v is long or bool;
    public static bool IsNumber(object? v) => v is long or bool or double;

    public static long AsLong(object? v) => v switch
    {
        long l => l,
        bool b => b ? 1 : 0,
        _ => throw ChatTemplateException.Type($"'{TypeName(v)}' object cannot be interpreted as an integer"),
    };

    public static double AsDouble(object? v) => v switch
    {
        long l => l,
        bool b => b ? 1 : 0,
        double d => d,
        _ => throw ChatTemplateException.Type($"must be real number, not {TypeName(v)}"),
    };

    /// <summary>Python's iteration: characters of a string, items of a list, keys of a dict; Undefined is empty.</summary>
    public static IEnumerable<object?> Iterate(object? v) => v switch
    {
        string s => PyString.Chars(s),
        PyList l => l.Items,
        PyDict d => d.Keys,
        Undefined => Array.Empty<object?>(),
        _ => throw ChatTemplateException.Type($"'{TypeName(v)}' object is not iterable"),
    };

    public static bool IsIterable(object? v) => v is string or PyList or PyDict or Undefined;

    public static long Length(object? v) => v switch
    {
        string s => PyString.Length(s),
        PyList l => l.Count,
        PyDict d => d.Count,
        Undefined => 0,
        _ => throw ChatTemplateException.Type($"object of type '{TypeName(v)}' has no len()"),
    };

    public static new bool Equals(object? a, object? b)
    {
        if (a is Undefined || b is Undefined) return a is Undefined && b is Undefined;
        if (a is null || b is null) return a is null && b is null;
        if (IsNumber(a) && IsNumber(b))
        {
            if (IsInt(a) && IsInt(b)) return AsLong(a) == AsLong(b);
            return AsDouble(a) == AsDouble(b);
        }
        switch (a)
        {
            case string sa: return b is string sb && string.Equals(sa, sb, StringComparison.Ordinal);
            case PyList la:
                if (b is not PyList lb || la.IsTuple != lb.IsTuple || la.Count != lb.Count) return false;
                for (int i = 0; i < la.Count; i++)
                    if (!Equals(la[i], lb[i])) return false;
                return true;
            case PyDict da:
                if (b is not PyDict db || da.Count != db.Count) return false;
                foreach (var kv in da.Pairs)
                    if (!db.TryGet(kv.Key, out object? other) || !Equals(kv.Value, other)) return false;
                return true;
            default:
                return ReferenceEquals(a, b);
        }
    }

    /// <summary>Python's ordering comparisons <c>&lt; &lt;= &gt; &gt;=</c>.</summary>
    public static bool Compare(string op, object? a, object? b)
    {
        if (a is Undefined ua) throw ua.Error();
        if (b is Undefined ub) throw ub.Error();
        if (IsNumber(a) && IsNumber(b))
        {
            if (IsInt(a) && IsInt(b)) return Apply(op, AsLong(a).CompareTo(AsLong(b)));
            double x = AsDouble(a), y = AsDouble(b);
            return op switch { "<" => x < y, "<=" => x <= y, ">" => x > y, _ => x >= y };
        }
        if (a is string sa && b is string sb) return Apply(op, PyString.CompareOrdinal(sa, sb));
        if (a is PyList la && b is PyList lb && la.IsTuple == lb.IsTuple)
        {
            for (int i = 0; i < Math.Min(la.Count, lb.Count); i++)
            {
                if (Equals(la[i], lb[i])) continue;
                return Compare(op, la[i], lb[i]);
            }
            return Apply(op, la.Count.CompareTo(lb.Count));
        }
        throw ChatTemplateException.Type($"'{op}' not supported between instances of '{TypeName(a)}' and '{TypeName(b)}'");
    }

    private static bool Apply(string op, int c) => op switch
    {
        "<" => c < 0,
        "<=" => c <= 0,
        ">" => c > 0,
        _ => c >= 0,
    };

    /// <summary>Python's <c>in</c>: substring, list element, dict key.</summary>
    public static bool Contains(object? container, object? item)
    {
        switch (container)
        {
            case string s:
                if (item is not string sub) throw ChatTemplateException.Type($"'in <string>' requires string as left operand, not {TypeName(item)}");
                return s.Contains(sub, StringComparison.Ordinal);
            case PyList l:
                foreach (var x in l.Items)
                    if (Equals(x, item)) return true;
                return false;
            case PyDict d:
                return d.ContainsKey(item);
            case Undefined:
                return false;
            default:
                throw ChatTemplateException.Type($"argument of type '{TypeName(container)}' is not iterable");
        }
    }
}
