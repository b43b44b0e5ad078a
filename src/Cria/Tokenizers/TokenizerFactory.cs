using Cria.Gguf;

namespace Cria.Tokenizers;

/// <summary>Picks the tokenizer implementation for a vocabulary.</summary>
public static class TokenizerFactory
{
    /// <summary>The tokenizer for <paramref name="vocabulary"/>'s <c>tokenizer.ggml.model</c>.</summary>
    /// <exception cref="NotSupportedException">the tokenizer model (or a "gpt2" vocabulary's pre-tokenizer) is not implemented</exception>
    public static ITokenizer Create(Vocabulary vocabulary)
    {
        ArgumentNullException.ThrowIfNull(vocabulary);
        return vocabulary.Model switch
        {
            "llama" => new SentencePieceTokenizer(vocabulary),
            "gpt2" => new ByteLevelBpeTokenizer(vocabulary), // throws NotSupportedException for unimplemented pre-tokenizers
            _ => throw new NotSupportedException(
                $"tokenizer model '{vocabulary.Model}' is not supported; only 'llama' (SentencePiece BPE: Llama 1/2, Code Llama) and 'gpt2' (byte-level BPE: Llama 3) are"),
        };
    }

    /// <summary>Reads the vocabulary of <paramref name="file"/> and creates its tokenizer.</summary>
    public static ITokenizer Create(GgufFile file) => Create(Vocabulary.FromGguf(file));
}
