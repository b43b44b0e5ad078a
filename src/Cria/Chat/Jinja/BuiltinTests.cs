namespace Cria.Chat.Jinja;

/// <summary>Jinja2's tests (<c>x is defined</c>, <c>is none</c>, <c>is mapping</c>, <c>is divisibleby 3</c>...), with Python's types.</summary>
internal static class BuiltinTests
{
    public delegate bool Test(Interpreter interpreter, object? value, CallArgs args);

    private static readonly Dictionary<string, Test> All = new(StringComparer.Ordinal)
    {
        ["boolean"] = (_, v, _) => v is bool,
        ["callable"] = (_, v, _) => v is IJinjaCallable,
        ["defined"] = (_, v, _) => v is not Undefined,
        ["undefined"] = (_, v, _) => v is Undefined,
        ["divisibleby"] = (_, v, a) => PyValue.Equals(Operators.Binary("%", v, a.Get(0, "num")), 0L),
        ["eq"] = (_, v, a) => PyValue.Equals(v, a.Get(0, "other")),
        ["equalto"] = (_, v, a) => PyValue.Equals(v, a.Get(0, "other")),
        ["=="] = (_, v, a) => PyValue.Equals(v, a.Get(0, "other")),
        ["ne"] = (_, v, a) => !PyValue.Equals(v, a.Get(0, "other")),
        ["!="] = (_, v, a) => !PyValue.Equals(v, a.Get(0, "other")),
        ["lt"] = (_, v, a) => PyValue.Compare("<", v, a.Get(0, "other")),
        ["lessthan"] = (_, v, a) => PyValue.Compare("<", v, a.Get(0, "other")),
        ["<"] = (_, v, a) => PyValue.Compare("<", v, a.Get(0, "other")),
        ["le"] = (_, v, a) => PyValue.Compare("<=", v, a.Get(0, "other")),
        ["<="] = (_, v, a) => PyValue.Compare("<=", v, a.Get(0, "other")),
        ["gt"] = (_, v, a) => PyValue.Compare(">", v, a.Get(0, "other")),
        ["greaterthan"] = (_, v, a) => PyValue.Compare(">", v, a.Get(0, "other")),
        [">"] = (_, v, a) => PyValue.Compare(">", v, a.Get(0, "other")),
        ["ge"] = (_, v, a) => PyValue.Compare(">=", v, a.Get(0, "other")),
        [">="] = (_, v, a) => PyValue.Compare(">=", v, a.Get(0, "other")),
        ["escaped"] = (_, _, _) => false,
        ["even"] = (_, v, _) => PyValue.Equals(Operators.Binary("%", v, 2L), 0L),
        ["odd"] = (_, v, _) => PyValue.Equals(Operators.Binary("%", v, 2L), 1L),
        ["false"] = (_, v, _) => v is false,
        ["true"] = (_, v, _) => v is true,
        ["filter"] = (_, v, _) => v is string s && Filters.Exists(s),
        ["test"] = (_, v, _) => v is string s && All!.ContainsKey(s),
        ["float"] = (_, v, _) => v is double,
        ["integer"] = (_, v, _) => v is long,
        ["number"] = (_, v, _) => PyValue.IsNumber(v),
        ["in"] = (_, v, a) => PyValue.Contains(a.Get(0, "seq"), v),
        ["iterable"] = (_, v, _) => PyValue.IsIterable(v),
        ["mapping"] = (_, v, _) => v is PyDict,
        ["sequence"] = (_, v, _) => v is string or PyList or PyDict or Undefined,
        ["string"] = (_, v, _) => v is string,
        ["none"] = (_, v, _) => v is null,
        ["lower"] = (_, v, _) => PyRepr.Str(v) is var s && s.Any(char.IsLower) && !s.Any(char.IsUpper),
        ["upper"] = (_, v, _) => PyRepr.Str(v) is var s && s.Any(char.IsUpper) && !s.Any(char.IsLower),
        ["sameas"] = (_, v, a) => SameAs(v, a.Get(0, "other")),
    };

    /// <summary>Tests that take an argument besides the value (<c>divisibleby 3</c>, <c>eq 'x'</c>...); the others take none.</summary>
    private static readonly HashSet<string> WithArgument =
    [
        "divisibleby", "eq", "equalto", "==", "ne", "!=", "lt", "lessthan", "<", "le", "<=", "gt", "greaterthan", ">", "ge", ">=", "in", "sameas",
    ];

    public static bool TryGet(string name, out Test test, out int arity)
    {
        arity = WithArgument.Contains(name) ? 1 : 0;
        return All.TryGetValue(name, out test!);
    }

    /// <summary>Python's <c>is</c>: identity for objects; None, booleans and small ints are singletons.</summary>
    private static bool SameAs(object? a, object? b) => (a, b) switch
    {
        (null, null) => true,
        (bool x, bool y) => x == y,
        (long x, long y) => x == y && x is >= -5 and <= 256,
        _ => a != null && ReferenceEquals(a, b),
    };
}
