namespace Cria.Chat.Jinja;

/// <summary>The <c>loop</c> variable of a for loop: index, index0, revindex, first, last, length, previtem, cycle(), changed()...</summary>
internal sealed class LoopContext : IJinjaCallable
{
    private readonly List<object?> _items;
    private readonly Func<object?, string>? _recurse;
    private object? _lastChanged = Undefined.Plain;

    public LoopContext(List<object?> items, int depth0, Func<object?, string>? recurse)
    {
        _items = items;
        Depth0 = depth0;
        _recurse = recurse;
    }

    public int Index0 { get; set; }
    public int Length => _items.Count;
    public int Depth0 { get; }

    public string Name => "loop";

    public object? GetAttribute(string name) => name switch
    {
        "index" => (long)(Index0 + 1),
        "index0" => (long)Index0,
        "revindex" => (long)(Length - Index0),
        "revindex0" => (long)(Length - Index0 - 1),
        "first" => Index0 == 0,
        "last" => Index0 == Length - 1,
        "length" => (long)Length,
        "depth" => (long)(Depth0 + 1),
        "depth0" => (long)Depth0,
        "previtem" => Index0 > 0 ? _items[Index0 - 1] : Undefined.WithMessage("there is no previous item"),
        "nextitem" => Index0 + 1 < Length ? _items[Index0 + 1] : Undefined.WithMessage("there is no next item"),
        "cycle" => new BuiltinFunction("cycle", (_, args) =>
        {
            if (args.Positional.Count == 0) throw ChatTemplateException.Type("no items for cycling given");
            return args.Positional[Index0 % args.Positional.Count];
        }),
        "changed" => new BuiltinFunction("changed", (_, args) =>
        {
            var value = new PyList(new List<object?>(args.Positional), isTuple: true);
            if (_lastChanged is PyList last && PyValue.Equals(last, value)) return false;
            _lastChanged = value;
            return true;
        }),
        _ => Undefined.Attribute(this, name),
    };

    public object? Call(Interpreter interpreter, CallArgs args)
    {
        if (_recurse is null) throw ChatTemplateException.Type("The loop must have the 'recursive' marker to be called recursively.");
        if (args.Positional.Count != 1) throw ChatTemplateException.Type("loop() takes exactly one argument");
        return _recurse(args.Positional[0]);
    }
}
