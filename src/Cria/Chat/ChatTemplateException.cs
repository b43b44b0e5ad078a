namespace Cria.Chat;

/// <summary>What went wrong while parsing or rendering a chat template.</summary>
public enum ChatTemplateErrorKind
{
    /// <summary>The template source is not valid Jinja (or uses a tag this engine does not support).</summary>
    Syntax,

    /// <summary>The template called <c>raise_exception(message)</c>; the exception's message is the template's.</summary>
    Raised,

    /// <summary>An error while rendering: an undefined value used where Jinja errors, a type error, an unknown filter...</summary>
    Runtime,
}

/// <summary>A chat template could not be parsed or rendered.</summary>
public sealed class ChatTemplateException : Exception
{
    public ChatTemplateException(ChatTemplateErrorKind kind, string message, int line = 0)
        : base(message)
    {
        Kind = kind;
        Line = line;
    }

    public ChatTemplateErrorKind Kind { get; }

    /// <summary>1-based line of the template where a syntax error was found; 0 when not known.</summary>
    public int Line { get; }

    internal static ChatTemplateException Type(string message) => new(ChatTemplateErrorKind.Runtime, message);
}
