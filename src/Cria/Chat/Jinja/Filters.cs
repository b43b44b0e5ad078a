using System.Globalization;
using System.Text;

namespace Cria.Chat.Jinja;

/// <summary>
/// Jinja2's built-in filters (as of 3.1), with Hugging Face's <c>tojson</c> (Python <c>json.dumps</c>,
/// non-ASCII kept, keys unsorted). Filters that return generators in Jinja (select, map, ...) return lists here.
/// </summary>
internal static class Filters
{
    public delegate object? Filter(Interpreter interpreter, object? value, CallArgs args);

    private static readonly Dictionary<string, Filter> All = new(StringComparer.Ordinal)
    {
        ["abs"] = (_, v, a) => Abs(v),
        ["attr"] = (i, v, a) => i.GetAttr(v, a.Get(0, "name") as string ?? throw ChatTemplateException.Type("attribute name must be a string")),
        ["batch"] = (_, v, a) => Batch(v, PyValue.AsLong(a.Get(0, "linecount")), a.Has(1, "fill_with") ? a.Get(1, "fill_with") : Undefined.Plain),
        ["capitalize"] = (_, v, a) => PyString.Capitalize(PyRepr.Str(v)),
        ["center"] = (_, v, a) => BuiltinMethods.Center(PyRepr.Str(v), (int)PyValue.AsLong(a.Get(0, "width", 80L)), " "),
        ["count"] = (_, v, a) => PyValue.Length(v),
        ["default"] = Default,
        ["d"] = Default,
        ["dictsort"] = DictSort,
        ["escape"] = (_, v, a) => Escape(v),
        ["e"] = (_, v, a) => Escape(v),
        ["forceescape"] = (_, v, a) => Escape(v),
        ["first"] = (_, v, a) => PyValue.Iterate(v).Select(x => (object?)x).DefaultIfEmpty(Undefined.WithMessage("No first item, sequence was empty.")).First(),
        ["float"] = (_, v, a) => ToFloat(v, a.Get(0, "default", 0.0)),
        ["format"] = (_, v, a) => PyFormat.Percent(PyRepr.Str(v), a.Named.Count > 0 ? NamedToDict(a) : new PyList(new List<object?>(a.Positional), isTuple: true)),
        ["indent"] = (_, v, a) => Indent(v is Undefined u ? throw u.Error() : PyRepr.Str(v), a.Get(0, "width", 4L), PyValue.Truthy(a.Get(1, "first", false)), PyValue.Truthy(a.Get(2, "blank", false))),
        ["int"] = (_, v, a) => ToInt(v, a.Get(0, "default", 0L), PyValue.AsLong(a.Get(1, "base", 10L))),
        ["items"] = (_, v, a) => v switch
        {
            Undefined => new PyList(),
            PyDict d => new PyList(d.Pairs.Select(kv => (object?)PyList.Tuple(kv.Key, kv.Value)).ToList()),
            _ => throw ChatTemplateException.Type("Can only get item pairs from a mapping."),
        },
        ["join"] = Join,
        ["last"] = (_, v, a) => Last(v),
        ["length"] = (_, v, a) => PyValue.Length(v),
        ["list"] = (_, v, a) => new PyList(PyValue.Iterate(v).ToList()),
        ["lower"] = (_, v, a) => PyString.Lower(PyRepr.Str(v)),
        ["map"] = Map,
        ["max"] = (i, v, a) => MinMax(i, v, a, max: true),
        ["min"] = (i, v, a) => MinMax(i, v, a, max: false),
        ["pprint"] = (_, v, a) => PyRepr.Repr(v),
        ["reject"] = (i, v, a) => SelectOrReject(i, v, a, lookupAttr: false, keep: false),
        ["rejectattr"] = (i, v, a) => SelectOrReject(i, v, a, lookupAttr: true, keep: false),
        ["replace"] = (_, v, a) => PyString.Replace(PyRepr.Str(v), PyRepr.Str(a.Get(0, "old")), PyRepr.Str(a.Get(1, "new")),
            a.Get(2, "count") is { } c ? PyValue.AsLong(c) : -1),
        ["reverse"] = (_, v, a) => v switch
        {
            string s => PyString.Slice(s, null, null, -1),
            _ => new PyList(PyValue.Iterate(v).Reverse().ToList()),
        },
        ["round"] = (_, v, a) => Round(v, PyValue.AsLong(a.Get(0, "precision", 0L)), PyRepr.Str(a.Get(1, "method", "common"))),
        ["safe"] = (_, v, a) => PyRepr.Str(v),
        ["select"] = (i, v, a) => SelectOrReject(i, v, a, lookupAttr: false, keep: true),
        ["selectattr"] = (i, v, a) => SelectOrReject(i, v, a, lookupAttr: true, keep: true),
        ["slice"] = (_, v, a) => SliceFilter(v, PyValue.AsLong(a.Get(0, "slices")), a.Has(1, "fill_with") ? a.Get(1, "fill_with") : Undefined.Plain),
        ["sort"] = Sort,
        ["string"] = (_, v, a) => PyRepr.Str(v),
        ["striptags"] = (_, v, a) => string.Join(" ", PyString.Split(System.Text.RegularExpressions.Regex.Replace(PyRepr.Str(v), "<!--.*?-->|<[^>]*>", "", System.Text.RegularExpressions.RegexOptions.Singleline), null, -1).Items),
        ["sum"] = Sum,
        ["title"] = (_, v, a) => PyString.JinjaTitle(PyRepr.Str(v)),
        ["tojson"] = ToJson,
        ["trim"] = (_, v, a) => PyString.Strip(PyRepr.Str(v), a.Get(0, "chars") is { } c ? PyRepr.Str(c) : null),
        ["truncate"] = Truncate,
        ["unique"] = Unique,
        ["upper"] = (_, v, a) => PyString.Upper(PyRepr.Str(v)),
        ["wordcount"] = (_, v, a) => (long)PyString.Split(PyRepr.Str(v), null, -1).Count,
    };

