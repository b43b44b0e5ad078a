namespace Cria.Chat.Jinja;

/// <summary>
/// Variables visible at one point of a render. Jinja's scoping: a for-loop iteration, macro call,
/// <c>with</c> block or block <c>set</c> gets a child scope, so <c>set</c> inside it does not leak out
/// (that is what <c>namespace()</c> is for); <c>if</c> does not open a scope.
/// </summary>
internal sealed class Scope
{
    private readonly Dictionary<string, object?> _vars = new(StringComparer.Ordinal);

    public Scope(Scope? parent) => Parent = parent;

    public Scope? Parent { get; }

    public bool TryGet(string name, out object? value)
    {
        for (var s = this; s != null; s = s.Parent)
            if (s._vars.TryGetValue(name, out value)) return true;
        value = null;
        return false;
    }

    public void Set(string name, object? value) => _vars[name] = value;
}
