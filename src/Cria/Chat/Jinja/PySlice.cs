namespace Cria.Chat.Jinja;

/// <summary>Python slice semantics (<c>[start:stop:step]</c> with negative and omitted bounds).</summary>
internal static class PySlice
{
    public static IEnumerable<int> Indices(int length, long? start, long? stop, long? step)
    {
        long st = step ?? 1;
        if (st == 0) throw ChatTemplateException.Type("slice step cannot be zero");
        long lower = st < 0 ? -1 : 0;
        long upper = st < 0 ? length - 1 : length;
        long a = Adjust(start, st < 0 ? upper : lower, length, lower, upper);
        long b = Adjust(stop, st < 0 ? lower : upper, length, lower, upper);
        if (st > 0)
        {
            for (long i = a; i < b; i += st) yield return (int)i;
        }
        else
        {
            for (long i = a; i > b; i += st) yield return (int)i;
        }
    }

    private static long Adjust(long? v, long dflt, int length, long lower, long upper)
    {
        if (v is null) return dflt;
        long x = v.Value;
        if (x < 0)
        {
            x += length;
            if (x < lower) x = lower;
        }
        else if (x > upper)
        {
            x = upper;
        }
        return x;
    }

    public static PyList Slice(PyList list, long? start, long? stop, long? step)
    {
        var items = new List<object?>();
        foreach (int k in Indices(list.Count, start, stop, step)) items.Add(list[k]);
        return new PyList(items, list.IsTuple);
    }
}
