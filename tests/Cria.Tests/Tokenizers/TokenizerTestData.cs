using Xunit;
using System.Collections.Concurrent;
using System.Text;
using System.Text.Json;
using Cria.Gguf;
using Cria.Tokenizers;

namespace Cria.Tests.Tokenizers;

/// <summary>Shared loading of reference vocabularies and test files (each GGUF is read once per test run).</summary>
internal static class TokenizerTestData
{
    public const string LlamaSpmVocab = "vocab/ggml-vocab-llama-spm.gguf";
    public const string Phi3Vocab = "vocab/ggml-vocab-phi-3.gguf";
    public const string StoriesModel = "stories260K/stories260K-f32.gguf";
    public const string StoriesGolden = "stories260K/golden-f32-kvf32.json";

    private static readonly ConcurrentDictionary<string, Lazy<SentencePieceTokenizer>> Cache = new();

    /// <summary>The tokenizer of a refdata GGUF; skips the test when the file is absent.</summary>
    public static SentencePieceTokenizer Tokenizer(string relative)
    {
        string path = RefData.Require(relative);
        return Cache.GetOrAdd(path, p => new Lazy<SentencePieceTokenizer>(() =>
        {
            using var file = GgufFile.Open(p);
            return (SentencePieceTokenizer)TokenizerFactory.Create(Vocabulary.FromGguf(file));
        })).Value;
    }

    /// <summary>llama.cpp's tokenizer test format: strings each followed by "\n__ggml_vocab_test__\n"; one id line each.</summary>
    public static List<(string Text, int[] Ids)> ReadInpOut(string inpRelative, string outRelative)
    {
        string inp = File.ReadAllText(RefData.Require(inpRelative), new UTF8Encoding(false, true));
        string[] outLines = File.ReadAllText(RefData.Require(outRelative), Encoding.UTF8).Split('\n');
        const string Sep = "\n__ggml_vocab_test__\n";
        Assert.EndsWith(Sep, inp);
        string[] texts = inp[..^Sep.Length].Split(Sep);
        Assert.True(outLines.Length >= texts.Length, $"{outRelative} has {outLines.Length} lines for {texts.Length} strings");
        var cases = new List<(string, int[])>(texts.Length);
        for (int i = 0; i < texts.Length; i++)
            cases.Add((texts[i], ParseIds(outLines[i])));
        return cases;
    }

    public static int[] ParseIds(string line) =>
        line.Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(int.Parse).ToArray();

    public static JsonDocument ReadJson(string relative) => JsonDocument.Parse(File.ReadAllBytes(RefData.Require(relative)));

    public static int[] Ints(JsonElement array) => array.EnumerateArray().Select(e => e.GetInt32()).ToArray();

    public static string Show(IEnumerable<int> ids) => "[" + string.Join(", ", ids) + "]";

    public static string Escape(string s)
    {
        var sb = new StringBuilder();
        foreach (char c in s)
        {
            if (c < 0x20 || c == '\\' || c == '"' || c > 0x7e) sb.Append($"\\u{(int)c:x4}");
            else sb.Append(c);
        }
        return sb.ToString();
    }

    /// <summary>An in-memory GGUF holding only tokenizer metadata.</summary>
    public static Vocabulary SyntheticVocabulary(string[] tokens, float[] scores, int[] types, Action<GgufWriter>? extra = null)
    {
        var w = new GgufWriter();
        w.Set(Vocabulary.KeyModel, "llama");
        w.Set(Vocabulary.KeyTokens, GgufArray.Of(tokens));
        w.Set(Vocabulary.KeyScores, GgufArray.Of(scores));
        w.Set(Vocabulary.KeyTokenType, GgufArray.Of(types));
        extra?.Invoke(w);
        using var ms = new MemoryStream();
        w.WriteTo(ms);
        using var file = GgufFile.FromBytes(ms.ToArray());
        return Vocabulary.FromGguf(file);
    }
}
