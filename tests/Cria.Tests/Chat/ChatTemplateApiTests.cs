using System.Text.Json.Nodes;
using Cria.Chat;
using Cria.Gguf;
using Xunit;

namespace Cria.Tests.Chat;

public class ChatTemplateApiTests
{
    private static ChatTemplateException RenderError(string template, string contextJson = "{}") =>
        Assert.Throws<ChatTemplateException>(() => JinjaSemanticsTests.Render(template, contextJson));

    [Fact]
    public void RaiseExceptionCarriesTheTemplatesMessage()
    {
        var e = RenderError("{% if true %}{{ raise_exception('Roles must alternate: ' ~ 2) }}{% endif %}");
        Assert.Equal(ChatTemplateErrorKind.Raised, e.Kind);
        Assert.Equal("Roles must alternate: 2", e.Message);
    }

    [Fact]
    public void SyntaxErrorsAreTypedAndCarryTheLine()
    {
        var e = Assert.Throws<ChatTemplateException>(() => ChatTemplate.Parse("line 1\n{% if x %}\n{{ 1 +* 2 }}\n{% endif %}"));
        Assert.Equal(ChatTemplateErrorKind.Syntax, e.Kind);
        Assert.Equal(3, e.Line);
        Assert.Contains("unexpected '*'", e.Message);

        Assert.Equal(ChatTemplateErrorKind.Syntax, Assert.Throws<ChatTemplateException>(() => ChatTemplate.Parse("{% if x %}open")).Kind);
        Assert.Equal(ChatTemplateErrorKind.Syntax, Assert.Throws<ChatTemplateException>(() => ChatTemplate.Parse("{% frobnicate %}")).Kind);
        Assert.Equal(ChatTemplateErrorKind.Syntax, Assert.Throws<ChatTemplateException>(() => ChatTemplate.Parse("{# open")).Kind);
        Assert.Equal(ChatTemplateErrorKind.Syntax, Assert.Throws<ChatTemplateException>(() => ChatTemplate.Parse("{{ 'open }}")).Kind);
        Assert.Equal(ChatTemplateErrorKind.Syntax, Assert.Throws<ChatTemplateException>(() => ChatTemplate.Parse("{% include 'x' %}")).Kind);
    }

    [Theory]
    [InlineData("{{ missing.attr }}", "'missing' is undefined")]
    [InlineData("{{ missing['k'] }}", "'missing' is undefined")]
    [InlineData("{{ missing + 1 }}", "'missing' is undefined")]
    [InlineData("{{ m.nothing.deeper }}", "'dict object' has no attribute 'nothing'")]
    [InlineData("{{ 'a' + 1 }}", "can only concatenate str (not \"int\") to str")]
    [InlineData("{{ 1 / 0 }}", "division by zero")]
    [InlineData("{{ m | frobnicate }}", "No filter named 'frobnicate'.")]
    [InlineData("{% for x in none %}{% endfor %}", "'NoneType' object is not iterable")]
    [InlineData("{{ m | tojson }}{{ missing | tojson }}", "Object of type Undefined is not JSON serializable")]
    [InlineData("{% set xs = [] %}{{ xs.append(1) }}", "access to attribute 'append' of 'list' object is unsafe.")]
    [InlineData("{% macro f(a) %}{% endmacro %}{{ f(1, 2) }}", "macro 'f' takes not more than 1 argument(s)")]
    [InlineData("{% set n = 5 %}{{ n[1:] }}", "'int' object is not subscriptable")]
    [InlineData("{{ m[1:] }}", "unhashable type: 'slice'")]
    public void RuntimeErrorsMatchJinja(string template, string message)
    {
        var e = RenderError(template, "{\"m\": {}}");
        Assert.Equal(ChatTemplateErrorKind.Runtime, e.Kind);
        Assert.Equal(message, e.Message);
    }

    [Fact]
    public void StandardVariablesFollowHuggingFace()
    {
        var t = ChatTemplate.Parse("{{ tools is defined }} {{ tools is none }} {{ bos_token is defined }} {{ add_generation_prompt }} {{ messages | length }} {{ extra is defined }}");
        var request = new ChatTemplateRequest([ChatMessage.User("hi")]);
        Assert.Equal("True True False False 1 False", t.Render(request));
        var withTokens = new ChatTemplateRequest([ChatMessage.User("hi")])
        {
            BosToken = "<s>",
            AddGenerationPrompt = true,
            Tools = new JsonArray(),
            ExtraContext = new JsonObject { ["extra"] = 1 },
        };
        Assert.Equal("True False True True 1 True", t.Render(withTokens));
    }

    [Fact]
    public void ChatMessagesBecomeTheJsonTheTemplateSees()
    {
        var toolCalls = JsonNode.Parse("""[{"type": "function", "function": {"name": "f", "arguments": {"b": 1, "a": "é"}}}]""")!.AsArray();
        var request = new ChatTemplateRequest(
        [
            ChatMessage.System("sys"),
            new ChatMessage("assistant", null) { ToolCalls = toolCalls },
            new ChatMessage("tool", "42") { Name = "f", ToolCallId = "call_1" },
        ]);
        var t = ChatTemplate.Parse("{{ messages | tojson }}");
        Assert.Equal(
            """[{"role": "system", "content": "sys"}, {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"b": 1, "a": "é"}}}]}, {"role": "tool", "content": "42", "name": "f", "tool_call_id": "call_1"}]""",
            t.Render(request));
    }

