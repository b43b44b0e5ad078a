using System.Text;
using Cria.Gguf;
using LLama;
using LLama.Common;
using Xunit;
using static Cria.Tests.Tokenizers.TokenizerTestData;

namespace Cria.Tests.Tokenizers;

/// <summary>
/// Differential tests of the Llama 3 tokenizer against the native llama.cpp bundled with LLamaSharp, both reading the
/// vocabulary GGUF that HfTokenizerConverter wrote (plus dummy Llama 3 8B hyperparameters, which llama.cpp needs even
/// for a vocabulary-only load). Skipped when the native library cannot be loaded.
/// </summary>
[Xunit.Collection(Cria.Tests.Differential.LlamaCppCollection.Name)]
public class NativeLlama3TokenizerTests
{
    private static readonly string[] Pool =
    [
        " ", "  ", "   ", "\n", "\n\n", "\r\n", "\t", " \n ", "a", "the", "The", " Hello", "hello", "world", "ing", "1", "22", "333",
        "12345", "3.14", ".", ",", "!", "?", "...", "'", "'s", "'S", "'ll", "'ve", "n't", "\"", "é", "ï", "ß", "Führer", "你", "好",
        "こんにちは", "🦙", "🐱", "→", "½", "²", "\u00a0", "\u200b", "\u2028", "\u3000", "x", "<|eot_id|>", "<|begin_of_text|>",
        "<|start_header_id|>", "<|end_header_id|>", "<|", "|>", "<|reserved_special_token_7|>", "Once upon a time", "don't",
        "    return x;", "{\"a\": [1, 2]}", "ÅÄÖ", "ααα", "עברית", "العربية", "हिन्दी", "ㅎㅎ", "😀😀", "\u0301",
        "\U000116DB", "\U00013B36", "\U00011BF0", "\u1C89", "\U0002EBF0", // letters/digits new in Unicode 16.0 / 15.1
    ];

    private static readonly Lazy<string> NativeGguf = new(() =>
    {
        using var src = GgufFile.Open(Llama3TestData.GgufPath());
        var w = new GgufWriter();
        w.CopyMetadataFrom(src);
        w.Set("llama.block_count", 32u).Set("llama.context_length", 8192u).Set("llama.embedding_length", 4096u)
         .Set("llama.feed_forward_length", 14336u).Set("llama.attention.head_count", 32u)
         .Set("llama.attention.head_count_kv", 8u).Set("llama.attention.layer_norm_rms_epsilon", 1e-5f)
         .Set("llama.rope.dimension_count", 128u).Set("llama.rope.freq_base", 500000f).Set("general.file_type", 1u);
        string path = Path.Combine(Path.GetTempPath(), $"cria-llama3-native-{Environment.ProcessId}-{Guid.NewGuid():N}.gguf");
        w.Write(path);
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        };
        return path;
    });

    private static LLamaWeights LoadNative()
    {
        string path = NativeGguf.Value;
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

    [SkippableFact]
    public void RandomText_SameIdsAsNativeLlamaCpp()
    {
        var tok = Llama3TestData.Tokenizer();
        using var native = LoadNative();
        var rnd = new Random(3);
        var failures = new StringBuilder();
        for (int iter = 0; iter < 1500; iter++)
        {
            var sb = new StringBuilder();
            int n = rnd.Next(0, 14);
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

    [SkippableFact]
    public void Corpus_SameIdsAsNativeLlamaCpp()
    {
        var tok = Llama3TestData.Tokenizer();
        using var native = LoadNative();
        foreach (string f in new[] { "corpus/public-domain/tinyshakespeare.txt", "corpus/tinystories/tinystories-valid-head.txt" })
        {
            string text = File.ReadAllText(RefData.Require(f))[..50_000];
            int[] expected = native.Tokenize(text, true, false, Encoding.UTF8).Select(t => (int)t).ToArray();
            Assert.Equal(expected, tok.Encode(text));
        }
    }

    [SkippableFact]
    public void EveryTokenPiece_SameAsNativeLlamaCpp()
    {
        var tok = Llama3TestData.Tokenizer();
        using var native = LoadNative();
        var buf = new byte[512];
        var failures = new List<string>();
        for (int id = 0; id < tok.Vocabulary.Count; id++)
        {
            // special=false differs only for control tokens: check it on all of those and a sample of the rest
            bool checkPlain = id >= 128000 || id % 16 == 0;
            for (int k = 0; k < (checkPlain ? 2 : 1); k++)
            {
                bool special = k == 0;
                int n = (int)native.NativeHandle.TokenToSpan((LLama.Native.LLamaToken)id, buf, 0, special);
                if (!buf.AsSpan(0, n).SequenceEqual(tok.TokenToPiece(id, special)) && failures.Count < 20)
                    failures.Add($"token {id} special={special}");
            }
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }
}
