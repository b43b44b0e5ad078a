namespace Cria.Chat.Jinja;

/// <summary>A value a template can call: a global function, a bound method, a macro, <c>loop</c> of a recursive loop.</summary>
internal interface IJinjaCallable
{
    string Name { get; }
    object? Call(Interpreter interpreter, CallArgs args);
}

/// <summary>A callable implemented in C#.</summary>
internal sealed class BuiltinFunction : IJinjaCallable
{
    private readonly Func<Interpreter, CallArgs, object?> _body;

    public BuiltinFunction(string name, Func<Interpreter, CallArgs, object?> body)
    {
        Name = name;
        _body = body;
    }

    public string Name { get; }

    public object? Call(Interpreter interpreter, CallArgs args) => _body(interpreter, args);
}
