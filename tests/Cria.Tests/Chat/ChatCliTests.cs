using System.Text.RegularExpressions;
using Xunit;

namespace Cria.Tests.Chat;

public class ChatCliTests
{
    private static string Stories() => RefData.Require("stories260K/stories260K-f32.gguf");

    [SkippableFact]
    public void ChatAnswersTwiceAroundAResetAndExits()
    {
        string model = Stories();
        var r = Cria.Tests.Cli.CliRunner.RunWithInput("Hello\n/reset\nHi\n/exit\n", "chat", "-m", model, "-c", "256", "-t", "2", "--temp", "0", "-n", "12");
        Assert.True(r.ExitCode == 0, r.Stderr);
        string[] answers = r.Stdout.Split("> ").Skip(1).Where(s => s.Trim().Length > 0).ToArray();
        Assert.Equal(2, answers.Length);
        Assert.All(answers, a => Assert.EndsWith("\n", a));
        Assert.Contains("(conversation cleared)", r.Stderr);
        Assert.DoesNotContain("error", r.Stderr);
    }

    [SkippableFact]
    public void ChatSuggestsDropOldestWhenTheConversationOutgrowsTheContext()
    {
        string model = Stories();
        string input = string.Concat(Enumerable.Repeat("Tell me a story about a cat\n", 4));
        var r = Cria.Tests.Cli.CliRunner.RunWithInput(input, "chat", "-m", model, "-c", "64", "-t", "2", "--temp", "0", "-n", "16");
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("--drop-oldest", r.Stderr);

        var dropped = Cria.Tests.Cli.CliRunner.RunWithInput(input, "chat", "-m", model, "-c", "64", "-t", "2", "--temp", "0", "-n", "16", "--drop-oldest");
        Assert.Equal(0, dropped.ExitCode);
        Assert.DoesNotContain("error", dropped.Stderr);
        Assert.Contains("oldest turn", dropped.Stderr);
    }

    /// <summary>Says "Hello", then asks /prompt: the rendered prompt and its token count, as printed on stderr.</summary>
    private static (string Prompt, int Tokens) PromptFor(string model, params string[] extra)
    {
        string[] args = ["chat", "-m", model, "-c", "256", "-t", "2", "--temp", "0", "-n", "4", .. extra];
        var r = Cria.Tests.Cli.CliRunner.RunWithInput("Hello\n/prompt\n/exit\n", args);
        Assert.True(r.ExitCode == 0, r.Stderr);
        var m = Regex.Match(r.Stderr, @"Ctrl-C stops an answer\.\n(?<p>.*)\n\((?<n>\d+) tokens\)\n", RegexOptions.Singleline);
        Assert.True(m.Success, r.Stderr);
        return (m.Groups["p"].Value, int.Parse(m.Groups["n"].Value, System.Globalization.CultureInfo.InvariantCulture));
    }

    [SkippableFact]
    public void ChatTemplateOptionOverridesTheModelsTemplate()
    {
        string model = Stories();
        // stories260K has no tokenizer.chat_template: the built-in Llama 2 format is its own
        var own = PromptFor(model);
        Assert.Equal("<s>[INST] Hello [/INST]", own.Prompt);
        Assert.Equal(own, PromptFor(model, "--chat-template", "llama2"));

        var llama3 = PromptFor(model, "--chat-template", "llama3");
        Assert.Equal("<s><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", llama3.Prompt);
        Assert.True(llama3.Tokens > own.Tokens, $"llama3 prompt {llama3.Tokens} tokens, llama2 prompt {own.Tokens}");

        string file = Path.Combine(Path.GetTempPath(), $"cria-template-{Guid.NewGuid():N}.jinja");
        try
        {
            File.WriteAllText(file, "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}[assistant]");
            var custom = PromptFor(model, "--chat-template", file);
            Assert.Equal("<s>[user] Hello\n[assistant]", custom.Prompt);
        }
        finally { File.Delete(file); }
    }

    [SkippableFact]
    public void BadChatTemplatesAreReportedOnOneLine()
    {
        string model = Stories();
        var r = Cria.Tests.Cli.CliRunner.RunWithInput("Hello\n", "chat", "-m", model, "--chat-template", "vicuna");
        Assert.Equal(1, r.ExitCode);
        Assert.Equal("", r.Stdout);
        Assert.Single(r.Stderr.Trim().Split('\n'));
        Assert.StartsWith("error:", r.Stderr);
        Assert.Contains("llama2, llama3", r.Stderr);

        string file = Path.Combine(Path.GetTempPath(), $"cria-template-{Guid.NewGuid():N}.jinja");
        try
        {
            File.WriteAllText(file, "{% for m in messages %}{{ m['content'] }}");
            r = Cria.Tests.Cli.CliRunner.RunWithInput("Hello\n", "chat", "-m", model, "--chat-template", file);
            Assert.Equal(1, r.ExitCode);
            Assert.Single(r.Stderr.Trim().Split('\n'));
            Assert.StartsWith("error: invalid chat template", r.Stderr);

            // A template that refuses the conversation: the error is reported and the chat goes on.
            File.WriteAllText(file, "{{ raise_exception('this template takes no chat') }}");
            r = Cria.Tests.Cli.CliRunner.RunWithInput("Hello\n/prompt\n/exit\n", "chat", "-m", model, "-c", "64", "--chat-template", file);
            Assert.True(r.ExitCode == 0, r.Stderr);
            Assert.Contains("error: the chat template failed: this template takes no chat", r.Stderr);
            Assert.Contains("(no prompt yet)", r.Stderr);
        }
        finally { File.Delete(file); }
    }

    [SkippableFact]
    public void InfillOnAModelWithoutFimTokensIsAOneLineError()
    {
        string model = Stories();
        var r = Cria.Tests.Cli.CliRunner.RunWithInput("", "infill", "-m", model, "--prefix", "def f(", "--suffix", ")");
        Assert.Equal(1, r.ExitCode);
        Assert.StartsWith("error:", r.Stderr.Trim());
        Assert.Contains("fill-in-the-middle", r.Stderr);
        Assert.Equal("", r.Stdout);
    }
}
