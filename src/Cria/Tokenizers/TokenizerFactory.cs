using Cria.Gguf;

namespace Cria.Tokenizers;

/// <summary>Picks the tokenizer implementation for a vocabulary.</summary>
public static class TokenizerFactory
{
    /// <summary>The tokenizer for <paramref name="vocabulary"/>'s <c>tokenizer.ggml.model</c>.</summary>
    /// <exception cref="NotSupportedException">the tokenizer model is not implemented (yet)</exception>
    public static ITokenizer Create(Vocabulary vocabulary)
    {
        ArgumentNullException.ThrowIfNull(vocabulary);
        return vocabulary.Model switch
        {
            "llama" => new SentencePieceTokenizer(vocabulary),
            "gpt2" => throw new NotSupportedException(
                "tokenizer model 'gpt2' (byte-level BPE, e.g. Llama 3) is not supported yet; only 'llama' (SentencePiece BPE: Llama 1/2, Code Llama) is"),
            _ => throw new NotSupportedException(
                $"tokenizer model '{vocabulary.Model}' is not supported; only 'llama' (SentencePiece BPE: Llama 1/2, Code Llama) is"),
        };
    }

    /// <summary>Reads the vocabulary of <paramref name="file"/> and creates its tokenizer.</summary>
    public static ITokenizer Create(GgufFile file) => Create(Vocabulary.FromGguf(file));
}
