using System.Text;
using Cria.Gguf;
using Cria.Tokenizers;
using Xunit;
using static Cria.Tests.Tokenizers.TokenizerTestData;

namespace Cria.Tests.Tokenizers;

public class StreamingDetokenizerTests
{
    private static string Stream(StreamingDetokenizer s, IEnumerable<int> ids)
    {
        var sb = new StringBuilder();
        foreach (int id in ids) sb.Append(s.Append(id));
        sb.Append(s.Flush());
        return sb.ToString();
    }

    [SkippableFact]
    public void RandomIds_ConcatenationEqualsDecode()
    {
        // Random sequences over the whole stories260K vocabulary: BOS/EOS/UNK, byte tokens (so broken and
        // split UTF-8), and normal pieces; every flag combination of llama_detokenize.
        var tok = Tokenizer(StoriesModel);
        var rnd = new Random(20250220);
        int n = tok.Vocabulary.Count;
        for (int iter = 0; iter < 400; iter++)
        {
            int len = rnd.Next(0, 40);
            var ids = new int[len];
            for (int i = 0; i < len; i++)
            {
                // favour byte tokens of multi-byte sequences so characters get split
                ids[i] = rnd.Next(4) switch
                {
                    0 => 3 + rnd.Next(0xC2, 0xF5),
                    1 => 3 + rnd.Next(0x80, 0xC0),
                    _ => rnd.Next(n),
                };
            }
            if (len > 0 && rnd.Next(3) == 0) ids[0] = tok.Vocabulary.Bos;
            foreach (bool removeSpecial in new[] { false, true })
            foreach (bool unparseSpecial in new[] { false, true })
            {
                var s = new StreamingDetokenizer(tok, removeSpecial, unparseSpecial);
                Assert.Equal(tok.Decode(ids, removeSpecial, unparseSpecial), Stream(s, ids));
                // reusable after Flush
                Assert.Equal(tok.Decode(ids, removeSpecial, unparseSpecial), Stream(s, ids));
            }
            // continuation: plain concatenation of pieces
            var pieces = ids.SelectMany(id => tok.TokenToPiece(id)).ToArray();
            Assert.Equal(Encoding.UTF8.GetString(pieces), Stream(new StreamingDetokenizer(tok, continuation: true), ids));
        }
    }

    [SkippableFact]
    public void ValidText_IsEmittedAsSoonAsComplete()
    {
        var tok = Tokenizer(LlamaSpmVocab);
        const string text = "Ünïcödé: 你好，世界！🦙 and 🐱 «こんにちは»";
        int[] ids = tok.Encode(text, addSpecial: false);
        var s = new StreamingDetokenizer(tok);
        var sb = new StringBuilder();
        foreach (int id in ids)
        {
            string chunk = s.Append(id);
            Assert.DoesNotContain('\uFFFD', chunk);
            sb.Append(chunk);
            // what has been emitted is always a prefix of the final text
            Assert.StartsWith(sb.ToString(), text, StringComparison.Ordinal);
        }
        Assert.Equal("", s.Flush());
        Assert.Equal(text, sb.ToString());
    }

    [SkippableFact]
    public void IncompleteSequence_BecomesReplacementCharOnFlush()
    {
        var tok = Tokenizer(StoriesModel);
        var s = new StreamingDetokenizer(tok);
        Assert.Equal("", s.Append(3 + 0xF0));
        Assert.Equal("", s.Append(3 + 0x9F));
        Assert.Equal("\uFFFD", s.Flush());
        Assert.Equal("\uFFFD", tok.Decode([3 + 0xF0, 3 + 0x9F]));
        // a lone continuation byte is invalid at once
        Assert.Equal("\uFFFD", s.Append(3 + 0x80));
        Assert.Equal("", s.Flush());
    }

    [SkippableFact]
    public void LeadingSpace_StrippedLikeLlamaDetokenize_UnlessContinuation()
    {
        var tok = Tokenizer(LlamaSpmVocab);
        int[] ids = tok.Encode("Hello world", addSpecial: false); // ▁Hello ▁world
        Assert.Equal("Hello world", Stream(new StreamingDetokenizer(tok), ids));
        Assert.Equal(" Hello world", Stream(new StreamingDetokenizer(tok, continuation: true), ids));
        int[] withBos = tok.Encode("Hello world");
        Assert.Equal(" Hello world", Stream(new StreamingDetokenizer(tok, removeSpecial: true), withBos));
        Assert.Equal("<s> Hello world", Stream(new StreamingDetokenizer(tok), withBos));
        Assert.Equal(" Hello world", Stream(new StreamingDetokenizer(tok, unparseSpecial: false), withBos));
    }

    [Fact]
    public void RemoveSpecial_HoldsBackOnlyTheFinalEos()
    {
        // a vocabulary that adds EOS: llama_detokenize(remove_special) drops only a final EOS
        var w = new GgufWriter();
        w.Set(Vocabulary.KeyModel, "llama");
        w.Set(Vocabulary.KeyTokens, GgufArray.Of(["<unk>", "<s>", "</s>", "▁a", "b"]));
        w.Set(Vocabulary.KeyTokenType, GgufArray.Of([2, 3, 3, 1, 1]));
        w.Set(Vocabulary.KeyAddEos, true);
        using var ms = new MemoryStream();
        w.WriteTo(ms);
        using var file = GgufFile.FromBytes(ms.ToArray());
        var tok = new SentencePieceTokenizer(Vocabulary.FromGguf(file));

        int[][] cases = [[3, 2], [3, 2, 4], [2, 2], [1, 3, 2, 2], [2], [1], [1, 2], [3, 2, 2, 4, 2]];
        foreach (int[] ids in cases)
        foreach (bool removeSpecial in new[] { false, true })
            Assert.Equal(tok.Decode(ids, removeSpecial), Stream(new StreamingDetokenizer(tok, removeSpecial), ids));

        var s = new StreamingDetokenizer(tok, removeSpecial: true);
        Assert.Equal("a", s.Append(3));
        Assert.Equal("", s.Append(2));       // might be the final EOS
        Assert.Equal("</s>b", s.Append(4)); // it was not
        Assert.Equal("", s.Append(2));
        Assert.Equal("", s.Flush());        // it was
    }

    [SkippableFact]
    public void Append_DoesNotAllocateWhileACharacterIsIncomplete()
    {
        var tok = Tokenizer(StoriesModel);
        var s = new StreamingDetokenizer(tok);
        s.Append(3 + 0xF0); s.Append(3 + 0x9F); s.Append(3 + 0x90); s.Append(3 + 0xB1); // warm up
        s.Flush();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++)
        {
            s.Append(3 + 0xF0);
            s.Append(3 + 0x9F);
            s.Append(3 + 0x90);
            s.Reset();
        }
        long after = GC.GetAllocatedBytesForCurrentThread();
        Assert.Equal(0, after - before);
    }

    [SkippableFact]
    public void InvalidId_Throws()
    {
        var tok = Tokenizer(StoriesModel);
        var s = new StreamingDetokenizer(tok);
        Assert.Throws<ArgumentOutOfRangeException>(() => s.Append(512));
        Assert.Throws<ArgumentOutOfRangeException>(() => s.Append(-1));
    }
}
