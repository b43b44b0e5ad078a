namespace Cria.Chat.Jinja;

/// <summary>A Python list (or, with <see cref="IsTuple"/>, a tuple) of template values.</summary>
internal sealed class PyList
{
    public PyList(List<object?> items, bool isTuple = false)
    {
        Items = items;
        IsTuple = isTuple;
    }

    public PyList() : this(new List<object?>()) { }

    public List<object?> Items { get; }
    public bool IsTuple { get; }
    public int Count => Items.Count;
    public object? this[int index] => Items[index];

    /// <summary>For the lists that stand for <c>dict.items()</c>, <c>keys()</c>, <c>values()</c>: the view's name, shown by repr.</summary>
    public string? ViewName { get; init; }

    public static PyList Tuple(params object?[] items) => new(new List<object?>(items), isTuple: true);
}
