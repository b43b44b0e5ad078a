using System.Text;

namespace Cria.Chat.Jinja;

/// <summary>
/// Python methods reachable as attributes: <c>str</c> (strip, split, startswith, upper, replace...),
/// <c>dict</c> (items, keys, values, get) and <c>list</c> (index, count). Methods that mutate
/// (<c>list.append</c>, <c>dict.update</c>...) are refused as Hugging Face's ImmutableSandboxedEnvironment does.
/// </summary>
internal static class BuiltinMethods
{
    private static readonly HashSet<string> UnsafeList = ["append", "clear", "extend", "insert", "pop", "remove", "reverse", "sort"];
    private static readonly HashSet<string> UnsafeDict = ["clear", "pop", "popitem", "setdefault", "update"];

    public static bool TryGet(object? obj, string name, out object? method)
    {
        method = obj switch
        {
            string s => StringMethod(s, name),
            PyDict d => DictMethod(d, name),
            PyList l => ListMethod(l, name),
            _ => null,
        };
        return method != null;
    }

    private static BuiltinFunction Fn(string name, Func<CallArgs, object?> body) => new(name, (_, args) => body(args));

    private static string? OptString(object? v, string method) => v switch
    {
        null => null,
        string s => s,
        _ => throw ChatTemplateException.Type($"{method} arg must be None or str"),
    };

    private static string Str(object? v, string method) =>
        v as string ?? throw ChatTemplateException.Type($"{method}() argument must be str, not {PyValue.TypeName(v)}");

    private static object? StringMethod(string s, string name) => name switch
    {
        "strip" => Fn(name, a => PyString.Strip(s, OptString(a.Check(name, "chars").Get(0, "chars"), name))),
        "lstrip" => Fn(name, a => PyString.Strip(s, OptString(a.Check(name, "chars").Get(0, "chars"), name), right: false)),
        "rstrip" => Fn(name, a => PyString.Strip(s, OptString(a.Check(name, "chars").Get(0, "chars"), name), left: false)),
        "split" => Fn(name, a => PyString.Split(s, OptString(a.Check(name, "sep", "maxsplit").Get(0, "sep"), name), PyValue.AsLong(a.Get(1, "maxsplit", -1L)))),
        "rsplit" => Fn(name, a => PyString.RSplit(s, OptString(a.Check(name, "sep", "maxsplit").Get(0, "sep"), name), PyValue.AsLong(a.Get(1, "maxsplit", -1L)))),
        "splitlines" => Fn(name, a => new PyList(PyString.SplitLines(s, PyValue.Truthy(a.Check(name, "keepends").Get(0, "keepends", false))).Cast<object?>().ToList())),
        "startswith" => Fn(name, a => Affix(s, a, name, (x, p) => x.StartsWith(p, StringComparison.Ordinal))),
        "endswith" => Fn(name, a => Affix(s, a, name, (x, p) => x.EndsWith(p, StringComparison.Ordinal))),
        "upper" => Fn(name, _ => PyString.Upper(s)),
        "lower" or "casefold" => Fn(name, _ => PyString.Lower(s)),
        "title" => Fn(name, _ => PyString.Title(s)),
        "capitalize" => Fn(name, _ => PyString.Capitalize(s)),
        "swapcase" => Fn(name, _ => new string(s.Select(c => char.IsUpper(c) ? char.ToLowerInvariant(c) : char.IsLower(c) ? char.ToUpperInvariant(c) : c).ToArray())),
        "replace" => Fn(name, a =>
        {
            a.Check(name, "old", "new", "count");
            return PyString.Replace(s, Str(a.Get(0, "old"), name), Str(a.Get(1, "new"), name), PyValue.AsLong(a.Get(2, "count", -1L)));
        }),
        "find" => Fn(name, a => (long)IndexOf(s, Str(a.Get(0, "sub"), name), last: false)),
        "rfind" => Fn(name, a => (long)IndexOf(s, Str(a.Get(0, "sub"), name), last: true)),
        "index" => Fn(name, a => IndexOf(s, Str(a.Get(0, "sub"), name), last: false) is var i && i >= 0 ? (long)i : throw ChatTemplateException.Type("substring not found")),
        "rindex" => Fn(name, a => IndexOf(s, Str(a.Get(0, "sub"), name), last: true) is var i && i >= 0 ? (long)i : throw ChatTemplateException.Type("substring not found")),
        "count" => Fn(name, a => CountOf(s, Str(a.Get(0, "sub"), name))),
        "join" => Fn(name, a =>
        {
            var sb = new StringBuilder();
            bool first = true;
            foreach (var item in PyValue.Iterate(a.Get(0, "iterable")))
            {
                if (!first) sb.Append(s);
                first = false;
                sb.Append(item as string ?? throw ChatTemplateException.Type($"sequence item: expected str instance, {PyValue.TypeName(item)} found"));
            }
            return sb.ToString();
        }),
        "isdigit" or "isdecimal" or "isnumeric" => Fn(name, _ => s.Length > 0 && s.All(char.IsDigit)),
        "isalpha" => Fn(name, _ => s.Length > 0 && s.All(char.IsLetter)),
        "isalnum" => Fn(name, _ => s.Length > 0 && s.All(char.IsLetterOrDigit)),
        "isspace" => Fn(name, _ => s.Length > 0 && s.All(c => PyString.IsSpace(c))),
        "islower" => Fn(name, _ => s.Any(char.IsLower) && !s.Any(char.IsUpper)),
        "isupper" => Fn(name, _ => s.Any(char.IsUpper) && !s.Any(char.IsLower)),
        "removeprefix" => Fn(name, a => Str(a.Get(0, "prefix"), name) is var p && p.Length > 0 && s.StartsWith(p, StringComparison.Ordinal) ? s[p.Length..] : s),
        "removesuffix" => Fn(name, a => Str(a.Get(0, "suffix"), name) is var p && p.Length > 0 && s.EndsWith(p, StringComparison.Ordinal) ? s[..^p.Length] : s),
        "zfill" => Fn(name, a =>
        {
            int width = (int)PyValue.AsLong(a.Get(0, "width"));
            if (s.Length >= width) return s;
            int signLength = s.Length > 0 && s[0] is '+' or '-' ? 1 : 0;
            return s[..signLength] + new string('0', width - s.Length) + s[signLength..];
        }),
        "center" => Fn(name, a => Center(s, (int)PyValue.AsLong(a.Get(0, "width")), a.Get(1, "fillchar", " ") as string ?? " ")),
        "ljust" => Fn(name, a => s.PadRight((int)PyValue.AsLong(a.Get(0, "width")), (a.Get(1, "fillchar", " ") as string ?? " ")[0])),
        "rjust" => Fn(name, a => s.PadLeft((int)PyValue.AsLong(a.Get(0, "width")), (a.Get(1, "fillchar", " ") as string ?? " ")[0])),
        "partition" => Fn(name, a => Partition(s, Str(a.Get(0, "sep"), name), last: false)),
        "rpartition" => Fn(name, a => Partition(s, Str(a.Get(0, "sep"), name), last: true)),
        _ => null,
    };

