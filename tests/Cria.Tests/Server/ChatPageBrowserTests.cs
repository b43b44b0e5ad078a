using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using Cria.Chat;
using Microsoft.Playwright;
using Xunit;
using static Cria.Tests.Server.ServerTestUtil;

namespace Cria.Tests.Server;

/// <summary>
/// The web chat page at <c>GET /</c>, driven in headless Chromium: streamed answers equal the model's greedy
/// answer for the conversation the page keeps, Stop ends a generation and frees the slot, API errors are shown,
/// and model text is rendered as escaped markdown, never as HTML.
/// </summary>
[Collection("CriaServer")]
public sealed class ChatPageBrowserTests : IClassFixture<ChatPageFixture>
{
    private const string LastAnswer = "#messages .msg.assistant:last-child .content";

    private readonly ChatPageFixture _f;

    public ChatPageBrowserTests(ChatPageFixture fixture) => _f = fixture;

    [SkippableFact]
    public async Task PageIsServedWithoutTheApiKeyAndLoadsNothingFromElsewhere()
    {
        var (_, server) = _f.RequireServer();
        using var client = NewClient(server);
        using var response = await client.GetAsync("/");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/html", response.Content.Headers.ContentType?.MediaType);
        string csp = string.Join(";", response.Headers.GetValues("Content-Security-Policy"));
        Assert.Contains("default-src 'none'", csp);
        Assert.Contains("connect-src 'self'", csp);
        string html = await response.Content.ReadAsStringAsync();
        foreach (string id in new[] { "input", "send", "stop", "messages", "system", "temperature", "max-tokens", "api-key", "new-chat", "error" })
            Assert.Contains($"id=\"{id}\"", html);
        Assert.DoesNotMatch(new Regex(@"(src|href)\s*=\s*[""']?(https?:)?//", RegexOptions.IgnoreCase), html);

        // Only the page is exempt from the key.
        using var models = await client.GetAsync("/v1/models");
        Assert.Equal(HttpStatusCode.Unauthorized, models.StatusCode);
    }

    [SkippableFact]
    public async Task StreamedAnswersEqualGreedyGenerationOfTheWholeConversation()
    {
        var (model, _) = _f.RequireServer();
        var page = await _f.OpenChatPageAsync();
        try
        {
            const string system = "You tell stories.";
            await ConfigureAsync(page, system: system, temperature: "0", maxTokens: "60");
            await page.FillAsync("#input", "Tell me about a cat.");
            await page.ClickAsync("#send");
            await WaitIdleAsync(page);

            var turns = await HistoryAsync(page);
            Assert.Equal(new[] { "user", "assistant" }, turns.Select(t => t.Role));
            var conversation = new List<ChatMessage> { new("system", system), new("user", "Tell me about a cat.") };
            var first = ChatReference.Greedy(model, conversation, 60, ChatPageFixture.Context);
            Assert.False(string.IsNullOrWhiteSpace(first.Text));
            Assert.Equal(first.Text, turns[1].Content);
            Assert.False(string.IsNullOrWhiteSpace(await page.TextContentAsync(LastAnswer)));
            Assert.Contains($"{first.PromptTokens} prompt + {first.Stats.GeneratedTokens} generated tokens", await page.TextContentAsync("#status"));
            Assert.Equal("", await page.TextContentAsync("#error"));

            // The second turn sends the whole conversation again (Enter sends too).
            await page.FillAsync("#input", "What did the cat do next?");
            await page.PressAsync("#input", "Enter");
            await WaitIdleAsync(page);
            turns = await HistoryAsync(page);
            Assert.Equal(new[] { "user", "assistant", "user", "assistant" }, turns.Select(t => t.Role));
            conversation.Add(new ChatMessage("assistant", first.Text));
            conversation.Add(new ChatMessage("user", "What did the cat do next?"));
            var second = ChatReference.Greedy(model, conversation, 60, ChatPageFixture.Context);
            Assert.Equal(second.Text, turns[3].Content);
            Assert.Equal(4, await page.Locator("#messages .msg").CountAsync());
            Assert.Equal("What did the cat do next?", await page.TextContentAsync("#messages .msg.user >> nth=1"));

            await page.ClickAsync("#new-chat");
            Assert.Equal(0, await page.Locator("#messages .msg").CountAsync());
            Assert.Empty(await HistoryAsync(page));
        }
        finally
        {
            await page.CloseAsync();
        }
    }

