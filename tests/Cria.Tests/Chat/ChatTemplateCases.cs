using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Cria.Chat;

namespace Cria.Tests.Chat;

/// <summary>Loads refdata/chat-templates/*.json: real templates and conversations rendered by Jinja2 3.1.6.</summary>
public static class ChatTemplateCases
{
    public static readonly string[] Files =
    [
        "llama2-chat.json",
        "codellama-instruct.json",
        "codellama-70b-instruct.json",
        "llama3-instruct-original.json",
        "llama3-instruct.json",
        "llama3.1-instruct.json",
        "llama3.2-instruct.json",
    ];

    public sealed record Case(string File, string Name, string Template, ChatTemplateRequest Request, string? Expected, string? ErrorMessage);

    private static readonly Dictionary<string, JsonObject> Loaded = new();

    public static JsonObject Load(string file)
    {
        lock (Loaded)
        {
            if (!Loaded.TryGetValue(file, out var doc))
            {
                string path = RefData.Require("chat-templates/" + file);
                doc = JsonNode.Parse(System.IO.File.ReadAllText(path))!.AsObject();
                Loaded[file] = doc;
            }
            return doc;
        }
    }

    /// <summary>The fixed date the renders used for <c>strftime_now</c>, read from the file's renderer notes.</summary>
    public static DateTime RenderDate(JsonObject doc)
    {
        string notes = doc["renderer"]?.ToJsonString() ?? "";
        var m = Regex.Match(notes, @"datetime\((\d{4}),\s*(\d{1,2}),\s*(\d{1,2})\)");
        return m.Success
            ? new DateTime(int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture), int.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture))
            : new DateTime(2024, 7, 26);
    }

    public static IEnumerable<Case> CasesOf(string file)
    {
        var doc = Load(file);
        DateTime date = RenderDate(doc);
        string template = doc["template"]!.GetValue<string>();
        foreach (var node in doc["cases"]!.AsArray())
        {
            var c = node!.AsObject();
            var request = ChatTemplateRequest.FromJson(c);
            request = new ChatTemplateRequest(request.Messages)
            {
                Tools = request.Tools,
                AddGenerationPrompt = request.AddGenerationPrompt,
                BosToken = request.BosToken,
                EosToken = request.EosToken,
                ExtraContext = request.ExtraContext,
                Now = date,
            };
            bool isError = c["expected_error"]?.GetValue<bool>() == true;
            yield return new Case(file, c["name"]!.GetValue<string>(), template, request,
                isError ? null : c["expected"]!.GetValue<string>(),
                isError ? c["error_message"]!.GetValue<string>() : null);
        }
    }

    public static Case Get(string file, string name) => CasesOf(file).Single(c => c.Name == name);

    /// <summary>(file, case) pairs for theories; one placeholder when the reference data is absent, which then skips.</summary>
    public static IEnumerable<object[]> Names()
    {
        if (RefData.File("chat-templates/README.md") is null)
        {
            yield return new object[] { "", "" };
            yield break;
        }
        foreach (var file in Files)
        {
            string? path = RefData.File("chat-templates/" + file);
            if (path is null) continue;
            var doc = JsonNode.Parse(System.IO.File.ReadAllText(path))!.AsObject();
            foreach (var c in doc["cases"]!.AsArray()) yield return new object[] { file, c!["name"]!.GetValue<string>() };
        }
    }
}
