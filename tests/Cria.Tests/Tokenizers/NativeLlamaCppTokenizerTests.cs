using System.Text;
using LLama;
using LLama.Common;
using Xunit;
using static Cria.Tests.Tokenizers.TokenizerTestData;

namespace Cria.Tests.Tokenizers;

/// <summary>
/// Differential tests against the native llama.cpp bundled with LLamaSharp (a newer llama.cpp than the reference
/// build c392e509; its SPM tokenizer is the same for these two vocabularies — the one known difference is that
/// newer builds force a user-defined "&lt;/s&gt;" such as Phi-3's to CONTROL). Skipped when the native library
/// cannot be loaded.
/// </summary>
[Xunit.Collection(Cria.Tests.Differential.LlamaCppCollection.Name)]
public class NativeLlamaCppTokenizerTests
{
    private static readonly string[] Pool =
    [
        " ", "  ", "\n", "\t", "\r", "a", "the", "The", "Hello", "hello", "world", "ing", "1", "2", "0", "12345", ".", ",", "!",
        "?", "'", "\"", "é", "ï", "ß", "你", "好", "こんにちは", "🦙", "🐱", "→", "\u2581", "<", ">", "s", "/", "<s>", "</s>",
        "<unk>", "<0x0A>", "\u00a0", "\u200b", "x", "ed", "er", "unk", "<s", "s>", "Once upon a time",
    ];

    private static LLamaWeights LoadNative(string path)
    {
        try
        {
            return LLamaWeights.LoadFromFile(new ModelParams(path) { VocabOnly = true, GpuLayerCount = 0 });
        }
        catch (Exception e) when (e is not Xunit.SkipException)
        {
            Xunit.Skip.If(true, $"native llama.cpp (LLamaSharp) could not be loaded: {e.GetType().Name}: {e.Message}");
            throw;
        }
    }

    [SkippableTheory]
    [InlineData(LlamaSpmVocab)]
    [InlineData(StoriesModel)]
    public void RandomText_SameIdsAsNativeLlamaCpp(string relative)
    {
        var tok = Tokenizer(relative);
        using var native = LoadNative(RefData.Require(relative));
        var rnd = new Random(42);
        var failures = new StringBuilder();
        for (int iter = 0; iter < 1500; iter++)
        {
            var sb = new StringBuilder();
            int n = rnd.Next(0, 12);
            for (int i = 0; i < n; i++) sb.Append(Pool[rnd.Next(Pool.Length)]);
            string text = sb.ToString();
            foreach (bool addSpecial in new[] { false, true })
            foreach (bool parseSpecial in new[] { false, true })
            {
                int[] expected = native.Tokenize(text, addSpecial, parseSpecial, Encoding.UTF8).Select(t => (int)t).ToArray();
                int[] got = tok.Encode(text, addSpecial, parseSpecial);
                if (!expected.AsSpan().SequenceEqual(got) && failures.Length < 4000)
                    failures.AppendLine($"add={addSpecial} parse={parseSpecial} \"{Escape(text)}\": expected {Show(expected)}, got {Show(got)}");
            }
        }
        Assert.True(failures.Length == 0, failures.ToString());
    }

    [SkippableTheory]
    [InlineData(LlamaSpmVocab)]
    [InlineData(StoriesModel)]
    public void EveryTokenPiece_SameAsNativeLlamaCpp(string relative)
    {
        var tok = Tokenizer(relative);
        using var native = LoadNative(RefData.Require(relative));
        var buf = new byte[256];
        for (int id = 0; id < tok.Vocabulary.Count; id++)
        foreach (bool special in new[] { true, false })
        {
            int n = (int)native.NativeHandle.TokenToSpan((LLama.Native.LLamaToken)id, buf, 0, special);
            Assert.True(buf.AsSpan(0, n).SequenceEqual(tok.TokenToPiece(id, special)), $"token {id} special={special}");
        }
    }
}
