using System.Text.Json;
using Cria.Conversion;
using Cria.Gguf;
using Cria.Tokenizers;

namespace Cria.Tests.Tokenizers;

/// <summary>
/// The Llama 3 tokenizer built the way a user gets it: tokenizer.json + tokenizer_config.json converted to a
/// vocabulary-only GGUF by <see cref="HfTokenizerConverter"/>, read back with <see cref="Vocabulary.FromGguf"/>,
/// tokenizer from <see cref="TokenizerFactory"/>. Done once per test run.
/// </summary>
internal static class Llama3TestData
{
    public const string TokenizerJson = "llama3-tokenizer/tokenizer.json";
    public const string TokenizerConfig = "llama3-tokenizer/tokenizer_config.json";
    public const string ReferenceJson = "tokenizer-tests/llama3-reference.json";
    public const string LlamaBpeInp = "tokenizer-tests/llamacpp/ggml-vocab-llama-bpe.gguf.inp";
    public const string LlamaBpeOut = "tokenizer-tests/llamacpp/ggml-vocab-llama-bpe.gguf.out";

    private static readonly Lazy<string> LazyGguf = new(WriteGguf);
    private static readonly Lazy<ByteLevelBpeTokenizer> LazyTokenizer = new(() =>
    {
        using var file = GgufFile.Open(LazyGguf.Value);
        return (ByteLevelBpeTokenizer)TokenizerFactory.Create(Vocabulary.FromGguf(file));
    });

    /// <summary>The converted Llama 3 tokenizer; skips the test when the reference files are absent.</summary>
    public static ByteLevelBpeTokenizer Tokenizer()
    {
        RequireSources();
        return LazyTokenizer.Value;
    }

    /// <summary>Path of the vocabulary-only GGUF the converter wrote (a temporary file, deleted at exit).</summary>
    public static string GgufPath()
    {
        RequireSources();
        return LazyGguf.Value;
    }

    private static void RequireSources()
    {
        RefData.Require(TokenizerJson);
        RefData.Require(TokenizerConfig);
    }

    private static string WriteGguf()
    {
        string path = Path.Combine(Path.GetTempPath(), $"cria-llama3-vocab-{Environment.ProcessId}-{Guid.NewGuid():N}.gguf");
        HfTokenizerConverter.WriteVocabularyGguf(RefData.Require(TokenizerJson), RefData.Require(TokenizerConfig), path);
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        };
        return path;
    }

    /// <summary>llama3-reference.json's <c>cases[]</c>: text and ids (no BOS).</summary>
    public static List<(string Text, int[] Ids)> ReferenceCases()
    {
        using JsonDocument doc = TokenizerTestData.ReadJson(ReferenceJson);
        return doc.RootElement.GetProperty("cases").EnumerateArray()
            .Select(c => (c.GetProperty("text").GetString()!, TokenizerTestData.Ints(c.GetProperty("ids")))).ToList();
    }
}