    private static bool Affix(string s, CallArgs a, string name, Func<string, string, bool> test)
    {
        object? arg = a.Get(0, "prefix");
        string target = s;
        if (a.Positional.Count > 1)
        {
            long start = PyValue.AsLong(a.Positional[1]);
            long? end = a.Positional.Count > 2 && a.Positional[2] != null ? PyValue.AsLong(a.Positional[2]) : null;
            target = PyString.Slice(s, start, end, null);
        }
        if (arg is PyList { IsTuple: true } options) return options.Items.Any(o => test(target, Str(o, name)));
        if (arg is string p) return test(target, p);
        throw ChatTemplateException.Type($"{name} first arg must be str or a tuple of str, not {PyValue.TypeName(arg)}");
    }

    private static int IndexOf(string s, string sub, bool last)
    {
        int i = last ? s.LastIndexOf(sub, StringComparison.Ordinal) : s.IndexOf(sub, StringComparison.Ordinal);
        return i < 0 ? -1 : (int)PyString.Length(s[..i]);
    }

    private static long CountOf(string s, string sub)
    {
        if (sub.Length == 0) return PyString.Length(s) + 1;
        long n = 0;
        for (int i = s.IndexOf(sub, StringComparison.Ordinal); i >= 0; i = s.IndexOf(sub, i + sub.Length, StringComparison.Ordinal)) n++;
        return n;
    }

    public static string Center(string s, int width, string fill)
    {
        int len = (int)PyString.Length(s);
        if (width <= len) return s;
        int marg = width - len;
        int left = marg / 2 + (marg & width & 1);
        return string.Concat(Enumerable.Repeat(fill, left)) + s + string.Concat(Enumerable.Repeat(fill, marg - left));
    }

    private static PyList Partition(string s, string sep, bool last)
    {
        int i = last ? s.LastIndexOf(sep, StringComparison.Ordinal) : s.IndexOf(sep, StringComparison.Ordinal);
        if (i < 0) return last ? PyList.Tuple("", "", s) : PyList.Tuple(s, "", "");
        return PyList.Tuple(s[..i], sep, s[(i + sep.Length)..]);
    }

    private static object? DictMethod(PyDict d, string name)
    {
        if (UnsafeDict.Contains(name)) return Undefined.WithMessage($"access to attribute '{name}' of 'dict' object is unsafe.");
        return name switch
        {
            "items" => Fn(name, _ => new PyList(d.Pairs.Select(kv => (object?)PyList.Tuple(kv.Key, kv.Value)).ToList()) { ViewName = "dict_items" }),
            "keys" => Fn(name, _ => new PyList(d.Keys.ToList()) { ViewName = "dict_keys" }),
            "values" => Fn(name, _ => new PyList(d.Values.ToList()) { ViewName = "dict_values" }),
            "get" => Fn(name, a => d.TryGet(a.Get(0, "key"), out object? v) ? v : a.Get(1, "default")),
            "copy" => Fn(name, _ => d.Copy()),
            _ => null,
        };
    }

    private static object? ListMethod(PyList l, string name)
    {
        if (UnsafeList.Contains(name) && !l.IsTuple)
            return Undefined.WithMessage($"access to attribute '{name}' of 'list' object is unsafe.");
        return name switch
        {
            "index" => Fn(name, a =>
            {
                var x = a.Get(0, "value");
                int i = l.Items.FindIndex(item => PyValue.Equals(item, x));
                return i >= 0 ? (long)i : throw ChatTemplateException.Type($"{PyRepr.Repr(x)} is not in list");
            }),
            "count" => Fn(name, a => (long)l.Items.Count(item => PyValue.Equals(item, a.Get(0, "value")))),
            "copy" when !l.IsTuple => Fn(name, _ => new PyList(new List<object?>(l.Items))),
            _ => null,
        };
    }
}