    public static bool TryGet(string name, out Filter filter) => All.TryGetValue(name, out filter!);

    public static bool Exists(string name) => All.ContainsKey(name);

    private static object? Abs(object? v) => v switch
    {
        bool b => (object)(b ? 1L : 0L),
        long l => (object)(l == long.MinValue ? throw ChatTemplateException.Type("integer overflow") : Math.Abs(l)),
        double d => (object)Math.Abs(d),
        Undefined u => throw u.Error(),
        _ => throw ChatTemplateException.Type($"bad operand type for abs(): '{PyValue.TypeName(v)}'"),
    };

    private static object? Default(Interpreter _, object? v, CallArgs a)
    {
        object? fallback = a.Get(0, "default_value", "");
        bool boolean = PyValue.Truthy(a.Get(1, "boolean", false));
        if (v is Undefined || (boolean && !PyValue.Truthy(v))) return fallback;
        return v;
    }

    private static string Escape(object? v)
    {
        string s = PyRepr.Str(v);
        return s.Replace("&", "&amp;").Replace("<", "&lt;").Replace(">", "&gt;").Replace("\"", "&#34;").Replace("'", "&#39;");
    }

    private static PyDict NamedToDict(CallArgs a)
    {
        var d = new PyDict();
        foreach (var kv in a.Named) d.Set(kv.Key, kv.Value);
        return d;
    }

    private static object? Last(object? v)
    {
        List<object?> items = v switch
        {
            Undefined => new List<object?>(),
            _ => PyValue.Iterate(v).ToList(),
        };
        return items.Count > 0 ? items[^1] : Undefined.WithMessage("No last item, sequence was empty.");
    }

    private static object? Batch(object? v, long count, object? fill)
    {
        if (count <= 0) throw ChatTemplateException.Type("batch size must be positive");
        var result = new List<object?>();
        var current = new List<object?>();
        foreach (var item in PyValue.Iterate(v))
        {
            if (current.Count == count)
            {
                result.Add(new PyList(current));
                current = new List<object?>();
            }
            current.Add(item);
        }
        if (current.Count > 0)
        {
            if (fill is not Undefined)
                while (current.Count < count) current.Add(fill);
            result.Add(new PyList(current));
        }
        return new PyList(result);
    }

    private static object? SliceFilter(object? v, long slices, object? fill)
    {
        var seq = PyValue.Iterate(v).ToList();
        int length = seq.Count;
        long itemsPerSlice = length / slices;
        long slicesWithExtra = length % slices;
        long offset = 0;
        var result = new List<object?>();
        for (long n = 0; n < slices; n++)
        {
            long start = offset + n * itemsPerSlice;
            if (n < slicesWithExtra) offset++;
            long end = offset + (n + 1) * itemsPerSlice;
            var tmp = seq.Skip((int)start).Take((int)(end - start)).ToList();
            if (fill is not Undefined && n >= slicesWithExtra) tmp.Add(fill);
            result.Add(new PyList(tmp));
        }
        return new PyList(result);
    }

