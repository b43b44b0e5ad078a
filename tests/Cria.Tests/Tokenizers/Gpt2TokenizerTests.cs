using System.Text;
using Cria.Gguf;
using Cria.Tokenizers;
using Xunit;
using static Cria.Tests.Tokenizers.TokenizerTestData;

namespace Cria.Tests.Tokenizers;

/// <summary>The byte-level BPE tokenizer with GPT-2's pre-tokenizer, on llama.cpp's own GPT-2 vocabulary file.</summary>
public class Gpt2TokenizerTests
{
    public const string Gpt2Vocab = "vocab/ggml-vocab-gpt-2.gguf";

    private static ByteLevelBpeTokenizer Load()
    {
        using var file = GgufFile.Open(RefData.Require(Gpt2Vocab));
        return (ByteLevelBpeTokenizer)TokenizerFactory.Create(file);
    }

    [SkippableFact]
    public void Gpt2_VocabTestFile_ExactIds()
    {
        var tok = Load();
        Assert.Equal(BpePreTokenizerKind.Gpt2, tok.PreTokenizer);
        Assert.False(tok.IgnoreMerges);
        Assert.False(tok.Vocabulary.AddBos);
        var cases = ReadInpOut(Gpt2Vocab + ".inp", Gpt2Vocab + ".out");
        Assert.Equal(46, cases.Count);
        var failures = new StringBuilder();
        foreach (var (text, ids) in cases)
        {
            int[] got = tok.Encode(text); // GPT-2 adds no BOS
            if (!got.AsSpan().SequenceEqual(ids))
                failures.AppendLine($"\"{Escape(text)}\": expected {Show(ids)}, got {Show(got)}");
            byte[] pieces = got.SelectMany(id => tok.TokenToPiece(id)).ToArray();
            Assert.True(Encoding.UTF8.GetBytes(text).AsSpan().SequenceEqual(pieces));
        }
        Assert.True(failures.Length == 0, failures.ToString());
    }
}