    [SkippableFact]
    public async Task StopEndsALongAnswerAndFreesTheSlot()
    {
        var (model, server) = _f.RequireServer();
        var page = await _f.OpenChatPageAsync();
        try
        {
            using var client = NewClient(server);
            // No token limit: at temperature 0 stories260K fills the 4096-token context, which takes many seconds.
            await ConfigureAsync(page, temperature: "0", maxTokens: "");
            await page.FillAsync("#input", "Tell me a long story.");
            await page.ClickAsync("#send");
            Assert.Equal("generating", await page.GetAttributeAsync("body", "data-state"));

            // The answer streams in: it appears, then grows.
            await page.WaitForFunctionAsync($"() => document.querySelector('{LastAnswer}')?.textContent.length > 0");
            int seen = await AnswerLengthAsync(page);
            await page.WaitForFunctionAsync($"n => document.querySelector('{LastAnswer}').textContent.length > n", seen);
            Assert.Equal(1, (int)(await GetObjectAsync(client, "/health"))["slots_processing"]!);
            Assert.True(await page.IsEnabledAsync("#stop"));
            Assert.False(await page.IsEnabledAsync("#send"));

            await page.ClickAsync("#stop");
            await page.WaitForFunctionAsync("() => document.body.dataset.state === 'idle'");
            Assert.False(await page.IsEnabledAsync("#stop"));
            Assert.True(await page.IsEnabledAsync("#send"));
            Assert.Equal("true", await page.GetAttributeAsync("#messages .msg.assistant:last-child", "data-stopped"));
            Assert.Equal("stopped", await page.TextContentAsync("#status"));
            Assert.Equal("", await page.TextContentAsync("#error"));
            int stopped = await AnswerLengthAsync(page);
            await Task.Delay(700);
            Assert.Equal(stopped, await AnswerLengthAsync(page));

            // The server cancels the generation and frees its only slot.
            var deadline = DateTime.UtcNow.AddSeconds(5);
            int processing;
            while ((processing = (int)(await GetObjectAsync(client, "/health"))["slots_processing"]!) != 0 && DateTime.UtcNow < deadline)
                await Task.Delay(50);
            Assert.Equal(0, processing);

            // The page keeps the partial answer: the start of the greedy answer.
            var turns = await HistoryAsync(page);
            Assert.Equal(2, turns.Length);
            string partial = turns[1].Content;
            Assert.NotEmpty(partial);
            var full = ChatReference.Greedy(model, new[] { new ChatMessage("user", "Tell me a long story.") },
                Math.Min(partial.Length + 8, 3000), ChatPageFixture.Context);
            Assert.StartsWith(partial, full.Text, StringComparison.Ordinal);

            // The conversation goes on (the single slot is free again).
            await page.FillAsync("#max-tokens", "8");
            await page.FillAsync("#input", "And then?");
            await page.ClickAsync("#send");
            await WaitIdleAsync(page);
            turns = await HistoryAsync(page);
            Assert.Equal(4, turns.Length);
            Assert.Contains("generated tokens", await page.TextContentAsync("#status"));
            Assert.Equal("", await page.TextContentAsync("#error"));
        }
        finally
        {
            await page.CloseAsync();
        }
    }

    [SkippableFact]
    public async Task ApiErrorsAreShownAndTheMessageIsGivenBack()
    {
        _f.RequireServer();
        var page = await _f.OpenChatPageAsync();
        try
        {
            // Without a key the page says that the server needs one.
            await page.WaitForFunctionAsync("() => document.getElementById('model').textContent.includes('API key')");

            async Task<string> SendExpectingErrorAsync()
            {
                await page.FillAsync("#input", "Hello there");
                await page.ClickAsync("#send");
                await page.WaitForFunctionAsync("() => document.getElementById('error').textContent !== ''");
                await WaitIdleAsync(page);
                Assert.Equal(0, await page.Locator("#messages .msg").CountAsync());
                Assert.Equal("Hello there", await page.InputValueAsync("#input"));
                Assert.Empty(await HistoryAsync(page));
                return (await page.TextContentAsync("#error"))!;
            }

            await ConfigureAsync(page, apiKey: "", temperature: "0", maxTokens: "4");
            string missing = await SendExpectingErrorAsync();
            Assert.Contains("missing API key", missing);
            Assert.Contains("HTTP 401", missing);

            await ConfigureAsync(page, apiKey: "not-the-key", temperature: "0", maxTokens: "4");
            Assert.Contains("invalid API key", await SendExpectingErrorAsync());

            await ConfigureAsync(page, temperature: "-1", maxTokens: "4");
            string invalid = await SendExpectingErrorAsync();
            Assert.Contains("temperature", invalid);
            Assert.Contains("HTTP 400", invalid);

            // Fixed settings: the same message goes through and the error is cleared.
            await ConfigureAsync(page, temperature: "0", maxTokens: "4");
            await page.ClickAsync("#send");
            await WaitIdleAsync(page);
            Assert.Equal("", await page.TextContentAsync("#error"));
            Assert.Equal(2, (await HistoryAsync(page)).Length);
        }
        finally
        {
            await page.CloseAsync();
        }
    }

