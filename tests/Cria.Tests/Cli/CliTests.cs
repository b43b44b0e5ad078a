using System.Text.Json;
using Cria.Tests.Model;
using Xunit;

namespace Cria.Tests.Cli;

public class CliTests
{
    private static string Stories(string type = "f32") => RefData.Require($"stories260K/stories260K-{type}.gguf");

    private static void AssertOneLineError(CliRunner.Result r, string contains)
    {
        Assert.NotEqual(0, r.ExitCode);
        string err = r.Stderr.Trim();
        Assert.StartsWith("error:", err);
        Assert.DoesNotContain("\n", err);
        Assert.DoesNotContain("   at ", err);
        Assert.Contains(contains, err);
        Assert.Empty(r.StdoutBytes);
    }

    [SkippableFact]
    public void RunGreedyPrintsLlamaCppsContinuation()
    {
        var r = CliRunner.Run("run", "-m", Stories(), "-p", "Once upon a time", "-n", "64", "--temp", "0", "--kv-type", "f32", "-t", "2");
        Assert.Equal(0, r.ExitCode);
        // Teacher-forced logits agree to 1e-3 (GoldenLogitsTests); here the free-running greedy text
        // must be the same 64 tokens llama.cpp generated.
        using var doc = JsonDocument.Parse(File.ReadAllBytes(RefData.Require("stories260K/golden-f32-kvf32.json")));
        var c = doc.RootElement.GetProperty("cases").EnumerateArray().Single(e => e.GetProperty("name").GetString() == "once_upon_a_time");
        byte[] expected = Convert.FromHexString(c.GetProperty("generated_text_hex").GetString()!);
        Assert.Equal(expected, r.StdoutBytes);
        Assert.Contains("tok/s", r.Stderr);
        Assert.Contains("generated 64 tokens", r.Stderr);
    }

    [SkippableFact]
    public void RunReadsThePromptFileAsRawUtf8()
    {
        string tmp = Path.GetTempFileName();
        try
        {
            File.WriteAllText(tmp, "--Once upon\n a time");
            var r = CliRunner.Run("run", "-m", Stories(), "-f", tmp, "-n", "4", "--temp", "0");
            Assert.Equal(0, r.ExitCode);
            using var llama = Cria.Model.LlamaModel.Load(Stories());
            int[] expected = llama.Tokenizer.Encode("--Once upon\n a time", addSpecial: true);
            Assert.Contains($"prompt {expected.Length} tokens", r.Stderr);
            var ids = CliRunner.Run("tokenize", "-m", Stories(), "-f", tmp);
            Assert.Equal("[" + string.Join(", ", expected) + "]", ids.Stdout.Trim());
        }
        finally { File.Delete(tmp); }
    }

    [SkippableFact]
    public void SeededSamplingIsReproducible()
    {
        string[] args = { "run", "-m", Stories(), "-p", "Once", "-n", "24", "--temp", "1.0", "--seed", "1234" };
        var a = CliRunner.Run(args);
        var b = CliRunner.Run(args);
        Assert.Equal(0, a.ExitCode);
        Assert.Equal(a.Stdout, b.Stdout);
        var c = CliRunner.Run("run", "-m", Stories(), "-p", "Once", "-n", "24", "--temp", "1.0", "--seed", "99");
        Assert.NotEqual(a.Stdout, c.Stdout);
    }

    [SkippableFact]
    public void TokenizeWorksOnAVocabularyOnlyFile()
    {
        string vocab = RefData.Require("vocab/ggml-vocab-llama-spm.gguf");
        var r = CliRunner.Run("tokenize", "-m", vocab, "Hello world");
        Assert.Equal(0, r.ExitCode);
        Assert.Equal("[1, 15043, 3186]", r.Stdout.Trim());
        var noBos = CliRunner.Run("tokenize", "-m", vocab, "--no-bos", "Hello world");
        Assert.Equal("[15043, 3186]", noBos.Stdout.Trim());
        var special = CliRunner.Run("tokenize", "-m", vocab, "--no-bos", "--special", "<s>Hi</s>");
        var literal = CliRunner.Run("tokenize", "-m", vocab, "--no-bos", "<s>Hi</s>");
        var ids = JsonSerializer.Deserialize<int[]>(special.Stdout)!;
        Assert.Equal(1, ids[0]);
        Assert.Equal(2, ids[^1]);
        Assert.DoesNotContain(1, JsonSerializer.Deserialize<int[]>(literal.Stdout)!);
    }

