namespace Cria.Chat.Jinja;

/// <summary>
/// Jinja's default <c>Undefined</c>: what a missing variable, key or attribute evaluates to. It prints
/// as nothing, is falsy, iterates as empty and has length 0; using it as an object (attribute, item,
/// call, arithmetic, ordering) raises an error that names what was missing.
/// </summary>
internal sealed class Undefined
{
    public static readonly Undefined Plain = new("value is undefined");

    private Undefined(string message) => Message = message;

    /// <summary>Jinja's message for this value, e.g. <c>'x' is undefined</c>.</summary>
    public string Message { get; }

    /// <summary>A missing variable.</summary>
    public static Undefined Variable(string name) => new($"{PyRepr.Repr(name)} is undefined");

    /// <summary>A missing attribute (or string key) of an existing object.</summary>
    public static Undefined Attribute(object? owner, string name) =>
        new($"{PyRepr.Repr(ObjectTypeRepr(owner))} has no attribute {PyRepr.Repr(name)}");

    /// <summary>A missing element (non-string key) of an existing object.</summary>
    public static Undefined Element(object? owner, object? key) =>
        key is string s ? Attribute(owner, s) : new($"{ObjectTypeRepr(owner)} has no element {PyRepr.Repr(key)}");

    public static Undefined WithMessage(string message) => new(message);

    public ChatTemplateException Error() => new(ChatTemplateErrorKind.Runtime, Message);

    /// <summary>Jinja's <c>object_type_repr</c>: "None", "dict object", "list object"...</summary>
    private static string ObjectTypeRepr(object? o) => o switch
    {
        null => "None",
        _ => PyValue.TypeName(o) + " object",
    };
}
