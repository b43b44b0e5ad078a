using System.Text;
using System.Text.Json.Nodes;
using Cria.Tests.Cli;
using Xunit;

namespace Cria.Tests.Chat;

/// <summary><c>cria chat-template</c> end to end.</summary>
public class ChatTemplateCliTests
{
    private static string TempFile(string name, string text)
    {
        string dir = Path.Combine(Path.GetTempPath(), "cria-chat-template-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        string path = Path.Combine(dir, name);
        File.WriteAllBytes(path, new UTF8Encoding(false).GetBytes(text));
        return path;
    }

    private static (string Template, string Request) CaseFiles(string file, string caseName)
    {
        var doc = ChatTemplateCases.Load(file);
        var c = doc["cases"]!.AsArray().Single(n => n!["name"]!.GetValue<string>() == caseName)!;
        return (TempFile("template.jinja", doc["template"]!.GetValue<string>()), TempFile("request.json", c.ToJsonString()));
    }

    [SkippableFact]
    public void PrintsExactlyTheRenderedText()
    {
        var c = ChatTemplateCases.Get("llama3.2-instruct.json", "tools_in_first_user_message");
        var (template, request) = CaseFiles("llama3.2-instruct.json", "tools_in_first_user_message");
        var r = CliRunner.Run("chat-template", "--template", template, "--input", request, "--now", "2024-07-26");
        Assert.Equal(0, r.ExitCode);
        Assert.Equal(Encoding.UTF8.GetBytes(c.Expected!), r.StdoutBytes);
    }

    [SkippableFact]
    public void RaiseExceptionExitsWithTheTemplatesMessage()
    {
        var c = ChatTemplateCases.Get("llama2-chat.json", "error_two_user_messages_in_a_row");
        var (template, request) = CaseFiles("llama2-chat.json", "error_two_user_messages_in_a_row");
        var r = CliRunner.Run("chat-template", "--template", template, "--input", request);
        Assert.Equal(1, r.ExitCode);
        Assert.Equal("error: " + c.ErrorMessage, r.Stderr.TrimEnd('\r', '\n'));
        Assert.Empty(r.StdoutBytes);
    }

    [SkippableFact]
    public void ModelFileGivesBuiltInFormatAndSpecialTokens()
    {
        string vocab = RefData.Require("llama2-tokenizer/ggml-vocab-llama-spm.gguf");
        string request = TempFile("request.json", new JsonObject
        {
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "hi" }),
        }.ToJsonString());
        var r = CliRunner.Run("chat-template", "-m", vocab, "--input", request);
        Assert.Equal(0, r.ExitCode);
        Assert.Equal("<s>[INST] hi [/INST]", r.Stdout);
    }

    [SkippableFact]
    public void NeedsExactlyOneTemplateSource()
    {
        string request = TempFile("request.json", "{\"messages\": []}");
        var r = CliRunner.Run("chat-template", "--input", request);
        Assert.Equal(1, r.ExitCode);
        Assert.StartsWith("error: give either -m FILE or --template FILE", r.Stderr);
        Assert.Empty(r.StdoutBytes);
    }
}
