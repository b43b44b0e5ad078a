using System.CommandLine;
using System.Globalization;
using System.Text;
using Cria.Chat;
using Cria.Gguf;

namespace Cria.Cli.Commands;

/// <summary>
/// <c>cria chat-template (-m FILE | --template FILE) --input REQUEST.json [--now YYYY-MM-DD]</c>: renders one
/// conversation with a model's chat template and prints exactly the rendered text (no newline added).
/// </summary>
internal static class ChatTemplateCommand
{
    public static Command Create()
    {
        var model = new Option<string?>("--model", "-m")
        {
            Description = "GGUF file: its tokenizer.chat_template (or the built-in Llama 2/3 format when it has none) and BOS/EOS text",
        };
        var template = new Option<string?>("--template") { Description = "Jinja chat template file (raw UTF-8) instead of a model's" };
        var input = new Option<string>("--input", "-i")
        {
            Description = "request JSON: {\"messages\": [...], \"tools\", \"add_generation_prompt\", \"bos_token\", \"eos_token\", \"extra_context\"}; - reads stdin",
            Required = true,
        };
        var now = new Option<string?>("--now") { Description = "date (YYYY-MM-DD, or YYYY-MM-DDTHH:MM:SS) that strftime_now formats; default: now" };
        var cmd = new Command("chat-template", "render a conversation with a chat template (as Hugging Face's apply_chat_template) and print it");
        cmd.Options.Add(model);
        cmd.Options.Add(template);
        cmd.Options.Add(input);
        cmd.Options.Add(now);
        cmd.SetAction(r => CliErrors.Guard(() =>
        {
            string? modelPath = r.GetValue(model);
            string? templatePath = r.GetValue(template);
            if ((modelPath is null) == (templatePath is null))
                throw new CliException("give either -m FILE or --template FILE (exactly one)");

            ChatTemplateRequest request = ChatTemplateRequest.FromJson(ReadText(r.GetValue(input)!, "request"));
            DateTime? date = ParseNow(r.GetValue(now));
            try
            {
                ChatTemplate chat;
                if (modelPath != null)
                {
                    using var f = GgufFile.Open(CliErrors.RequireModelFile(modelPath));
                    chat = ChatTemplate.FromGguf(f);
                    var (bos, eos) = ChatTemplate.SpecialTokensOf(f);
                    request = With(request, request.BosToken ?? bos, request.EosToken ?? eos, date);
                }
                else
                {
                    chat = ChatTemplate.Parse(ReadText(templatePath!, "template"));
                    request = With(request, request.BosToken, request.EosToken, date);
                }
                string text = chat.Render(request);
                var stdout = CliErrors.StandardOutput;
                stdout.Write(new UTF8Encoding(false).GetBytes(text));
                stdout.Flush();
            }
            catch (ChatTemplateException e)
            {
                throw new CliException(e.Message);
            }
            return 0;
        }));
        return cmd;
    }

    private static ChatTemplateRequest With(ChatTemplateRequest r, string? bos, string? eos, DateTime? now) =>
        new(r.Messages)
        {
            Tools = r.Tools,
            Documents = r.Documents,
            AddGenerationPrompt = r.AddGenerationPrompt,
            BosToken = bos,
            EosToken = eos,
            ExtraContext = r.ExtraContext,
            Now = now ?? r.Now,
        };

    private static string ReadText(string path, string what)
    {
        if (path == "-")
        {
            using var stdin = Console.OpenStandardInput();
            using var ms = new MemoryStream();
            stdin.CopyTo(ms);
            return new UTF8Encoding(false, false).GetString(ms.ToArray());
        }
        if (Directory.Exists(path)) throw new CliException($"{path} is a directory, not a {what} file");
        if (!File.Exists(path)) throw new CliException($"{what} file not found: {path}");
        return new UTF8Encoding(false, false).GetString(File.ReadAllBytes(path));
    }

    private static DateTime? ParseNow(string? text)
    {
        if (text is null) return null;
        string[] formats = ["yyyy-MM-dd", "yyyy-MM-ddTHH:mm", "yyyy-MM-ddTHH:mm:ss", "yyyy-MM-dd HH:mm:ss"];
        if (DateTime.TryParseExact(text, formats, CultureInfo.InvariantCulture, DateTimeStyles.None, out var date)) return date;
        throw new CliException($"--now must be a date like 2024-07-26, not '{text}'");
    }
}
