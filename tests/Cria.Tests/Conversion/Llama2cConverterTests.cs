using Cria.Conversion;
using Cria.Model;
using Cria.Numerics;
using Xunit;

namespace Cria.Tests.Conversion;

public class Llama2cConverterTests
{
    [SkippableFact]
    public void ConvertingStories260KGivesLlamaCppsFileByteForByte()
    {
        string bin = RefData.Require("stories260K/stories260K.bin");
        string tok = RefData.Require("stories260K/tok512.bin");
        string reference = RefData.Require("stories260K/stories260K-f32.gguf");
        string tmp = Path.Combine(Path.GetTempPath(), $"cria-l2c-{Guid.NewGuid():N}.gguf");
        try
        {
            Llama2cConverter.Convert(bin, tok, tmp);
            // refdata/README.md: llama.cpp's converter output with llama.context_length set to the
            // checkpoint's seq_len (512), which is what Cria writes.
            Assert.Equal(File.ReadAllBytes(reference), File.ReadAllBytes(tmp));
        }
        finally { File.Delete(tmp); }
    }

    [SkippableFact]
    public void Q8_0OutputRunsAndKeepsUnevenRowsInF16()
    {
        string bin = RefData.Require("stories260K/stories260K.bin");
        string tok = RefData.Require("stories260K/tok512.bin");
        string tmp = Path.Combine(Path.GetTempPath(), $"cria-l2c-{Guid.NewGuid():N}.gguf");
        try
        {
            Llama2cConverter.Convert(bin, tok, tmp, GgmlType.Q8_0);
            using var model = LlamaModel.Load(tmp, new ModelOptions { Threads = 1 });
            Assert.Equal(GgmlType.Q8_0, model.File.GetTensor("blk.0.attn_q.weight").Type);
            Assert.Equal(GgmlType.F16, model.File.GetTensor("blk.0.ffn_down.weight").Type); // rows of 172
            using var ctx = model.CreateContext(new ContextOptions { ContextSize = 64 });
            var logits = ctx.Evaluate(model.Tokenizer.Encode("Once upon a time")).ToArray();
            Assert.All(logits, l => Assert.True(float.IsFinite(l)));
        }
        finally { File.Delete(tmp); }
    }

    [SkippableFact]
    public void TruncatedCheckpointIsRejectedWithoutOutput()
    {
        byte[] full = File.ReadAllBytes(RefData.Require("stories260K/stories260K.bin"));
        string tok = RefData.Require("stories260K/tok512.bin");
        string dir = Path.Combine(Path.GetTempPath(), $"cria-l2c-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            string cut = Path.Combine(dir, "cut.bin");
            File.WriteAllBytes(cut, full[..(full.Length / 2)]);
            string outPath = Path.Combine(dir, "out.gguf");
            var e = Assert.Throws<InvalidDataException>(() => Llama2cConverter.Convert(cut, tok, outPath));
            Assert.Contains("truncated", e.Message);
            File.WriteAllBytes(cut, new byte[100]);
            Assert.Throws<InvalidDataException>(() => Llama2cConverter.Convert(cut, tok, outPath));
            Assert.False(File.Exists(outPath));
            Assert.Single(Directory.GetFiles(dir));
        }
        finally { Directory.Delete(dir, true); }
    }
}