    [SkippableFact]
    public async Task MarkdownIsRenderedFromEscapedText()
    {
        _f.RequireServer();
        var page = await _f.OpenChatPageAsync();
        try
        {
            async Task<string> Render(string markdown) => await page.EvaluateAsync<string>("s => window.criaChat.renderMarkdown(s)", markdown);

            Assert.Equal("<p>&lt;script&gt;alert(1)&lt;/script&gt; &lt;img src=x onerror=&quot;alert(1)&quot;&gt;</p>",
                await Render("<script>alert(1)</script> <img src=x onerror=\"alert(1)\">"));
            Assert.Equal("<pre><code class=\"language-js\">let a = &#39;&lt;b&gt;&#39;;\n\n**no**</code></pre><p>after</p>",
                await Render("```js\nlet a = '<b>';\n\n**no**\n```\nafter"));
            Assert.Equal("<p>Use <code>x &lt; y &amp;&amp; *z*</code>, <strong>bold</strong> and <em>it</em> but not 2*3*4</p>",
                await Render("Use `x < y && *z*`, **bold** and *it* but not 2*3*4"));
            Assert.Equal("<p><strong>&lt;i&gt;x&lt;/i&gt;</strong></p>", await Render("**<i>x</i>**"));
            Assert.Equal("<ul><li>one</li><li><em>two</em></li></ul><ol><li>first</li><li>second</li></ol>",
                await Render("- one\n* *two*\n\n1. first\n2) second"));
            Assert.Equal("<p>line 1<br>line 2</p><p>next</p>", await Render("line 1\r\nline 2\n\n\nnext"));
            Assert.Equal("<h2>Title</h2><p>text</p>", await Render("## Title\ntext"));
            Assert.Equal("<pre><code>still streaming &lt;</code></pre>", await Render("```\nstill streaming <"));
            Assert.Equal("<pre><code class=\"language-c++\"></code></pre>", await Render("```c++\n```"));
            Assert.Equal("", await Render(""));

            // A streamed answer full of markup ends up as text: no element is created from it, no script runs.
            const string evil = "<img src=x onerror=\"window.__pwned=1\"><script>window.__pwned=2</script>**ok**";
            await page.RouteAsync("**/v1/chat/completions", route => route.FulfillAsync(new RouteFulfillOptions
            {
                Status = 200,
                ContentType = "text/event-stream",
                Body = string.Concat(
                    Event(new { choices = new[] { new { index = 0, delta = new { role = "assistant", content = "" }, finish_reason = (string?)null } } }),
                    Event(new { choices = new[] { new { index = 0, delta = new { content = evil[..20] }, finish_reason = (string?)null } } }),
                    Event(new { choices = new[] { new { index = 0, delta = new { content = evil[20..] }, finish_reason = (string?)null } } }),
                    Event(new { choices = new[] { new { index = 0, delta = new { content = "" }, finish_reason = "stop" } } }),
                    "data: [DONE]\n\n"),
            }));
            await ConfigureAsync(page, temperature: "0", maxTokens: "8");
            await page.FillAsync("#input", "<b>not bold</b>");
            await page.ClickAsync("#send");
            await WaitIdleAsync(page);
            Assert.Equal(0, await page.Locator("#messages img, #messages script, #messages b").CountAsync());
            Assert.Null(await page.EvaluateAsync<int?>("() => window.__pwned ?? null"));
            Assert.Equal("<b>not bold</b>", await page.TextContentAsync("#messages .msg.user"));
            Assert.Equal("<img src=x onerror=\"window.__pwned=1\"><script>window.__pwned=2</script>ok", await page.TextContentAsync(LastAnswer));
            Assert.Equal("ok", await page.TextContentAsync($"{LastAnswer} strong"));
            Assert.Equal(evil, (await HistoryAsync(page))[1].Content);
        }
        finally
        {
            await page.CloseAsync();
        }
    }

    private static string Event(object payload) => "data: " + JsonSerializer.Serialize(payload) + "\n\n";

    /// <summary>Opens the settings and fills them in (the API key defaults to the server's).</summary>
    private static async Task ConfigureAsync(IPage page, string? apiKey = ChatPageFixture.ApiKey, string system = "", string temperature = "0", string maxTokens = "")
    {
        await page.EvaluateAsync("() => { document.getElementById('settings').open = true; }");
        await page.FillAsync("#api-key", apiKey ?? "");
        await page.FillAsync("#system", system);
        await page.FillAsync("#temperature", temperature);
        await page.FillAsync("#max-tokens", maxTokens);
    }

    /// <summary>Waits until no request is running and the last answer is complete.</summary>
    private static Task WaitIdleAsync(IPage page) =>
        page.WaitForFunctionAsync("() => document.body.dataset.state === 'idle' && !document.querySelector('.msg.pending')");

    private static Task<int> AnswerLengthAsync(IPage page) =>
        page.EvaluateAsync<int>($"() => document.querySelector('{LastAnswer}').textContent.length");

    private sealed record Turn(string Role, string Content);

    /// <summary>The conversation as the page sends it.</summary>
    private static async Task<Turn[]> HistoryAsync(IPage page)
    {
        var json = await page.EvaluateAsync<JsonElement>("() => window.criaChat.history()");
        return json.EnumerateArray().Select(t => new Turn(t.GetProperty("role").GetString()!, t.GetProperty("content").GetString()!)).ToArray();
    }

    private static async Task<System.Text.Json.Nodes.JsonObject> GetObjectAsync(HttpClient client, string path)
    {
        using var response = await client.GetAsync(path);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return await ReadObjectAsync(response);
    }
}
