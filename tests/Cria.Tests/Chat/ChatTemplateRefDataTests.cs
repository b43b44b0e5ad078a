using Cria.Chat;
using Xunit;

namespace Cria.Tests.Chat;

/// <summary>Every reference conversation renders byte-identically to Jinja2 (or raises the template's own error).</summary>
public class ChatTemplateRefDataTests
{
    public static IEnumerable<object[]> Cases() => ChatTemplateCases.Names();

    [SkippableTheory]
    [MemberData(nameof(Cases))]
    public void RendersLikeJinja2(string file, string name)
    {
        Skip.If(file.Length == 0, RefData.MissingReason);
        var c = ChatTemplateCases.Get(file, name);
        var template = ChatTemplate.Parse(c.Template);
        if (c.ErrorMessage != null)
        {
            var e = Assert.Throws<ChatTemplateException>(() => template.Render(c.Request));
            Assert.Equal(ChatTemplateErrorKind.Raised, e.Kind);
            Assert.Equal(c.ErrorMessage, e.Message);
        }
        else
        {
            Assert.Equal(c.Expected, template.Render(c.Request));
        }
    }

    [SkippableFact]
    public void AllSevenFilesAreThere()
    {
        Skip.If(RefData.Directory is null, RefData.MissingReason);
        int total = ChatTemplateCases.Files.Sum(f => ChatTemplateCases.CasesOf(f).Count());
        Assert.Equal(57, total);
    }

    [SkippableTheory]
    [InlineData("llama2-chat.json")]
    [InlineData("llama3-instruct.json")]
    public void BuiltInTemplateRendersLikeTheRealOne(string file)
    {
        var builtIn = file.StartsWith("llama2", StringComparison.Ordinal) ? ChatTemplate.Llama2 : ChatTemplate.Llama3;
        int checkedCases = 0;
        foreach (var c in ChatTemplateCases.CasesOf(file))
        {
            if (c.ErrorMessage != null)
            {
                var e = Assert.Throws<ChatTemplateException>(() => builtIn.Render(c.Request));
                Assert.Equal(c.ErrorMessage, e.Message);
            }
            else
            {
                Assert.True(c.Expected == builtIn.Render(c.Request), $"{file}/{c.Name}");
            }
            checkedCases++;
        }
        Assert.Equal(8, checkedCases);
    }
}
