namespace Cria.Chat.Jinja;

/// <summary>Jinja2's global functions: <c>range</c>, <c>namespace</c>, <c>dict</c>, <c>joiner</c>, <c>cycler</c>.</summary>
internal static class JinjaGlobals
{
    /// <summary>The sandbox's limit on <c>range()</c> length.</summary>
    public const long MaxRange = 100_000;

    public static void AddTo(Scope scope)
    {
        scope.Set("range", new BuiltinFunction("range", (_, a) => Range(a)));
        scope.Set("namespace", new BuiltinFunction("namespace", (_, a) =>
        {
            var ns = new JinjaNamespace();
            foreach (var p in a.Positional)
            {
                if (p is not PyDict d) throw ChatTemplateException.Type("namespace() positional arguments must be mappings");
                foreach (var kv in d.Pairs) ns.Attributes.Set(kv.Key, kv.Value);
            }
            foreach (var kv in a.Named) ns.Attributes.Set(kv.Key, kv.Value);
            return ns;
        }));
        scope.Set("dict", new BuiltinFunction("dict", (_, a) =>
        {
            var d = new PyDict();
            foreach (var p in a.Positional)
            {
                if (p is PyDict src) foreach (var kv in src.Pairs) d.Set(kv.Key, kv.Value);
                else foreach (var pair in PyValue.Iterate(p))
                {
                    var kv = PyValue.Iterate(pair).ToList();
                    if (kv.Count != 2) throw ChatTemplateException.Type("dictionary update sequence element has wrong length");
                    d.Set(kv[0], kv[1]);
                }
            }
            foreach (var kv in a.Named) d.Set(kv.Key, kv.Value);
            return d;
        }));
        scope.Set("joiner", new BuiltinFunction("joiner", (_, a) =>
        {
            string sep = PyRepr.Str(a.Get(0, "sep", ", "));
            bool used = false;
            return new BuiltinFunction("joiner", (_, _) =>
            {
                if (used) return sep;
                used = true;
                return "";
            });
        }));
        scope.Set("cycler", new BuiltinFunction("cycler", (_, a) => Cycler(a.Positional)));
    }

    private static PyList Range(CallArgs a)
    {
        var p = a.Positional;
        if (p.Count is < 1 or > 3) throw ChatTemplateException.Type($"range expected 1 to 3 arguments, got {p.Count}");
        long start = 0, stop, step = 1;
        if (p.Count == 1) stop = PyValue.AsLong(p[0]);
        else
        {
            start = PyValue.AsLong(p[0]);
            stop = PyValue.AsLong(p[1]);
            if (p.Count == 3) step = PyValue.AsLong(p[2]);
        }
        if (step == 0) throw ChatTemplateException.Type("range() arg 3 must not be zero");
        var items = new List<object?>();
        for (long i = start; step > 0 ? i < stop : i > stop; i += step)
        {
            if (items.Count >= MaxRange) throw ChatTemplateException.Type($"Range too big. The sandbox blocks ranges larger than MAX_RANGE ({MaxRange}).");
            items.Add(i);
        }
        return new PyList(items);
    }

    private static PyDict Cycler(List<object?> items)
    {
        if (items.Count == 0) throw ChatTemplateException.Type("at least one item has to be provided");
        int pos = 0;
        var c = new PyDict();
        c.Set("next", new BuiltinFunction("next", (_, _) =>
        {
            var v = items[pos];
            pos = (pos + 1) % items.Count;
            return v;
        }));
        c.Set("reset", new BuiltinFunction("reset", (_, _) =>
        {
            pos = 0;
            return null;
        }));
        c.Set("current", new BuiltinFunction("current", (_, _) => items[pos]));
        return c;
    }
}
