using Cria.Model;
using Xunit;

namespace Cria.Tests.Quantization;

/// <summary>
/// llama-quantize's stories260K files with IQ4_NL, Q5_0/Q5_1, Q8_0 and F16 tensors load and run in
/// Cria. There is no golden output for them, so: the logits are finite, and the quantized models
/// pick the same first token after "Once upon a time" as the F32 model (refdata/README.md: Q4_K_M
/// agrees with F32 for 60 tokens; Q5_K_M and Q2_K diverge later than the first token).
/// </summary>
public class QuantizedModelTests
{
    private static (int Argmax, float[] Logits) FirstToken(string model)
    {
        using var m = LlamaModel.Load(RefData.Require(model), new ModelOptions { Threads = 2 });
        using var ctx = m.CreateContext(new ContextOptions { ContextSize = 128 });
        float[] logits = ctx.Evaluate(m.Tokenizer.Encode("Once upon a time")).ToArray();
        int best = 0;
        for (int i = 1; i < logits.Length; i++) if (logits[i] > logits[best]) best = i;
        return (best, logits);
    }

    [SkippableTheory]
    [InlineData("stories260K/stories260K-q2_k.gguf")]
    [InlineData("stories260K/stories260K-q4_k_m.gguf")]
    [InlineData("stories260K/stories260K-q5_k_m.gguf")]
    public void QuantizedFile_RunsAndAgreesWithF32OnTheFirstToken(string model)
    {
        var (reference, _) = FirstToken("stories260K/stories260K-f32.gguf");
        var (argmax, logits) = FirstToken(model);
        Assert.All(logits, v => Assert.True(float.IsFinite(v)));
        Assert.Equal(reference, argmax);
    }

    [SkippableFact]
    public void Q2_KFile_GeneratesGreedily()
    {
        using var m = LlamaModel.Load(RefData.Require("stories260K/stories260K-q2_k.gguf"), new ModelOptions { Threads = 2 });
        using var ctx = m.CreateContext(new ContextOptions { ContextSize = 128 });
        var tokens = m.Tokenizer.Encode("Once upon a time");
        float[] logits = ctx.Evaluate(tokens).ToArray();
        var one = new int[1];
        for (int step = 0; step < 16; step++)
        {
            int best = 0;
            for (int i = 1; i < logits.Length; i++) if (logits[i] > logits[best]) best = i;
            Assert.All(logits, v => Assert.True(float.IsFinite(v)));
            one[0] = best;
            logits = ctx.Evaluate(one).ToArray();
        }
        Assert.Equal(tokens.Length + 16, ctx.Position);
    }
}
