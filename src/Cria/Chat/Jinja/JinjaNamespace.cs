namespace Cria.Chat.Jinja;

/// <summary>The object <c>namespace(...)</c> returns: attributes that <c>{% set ns.x = ... %}</c> may change from any scope.</summary>
internal sealed class JinjaNamespace
{
    public PyDict Attributes { get; } = new();
}