    [SkippableFact]
    public void LogitsAllMatchesLlamaCppWithAnF32Cache()
    {
        var golden = GoldenData.Load(RefData.Require("stories260K/golden-f32-kvf32.json")).Single(c => c.Name == "digits_punct");
        string tmp = Path.GetTempFileName();
        try
        {
            File.WriteAllText(tmp, golden.Prompt);
            var r = CliRunner.Run("logits", "-m", Stories(), "-f", tmp, "--all", "--kv-type", "f32");
            Assert.Equal(0, r.ExitCode);
            using var doc = JsonDocument.Parse(r.StdoutBytes);
            var tokens = doc.RootElement.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            Assert.Equal(golden.Tokens, tokens);
            var rows = doc.RootElement.GetProperty("logits").EnumerateArray().ToArray();
            Assert.Equal(golden.Tokens.Length, rows.Length);
            for (int i = 0; i < rows.Length; i++)
            {
                var row = rows[i].EnumerateArray().Select(e => e.GetSingle()).ToArray();
                Assert.Equal(512, row.Length);
                for (int j = 0; j < row.Length; j++)
                    Assert.True(Math.Abs(row[j] - golden.PromptLogits[i][j]) < 1e-3f, $"row {i} logit {j}: {row[j]} vs {golden.PromptLogits[i][j]}");
            }
            var last = CliRunner.Run("logits", "-m", Stories(), "-f", tmp, "--kv-type", "f32");
            using var lastDoc = JsonDocument.Parse(last.StdoutBytes);
            Assert.Equal(1, lastDoc.RootElement.GetProperty("logits").GetArrayLength());
        }
        finally { File.Delete(tmp); }
    }

    [SkippableFact]
    public void InfoShowsHyperParametersAndTensors()
    {
        var r = CliRunner.Run("info", Stories("q8_0"));
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("embd 64, ff 172, blocks 5, heads 8, kv heads 4 (GQA)", r.Stdout);
        Assert.Contains("blk.4.ffn_down.weight", r.Stdout);
        Assert.Contains("q8_0", r.Stdout);
        Assert.Contains("tokenizer.ggml.model", r.Stdout);
    }

    [SkippableFact]
    public void QuantizeIntoALogWritesOneLinePerTensorAndASummary()
    {
        string output = Path.Combine(Path.GetTempPath(), $"cria-cli-q4km-{Guid.NewGuid():N}.gguf");
        try
        {
            // The runner redirects stderr, as a log file or a pipe would: no carriage-return progress line.
            var r = CliRunner.Run("quantize", Stories(), output, "Q4_K_M");
            Assert.Equal(0, r.ExitCode);
            Assert.DoesNotContain('\r', r.Stderr);
            using var f = Cria.Gguf.GgufFile.Open(output);
            int n = f.Tensors.Count;
            var lines = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            for (int i = 1; i <= n; i++) Assert.Single(lines, l => l.StartsWith($"[{i}/{n}] ", StringComparison.Ordinal));
            Assert.StartsWith($"quantized {n} tensors", lines[^1]);
        }
        finally { File.Delete(output); }
    }

    [SkippableFact]
    public void BenchJsonReportsPromptAndGenerationSpeed()
    {
        var r = CliRunner.Run("bench", "-m", Stories(), "-p", "16", "-n", "8", "-r", "2", "-t", "1", "--json");
        Assert.Equal(0, r.ExitCode);
        using var doc = JsonDocument.Parse(r.StdoutBytes);
        Assert.True(doc.RootElement.GetProperty("pp").GetDouble() > 0);
        Assert.True(doc.RootElement.GetProperty("tg").GetDouble() > 0);
        Assert.Equal(16, doc.RootElement.GetProperty("n_prompt").GetInt32());
        Assert.False(string.IsNullOrEmpty(doc.RootElement.GetProperty("kernel_path").GetString()));
        AssertOneLineError(CliRunner.Run("bench", "-m", Stories(), "-p", "0", "-n", "0"), "nothing to measure");
    }

    [Fact]
    public void MissingModelFileIsOneClearError() =>
        AssertOneLineError(CliRunner.Run("run", "-m", "/no/such/model.gguf", "-p", "x"), "not found");

    [Fact]
    public void NonGgufFileIsOneClearError()
    {
        string tmp = Path.GetTempFileName();
        try
        {
            File.WriteAllText(tmp, new string('x', 1000));
            AssertOneLineError(CliRunner.Run("run", "-m", tmp, "-p", "x"), "not a GGUF file");
            AssertOneLineError(CliRunner.Run("info", tmp), "not a GGUF file");
        }
        finally { File.Delete(tmp); }
    }

    [SkippableFact]
    public void VocabularyOnlyFileCannotRun() =>
        AssertOneLineError(CliRunner.Run("run", "-m", RefData.Require("vocab/ggml-vocab-llama-spm.gguf"), "-p", "x"), "vocabulary-only");

    [SkippableFact]
    public void PromptLongerThanTheContextIsOneClearError() =>
        AssertOneLineError(CliRunner.Run("run", "-m", Stories(), "-p", string.Join(' ', Enumerable.Repeat("word", 40)), "-c", "16"), "context");

    [SkippableTheory]
    [InlineData("--kv-type", "q4", "--kv-type")]
    [InlineData("--top-p", "1.5", "--top-p")]
    [InlineData("--min-p", "-0.5", "--min-p")]
    [InlineData("--repeat-penalty", "0", "--repeat-penalty")]
    [InlineData("-t", "-2", "--threads")]
    [InlineData("-n", "-5", "-n")]
    [InlineData("-c", "-1", "--ctx-size")]
    public void BadOptionValuesAreOneClearError(string option, string value, string mention) =>
        AssertOneLineError(CliRunner.Run("run", "-m", Stories(), "-p", "x", option, value), mention);

    [Fact]
    public void MissingPromptIsAnError()
    {
        var r = CliRunner.Run("run", "-m", "/no/such/file");
        Assert.NotEqual(0, r.ExitCode);
    }
}
