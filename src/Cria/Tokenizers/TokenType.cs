namespace Cria.Tokenizers;

/// <summary>
/// The per-token type stored in <c>tokenizer.ggml.token_type</c> (llama.cpp's <c>llama_token_type</c>).
/// Values outside 1..6 (and 0) are reported as <see cref="Undefined"/>.
/// </summary>
public enum TokenType
{
    Undefined = 0,
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}