    [Fact]
    public void RequestFromJsonReadsTheReferenceCaseShape()
    {
        var r = ChatTemplateRequest.FromJson("""
            {"name": "x", "messages": [{"role": "user", "content": "hi"}], "tools": null, "add_generation_prompt": true,
             "extra_context": {"date_string": "1 Jan 2025"}, "bos_token": "<s>", "eos_token": "</s>", "expected": "ignored"}
            """);
        Assert.True(r.AddGenerationPrompt);
        Assert.Equal("<s>", r.BosToken);
        Assert.Equal("</s>", r.EosToken);
        Assert.Null(r.Tools);
        Assert.Equal("1 Jan 2025", ChatTemplate.Parse("{{ date_string }}").Render(r));

        Assert.Throws<InvalidDataException>(() => ChatTemplateRequest.FromJson("""{"add_generation_prompt": true}"""));
        Assert.Throws<InvalidDataException>(() => ChatTemplateRequest.FromJson("""{"messages": [], "add_generation_prompt": "yes"}"""));
        Assert.Throws<InvalidDataException>(() => ChatTemplateRequest.FromJson("[1, 2"));
    }

    [Fact]
    public void StrftimeNowUsesTheInjectedClock()
    {
        var t = ChatTemplate.Parse("{{ strftime_now('%d %b %Y') }}");
        var request = new ChatTemplateRequest([ChatMessage.User("x")]) { Now = new DateTime(2025, 1, 5) };
        Assert.Equal("05 Jan 2025", t.Render(request));
        Assert.Equal(DateTime.Now.ToString("yyyy"), ChatTemplate.Parse("{{ strftime_now('%Y') }}").Render(new ChatTemplateRequest(Array.Empty<ChatMessage>())));
    }

    [Fact]
    public void BuiltInLlama2Format()
    {
        var request = new ChatTemplateRequest(
        [
            ChatMessage.System("Be brief."),
            ChatMessage.User(" Hi "),
            ChatMessage.Assistant("Hello!"),
            ChatMessage.User("Bye"),
        ]) { BosToken = "<s>", EosToken = "</s>", AddGenerationPrompt = true };
        // As in Meta's template, strip() applies to the system block plus the user text, so " Hi" keeps its space.
        Assert.Equal("<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n Hi [/INST] Hello! </s><s>[INST] Bye [/INST]", ChatTemplate.Llama2.Render(request));

        var e = Assert.Throws<ChatTemplateException>(() => ChatTemplate.Llama2.Render(new ChatTemplateRequest([ChatMessage.Assistant("first")])));
        Assert.Equal(ChatTemplateErrorKind.Raised, e.Kind);
    }

    [Fact]
    public void BuiltInLlama3Format()
    {
        var request = new ChatTemplateRequest([ChatMessage.System("sys"), ChatMessage.User("hi\n")])
        {
            BosToken = "<|begin_of_text|>",
            EosToken = "<|eot_id|>",
            AddGenerationPrompt = true,
        };
        Assert.Equal(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nsys<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
            ChatTemplate.Llama3.Render(request));
    }

    private static GgufFile TinyGguf(string tokenizerModel, string? chatTemplate)
    {
        var w = new GgufWriter()
            .Set("general.architecture", "llama")
            .Set("tokenizer.ggml.model", tokenizerModel)
            .Set("tokenizer.ggml.tokens", GgufArray.Of(["<unk>", "<BOS>", "<EOS>", "a"]))
            .Set("tokenizer.ggml.bos_token_id", 1u)
            .Set("tokenizer.ggml.eos_token_id", 2u);
        if (chatTemplate != null) w.Set("tokenizer.chat_template", chatTemplate);
        using var ms = new MemoryStream();
        w.WriteTo(ms);
        return GgufFile.FromBytes(ms.ToArray());
    }

    [Fact]
    public void FromGgufPrefersTheEmbeddedTemplateAndFallsBackByTokenizer()
    {
        using (var f = TinyGguf("llama", "{{ bos_token }}[{{ messages[0].content }}]"))
        {
            var (bos, eos) = ChatTemplate.SpecialTokensOf(f);
            Assert.Equal("<BOS>", bos);
            Assert.Equal("<EOS>", eos);
            var request = new ChatTemplateRequest([ChatMessage.User("x")]) { BosToken = bos, EosToken = eos };
            Assert.Equal("<BOS>[x]", ChatTemplate.FromGguf(f).Render(request));
        }
        using (var f = TinyGguf("llama", null)) Assert.Same(ChatTemplate.Llama2, ChatTemplate.FromGguf(f));
        using (var f = TinyGguf("gpt2", null)) Assert.Same(ChatTemplate.Llama3, ChatTemplate.FromGguf(f));
    }

    [SkippableFact]
    public void RealSpmVocabularyGivesLlama2TokensAndFormat()
    {
        using var f = GgufFile.Open(RefData.Require("llama2-tokenizer/ggml-vocab-llama-spm.gguf"));
        Assert.Equal(("<s>", "</s>"), ChatTemplate.SpecialTokensOf(f));
        if (f.GetString("tokenizer.chat_template") is null) Assert.Same(ChatTemplate.Llama2, ChatTemplate.FromGguf(f));
    }
}
