namespace Cria.Chat.Jinja;

/// <summary>Evaluated arguments of a call, filter or test: positional values and keyword values in order.</summary>
internal sealed class CallArgs
{
    public static readonly CallArgs Empty = new();

    public CallArgs() { }

    public CallArgs(List<object?> positional, List<KeyValuePair<string, object?>>? named = null)
    {
        Positional = positional;
        Named = named ?? new();
    }

    public List<object?> Positional { get; } = new();
    public List<KeyValuePair<string, object?>> Named { get; } = new();

    public int Count => Positional.Count + Named.Count;

    /// <summary>Python-style binding: the argument at <paramref name="position"/>, else the keyword <paramref name="name"/>, else the default.</summary>
    public object? Get(int position, string name, object? defaultValue = null)
    {
        if (position >= 0 && position < Positional.Count) return Positional[position];
        foreach (var kv in Named)
            if (kv.Key == name) return kv.Value;
        return defaultValue;
    }

    public bool Has(int position, string name)
    {
        if (position >= 0 && position < Positional.Count) return true;
        foreach (var kv in Named)
            if (kv.Key == name) return true;
        return false;
    }

    /// <summary>Rejects more positional arguments than <paramref name="names"/> and keywords not among them.</summary>
    public CallArgs Check(string function, params string[] names)
    {
        if (Positional.Count > names.Length)
            throw ChatTemplateException.Type($"{function}() takes at most {names.Length} argument(s) ({Positional.Count} given)");
        foreach (var kv in Named)
        {
            int i = Array.IndexOf(names, kv.Key);
            if (i < 0) throw ChatTemplateException.Type($"{function}() got an unexpected keyword argument '{kv.Key}'");
            if (i < Positional.Count) throw ChatTemplateException.Type($"{function}() got multiple values for argument '{kv.Key}'");
        }
        return this;
    }

    /// <summary>The arguments from <paramref name="skip"/> on (for filters and tests that pass the rest along).</summary>
    public CallArgs Skip(int skip) =>
        new(Positional.Skip(skip).ToList(), new List<KeyValuePair<string, object?>>(Named));

    public static CallArgs Of(params object?[] positional) => new(new List<object?>(positional));
}
