namespace Cria.Gguf;

/// <summary>
/// Raised for any file that is not a well-formed GGUF file: the message says what is wrong and,
/// where it helps, at which byte offset.
/// </summary>
public sealed class GgufFormatException : Exception
{
    public GgufFormatException(string message) : base(message) { }
    public GgufFormatException(string message, Exception inner) : base(message, inner) { }
}