    private static object? ToFloat(object? v, object? fallback)
    {
        switch (v)
        {
            case Undefined u: throw u.Error();
            case double d: return d;
            case long or bool: return PyValue.AsDouble(v);
            case string s:
                string t = s.Trim().Replace("_", "");
                if (t.Length > 0 && !t.Contains(' ') && double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out double r)) return r;
                string lower = t.ToLowerInvariant();
                if (lower is "inf" or "+inf" or "infinity" or "+infinity") return double.PositiveInfinity;
                if (lower is "-inf" or "-infinity") return double.NegativeInfinity;
                if (lower is "nan" or "+nan" or "-nan") return double.NaN;
                return fallback;
            default:
                return fallback;
        }
    }

    private static object? ToInt(object? v, object? fallback, long numberBase)
    {
        switch (v)
        {
            case Undefined u: throw u.Error();
            case long or bool: return PyValue.AsLong(v);
            case double d:
                if (double.IsNaN(d) || double.IsInfinity(d)) throw ChatTemplateException.Type("cannot convert float infinity or NaN to integer");
                return (long)Math.Truncate(d);
            case string s:
            {
                string t = PyString.Strip(s, null).Replace("_", "");
                bool negative = t.StartsWith('-');
                string digits = t.TrimStart('+', '-');
                if (t.Length - digits.Length <= 1 && digits.Length > 0)
                {
                    int radix = (int)numberBase;
                    string lowered = digits.ToLowerInvariant();
                    if ((radix == 16 || radix == 0) && lowered.StartsWith("0x")) { radix = 16; digits = digits[2..]; }
                    else if ((radix == 8 || radix == 0) && lowered.StartsWith("0o")) { radix = 8; digits = digits[2..]; }
                    else if ((radix == 2 || radix == 0) && lowered.StartsWith("0b")) { radix = 2; digits = digits[2..]; }
                    else if (radix == 0) radix = 10;
                    if (digits.Length > 0 && radix is 2 or 8 or 10 or 16)
                    {
                        try
                        {
                            long value = radix == 10
                                ? long.Parse(digits, NumberStyles.None, CultureInfo.InvariantCulture)
                                : Convert.ToInt64(digits, radix);
                            return negative ? -value : value;
                        }
                        catch (FormatException) { }
                        catch (OverflowException) { }
                        catch (ArgumentException) { }
                    }
                }
                // "42.23"|int is 42: Jinja retries through float.
                if (ToFloat(s, null) is double f && !double.IsNaN(f) && !double.IsInfinity(f)) return (long)Math.Truncate(f);
                return fallback;
            }
            default:
                return fallback;
        }
    }

    private static object? Round(object? v, long precision, string method)
    {
        if (method is not ("common" or "ceil" or "floor")) throw ChatTemplateException.Type("method must be common, ceil or floor");
        if (v is Undefined u) throw u.Error();
        if (!PyValue.IsNumber(v)) throw ChatTemplateException.Type($"type {PyValue.TypeName(v)} doesn't define __round__ method");
        if (method == "common")
        {
            if (PyValue.IsInt(v))
            {
                long x = PyValue.AsLong(v);
                if (precision >= 0) return x;
                return (long)PyFloat.Round(x, precision);
            }
            return PyFloat.Round((double)v!, precision);
        }
        double scale = Math.Pow(10, precision);
        double scaled = PyValue.AsDouble(v) * scale;
        return (method == "ceil" ? Math.Ceiling(scaled) : Math.Floor(scaled)) / scale;
    }

    private static string Indent(string s, object? width, bool first, bool blank)
    {
        string indention = width is string w ? w : new string(' ', (int)Math.Max(0, PyValue.AsLong(width)));
        s += "\n";
        var lines = PyString.SplitLines(s);
        string rv;
        if (blank)
        {
            rv = string.Join("\n" + indention, lines);
        }
        else
        {
            var sb = new StringBuilder(lines.Count > 0 ? lines[0] : "");
            if (lines.Count > 1)
            {
                sb.Append('\n');
                sb.Append(string.Join("\n", lines.Skip(1).Select(line => line.Length > 0 ? indention + line : line)));
            }
            rv = sb.ToString();
        }
        return first ? indention + rv : rv;
    }

    /// <summary>Jinja's <c>make_attrgetter</c>: dotted path, integer parts as indices, through <c>getitem</c>.</summary>
    private static Func<object?, object?> AttrGetter(Interpreter interp, object? attribute, object? dflt = null)
    {
        var parts = attribute is string s
            ? s.Split('.').Select(p => long.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out long n) ? (object?)n : p).ToList()
            : new List<object?> { attribute };
        return item =>
        {
            foreach (var part in parts) item = interp.GetItem(item, part);
            if (dflt != null && item is Undefined) item = dflt;
            return item;
        };
    }

    private static object? Join(Interpreter interp, object? v, CallArgs a)
    {
        string sep = PyRepr.Str(a.Get(0, "d", ""));
        object? attribute = a.Get(1, "attribute");
        var items = PyValue.Iterate(v);
        if (attribute != null)
        {
            var getter = AttrGetter(interp, attribute);
            items = items.Select(getter).ToList();
        }
        return string.Join(sep, items.Select(PyRepr.Str));
    }

    private static object? Map(Interpreter interp, object? v, CallArgs a)
    {
        Func<object?, object?> func;
        if (a.Positional.Count == 0 && a.Named.Any(kv => kv.Key == "attribute"))
        {
            var getter = AttrGetter(interp, a.Get(-1, "attribute"), a.Get(-1, "default"));
            func = getter;
        }
        else
        {
            if (a.Positional.Count == 0) throw ChatTemplateException.Type("map requires a filter argument");
            string name = a.Positional[0] as string ?? throw ChatTemplateException.Type("filter name must be a string");
            var rest = a.Skip(1);
            func = item => interp.ApplyFilter(name, item, rest);
        }
        if (!PyValue.Truthy(v)) return new PyList();
        return new PyList(PyValue.Iterate(v).Select(func).ToList());
    }

    private static object? SelectOrReject(Interpreter interp, object? v, CallArgs a, bool lookupAttr, bool keep)
    {
        Func<object?, object?> transform = x => x;
        int off = 0;
        if (lookupAttr)
        {
            if (a.Positional.Count == 0) throw ChatTemplateException.Type("Missing parameter for attribute name");
            transform = AttrGetter(interp, a.Positional[0]);
            off = 1;
        }
        Func<object?, bool> test;
        if (a.Positional.Count > off)
        {
            string name = a.Positional[off] as string ?? throw ChatTemplateException.Type("test name must be a string");
            var rest = a.Skip(off + 1);
            test = x => interp.RunTest(name, x, rest);
        }
        else
        {
            test = PyValue.Truthy;
        }
        if (!PyValue.Truthy(v)) return new PyList();
        return new PyList(PyValue.Iterate(v).Where(item => test(transform(item)) == keep).ToList());
    }

    private static Func<object?, object?> SortKey(Interpreter interp, bool caseSensitive, object? attribute)
    {
        var getter = attribute is null ? (x => x) : AttrGetter(interp, attribute);
        return item =>
        {
            var value = getter(item);
            return !caseSensitive && value is string s ? s.ToLowerInvariant() : value;
        };
    }

    private static int PyCompare(object? x, object? y) =>
        PyValue.Equals(x, y) ? 0 : PyValue.Compare("<", x, y) ? -1 : 1;

    private static object? Sort(Interpreter interp, object? v, CallArgs a)
    {
        bool reverse = PyValue.Truthy(a.Get(0, "reverse", false));
        bool caseSensitive = PyValue.Truthy(a.Get(1, "case_sensitive", false));
        var key = SortKey(interp, caseSensitive, a.Get(2, "attribute"));
        var items = PyValue.Iterate(v).Select(x => (Key: key(x), Item: x)).ToList();
        // Stable, and reverse keeps equal items in order, as Python's sorted(reverse=True).
        var sorted = reverse
            ? items.OrderByDescending(p => p.Key, Comparer<object?>.Create(PyCompare)).ToList()
            : items.OrderBy(p => p.Key, Comparer<object?>.Create(PyCompare)).ToList();
        return new PyList(sorted.Select(p => p.Item).ToList());
    }

    private static object? DictSort(Interpreter interp, object? v, CallArgs a)
    {
        if (v is not PyDict d) throw ChatTemplateException.Type("dictsort expects a mapping");
        bool caseSensitive = PyValue.Truthy(a.Get(0, "case_sensitive", false));
        string by = PyRepr.Str(a.Get(1, "by", "key"));
        bool reverse = PyValue.Truthy(a.Get(2, "reverse", false));
        int pos = by switch
        {
            "key" => 0,
            "value" => 1,
            _ => throw ChatTemplateException.Type("You can only sort by either \"key\" or \"value\""),
        };
        var pairs = d.Pairs.Select(kv => (Key: pos == 0 ? kv.Key : kv.Value, Pair: kv)).Select(p =>
            (Key: !caseSensitive && p.Key is string s ? s.ToLowerInvariant() : p.Key, p.Pair)).ToList();
        var cmp = Comparer<object?>.Create(PyCompare);
        var sorted = reverse ? pairs.OrderByDescending(p => p.Key, cmp).ToList() : pairs.OrderBy(p => p.Key, cmp).ToList();
        return new PyList(sorted.Select(p => (object?)PyList.Tuple(p.Pair.Key, p.Pair.Value)).ToList());
    }

    private static object? Unique(Interpreter interp, object? v, CallArgs a)
    {
        bool caseSensitive = PyValue.Truthy(a.Get(0, "case_sensitive", false));
        var key = SortKey(interp, caseSensitive, a.Get(1, "attribute"));
        var seen = new List<object?>();
        var result = new List<object?>();
        foreach (var item in PyValue.Iterate(v))
        {
            var k = key(item);
            if (seen.Any(s => PyValue.Equals(s, k))) continue;
            seen.Add(k);
            result.Add(item);
        }
        return new PyList(result);
    }

    private static object? MinMax(Interpreter interp, object? v, CallArgs a, bool max)
    {
        bool caseSensitive = PyValue.Truthy(a.Get(0, "case_sensitive", false));
        var key = SortKey(interp, caseSensitive, a.Get(1, "attribute"));
        object? best = null;
        object? bestKey = null;
        bool any = false;
        foreach (var item in PyValue.Iterate(v))
        {
            var k = key(item);
            if (!any || (max ? PyValue.Compare(">", k, bestKey) : PyValue.Compare("<", k, bestKey)))
            {
                best = item;
                bestKey = k;
                any = true;
            }
        }
        return any ? best : Undefined.WithMessage($"No aggregated item, sequence was empty.");
    }

    private static object? Sum(Interpreter interp, object? v, CallArgs a)
    {
        object? attribute = a.Get(0, "attribute");
        object? total = a.Get(1, "start", 0L);
        var items = PyValue.Iterate(v);
        if (attribute != null) items = items.Select(AttrGetter(interp, attribute)).ToList();
        foreach (var item in items) total = Operators.Binary("+", total, item);
        return total;
    }

    private static object? Truncate(Interpreter _, object? v, CallArgs a)
    {
        string s = PyRepr.Str(v);
        long length = PyValue.AsLong(a.Get(0, "length", 255L));
        bool killwords = PyValue.Truthy(a.Get(1, "killwords", false));
        string end = PyRepr.Str(a.Get(2, "end", "..."));
        long leeway = a.Get(3, "leeway") is { } l ? PyValue.AsLong(l) : 5;
        if (length < end.Length) throw ChatTemplateException.Type($"expected length >= {end.Length}, got {length}");
        if (leeway < 0) throw ChatTemplateException.Type($"expected leeway >= 0, got {leeway}");
        if (s.Length <= length + leeway) return s;
        if (killwords) return s[..(int)(length - end.Length)] + end;
        string cut = s[..(int)(length - end.Length)];
        int space = cut.LastIndexOf(' ');
        return (space >= 0 ? cut[..space] : cut) + end;
    }

    private static object? ToJson(Interpreter _, object? v, CallArgs a)
    {
        a.Check("tojson", "ensure_ascii", "indent", "separators", "sort_keys");
        bool ensureAscii = PyValue.Truthy(a.Get(0, "ensure_ascii", false));
        object? indentArg = a.Get(1, "indent");
        string? indent = indentArg switch
        {
            null => null,
            string s => s,
            _ => new string(' ', (int)Math.Max(0, PyValue.AsLong(indentArg))),
        };
        string? itemSep = null, keySep = null;
        if (a.Get(2, "separators") is PyList { Count: 2 } seps)
        {
            itemSep = PyRepr.Str(seps[0]);
            keySep = PyRepr.Str(seps[1]);
        }
        bool sortKeys = PyValue.Truthy(a.Get(3, "sort_keys", false));
        return new PyJson(ensureAscii, indent, itemSep, keySep, sortKeys).Dumps(v);
    }
}
