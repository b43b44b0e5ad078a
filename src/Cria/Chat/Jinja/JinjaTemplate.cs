namespace Cria.Chat.Jinja;

/// <summary>A parsed Jinja2 template, rendered with Hugging Face's chat-template environment semantics.</summary>
internal sealed class JinjaTemplate
{
    private readonly List<Stmt> _body;

    private JinjaTemplate(string source, List<Stmt> body)
    {
        Source = source;
        _body = body;
    }

    public string Source { get; }

    /// <summary>Parses the template; throws <see cref="ChatTemplateException"/> (Syntax) on invalid source.</summary>
    public static JinjaTemplate Parse(string source) => new(source, Parser.Parse(source));

    /// <summary>
    /// Renders with the given variables (already template values: see <see cref="PyValue"/>) on top of
    /// Jinja's globals and the extra <paramref name="globals"/>.
    /// </summary>
    public string Render(IEnumerable<KeyValuePair<string, object?>> variables, IEnumerable<KeyValuePair<string, object?>>? globals = null)
    {
        var root = new Scope(null);
        JinjaGlobals.AddTo(root);
        if (globals != null)
            foreach (var kv in globals) root.Set(kv.Key, kv.Value);
        foreach (var kv in variables) root.Set(kv.Key, kv.Value);
        var interpreter = new Interpreter(root);
        try
        {
            return interpreter.Render(_body, new Scope(root));
        }
        catch (InsufficientExecutionStackException)
        {
            throw ChatTemplateException.Type("maximum recursion depth exceeded");
        }
    }
}
