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
