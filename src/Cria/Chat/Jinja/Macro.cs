namespace Cria.Chat.Jinja;

/// <summary>A <c>{% macro %}</c> bound to the scope it was defined in; calling it renders its body to a string.</summary>
internal sealed class Macro : IJinjaCallable
{
    public Macro(MacroDefinition definition, Scope closure)
    {
        Definition = definition;
        Closure = closure;
    }

    public MacroDefinition Definition { get; }
    public Scope Closure { get; }
    public string Name => Definition.Name;

    public object? Call(Interpreter interpreter, CallArgs args) => interpreter.InvokeMacro(this, args);
}
