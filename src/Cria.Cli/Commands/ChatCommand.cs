using System.CommandLine;
using System.Text;
using Cria.Chat;
using Cria.Generation;
using Cria.Model;
using Cria.Sampling;

namespace Cria.Cli.Commands;

/// <summary>
/// <c>cria chat</c>: an interactive conversation on stdin/stdout using the model's chat template (or the one
/// <c>--chat-template</c> names). Lines starting with "/" are commands (/reset, /system TEXT, /prompt, /exit); Ctrl-C
/// stops the current answer.
/// </summary>
internal static class ChatCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var system = new Option<string?>("--system") { Description = "system prompt" };
        var n = new Option<int>("--n-predict", "-n") { Description = "most tokens per answer (-1: until end of turn or a full context)", DefaultValueFactory = _ => -1 };
        var temp = CommonOptions.Temperature(0.8f);
        var seed = CommonOptions.Seed();
        var dropOldest = new Option<bool>("--drop-oldest") { Description = "when the conversation outgrows the context, forget the oldest turns" };
        var template = CommonOptions.ChatTemplate();
        var ctx = CommonOptions.Context();
        var threads = CommonOptions.Threads();
        var repack = new RepackOptions();
        var kv = CommonOptions.KvType();

        var cmd = new Command("chat", "chat with a model interactively (stdin/stdout)");
        foreach (Option o in new Option[] { model, system, n, temp, seed, dropOldest, template, ctx, threads, kv, repack.NoRepack, repack.Cache })
            cmd.Options.Add(o);
        // A synchronous action: Ctrl-C is handled here (it stops an answer) rather than ending the process.
        cmd.SetAction((ParseResult r) => CliErrors.Guard(() =>
        {
            int maxTokens = r.GetValue(n);
            if (maxTokens < -1) throw new CliException($"-n must be -1 or more, not {maxTokens}");
            var sampling = new SamplerOptions { Temperature = r.GetValue(temp), Seed = r.GetValue(seed) };
            var kvType = CliErrors.ParseKvType(r.GetValue(kv));
            int nThreads = CommonOptions.ResolveThreads(r.GetValue(threads));
            ChatTemplate? chatTemplate = CommonOptions.ResolveChatTemplate(r.GetValue(template));
            string path = CliErrors.RequireModelFile(r.GetValue(model));

            using var llama = RepackOptions.Load(path, repack.ModelOptions(r, nThreads));
            int ctxSize = CommonOptions.ResolveContext(r.GetValue(ctx), llama.Config.ContextLength);
            using var session = new LlamaSession(llama, new ContextOptions { ContextSize = ctxSize, KvCacheType = kvType });
            var chat = new ChatSession(session, new ChatSessionOptions
            {
                SystemPrompt = r.GetValue(system),
                Template = chatTemplate,
                OverflowPolicy = r.GetValue(dropOldest) ? ContextOverflowPolicy.DropOldestTurns : ContextOverflowPolicy.Throw,
            });
            var options = new GenerationOptions { MaxTokens = maxTokens, Sampling = sampling };
            return Repl(chat, options, ctxSize);
        }));
        return cmd;
    }

    private static int Repl(ChatSession chat, GenerationOptions options, int ctxSize)
    {
        var stdout = CliErrors.StandardOutput;
        var encoder = new UTF8Encoding(false);
        void Write(string s)
        {
            stdout.Write(encoder.GetBytes(s));
            stdout.Flush();
        }

        Console.Error.WriteLine($"cria chat: context {ctxSize} tokens. Commands: /reset, /system TEXT, /prompt, /exit. Ctrl-C stops an answer.");
        CancellationTokenSource? answering = null;
        var gate = new object();
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            lock (gate)
            {
                if (answering is null) return; // at the prompt: Ctrl-C leaves as usual
                e.Cancel = true;
                answering.Cancel();
            }
        };
        Console.CancelKeyPress += onCancel;
        try
        {
            while (true)
            {
                Write("> ");
                string? line = Console.In.ReadLine();
                if (line is null)
                {
                    Write("\n");
                    return 0;
                }
                string input = line.Trim();
                if (input.Length == 0) continue;
                if (input.StartsWith('/'))
                {
                    string command = input.Split(' ', 2)[0];
                    string argument = input.Length > command.Length ? input[command.Length..].Trim() : "";
                    switch (command)
                    {
                        case "/exit" or "/quit":
                            return 0;
                        case "/reset":
                            chat.Reset();
                            Console.Error.WriteLine("(conversation cleared)");
                            continue;
                        case "/system":
                            chat.SystemPrompt = argument.Length == 0 ? null : argument;
                            Console.Error.WriteLine(argument.Length == 0 ? "(system prompt removed)" : "(system prompt set)");
                            continue;
                        case "/prompt":
                            // the last prompt exactly as rendered by the chat template, then its token count
                            if (chat.LastPrompt is null) Console.Error.WriteLine("(no prompt yet)");
                            else Console.Error.WriteLine($"{chat.LastPrompt}\n({chat.LastPromptTokenCount} tokens)");
                            continue;
                        default:
                            Console.Error.WriteLine($"unknown command {command}; commands: /reset, /system TEXT, /prompt, /exit");
                            continue;
                    }
                }

                using var cts = new CancellationTokenSource();
                lock (gate) answering = cts;
                int dropped = chat.DroppedTurns;
                try
                {
                    Answer(chat, input, options, cts.Token, Write);
                }
                catch (ChatTemplateException e)
                {
                    // e.g. a template's raise_exception("...") for a conversation it does not accept
                    Console.Error.WriteLine($"error: the chat template failed: {e.Message.ReplaceLineEndings(" ")}");
                    continue;
                }
                catch (ContextOverflowException e)
                {
                    Console.Error.WriteLine(chat.OverflowPolicy == ContextOverflowPolicy.DropOldestTurns
                        ? $"error: this message alone does not fit the context ({e.Needed} tokens needed with room for the answer, {e.ContextSize} available); use a larger -c or a shorter message"
                        : $"error: the conversation has outgrown the context ({e.Needed} tokens needed with room for the answer, {e.ContextSize} available); use /reset, a larger -c, or --drop-oldest to forget old turns");
                    continue;
                }
                finally
                {
                    lock (gate) answering = null;
                }
                if (chat.DroppedTurns > dropped)
                    Console.Error.WriteLine($"(forgot the {chat.DroppedTurns - dropped} oldest turn(s) to fit the context)");
                if (chat.LastStats?.StopReason == StopReason.Cancelled) Console.Error.WriteLine("(stopped)");
                else if (chat.LastStats?.StopReason == StopReason.ContextFull)
                    Console.Error.WriteLine("(the context is full; use /reset" + (chat.OverflowPolicy == ContextOverflowPolicy.Throw ? " or --drop-oldest)" : ")"));
            }
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }

    private static void Answer(ChatSession chat, string input, GenerationOptions options, CancellationToken ct, Action<string> write)
    {
        bool any = false;
        try
        {
            var stream = chat.SendAsync(input, options, ct).GetAsyncEnumerator(CancellationToken.None);
            try
            {
                while (stream.MoveNextAsync().AsTask().GetAwaiter().GetResult())
                {
                    string piece = stream.Current;
                    if (!any) piece = piece.TrimStart();
                    if (piece.Length == 0) continue;
                    any = true;
                    write(piece);
                }
            }
            finally
            {
                stream.DisposeAsync().AsTask().GetAwaiter().GetResult();
            }
        }
        catch (OperationCanceledException)
        {
            // Ctrl-C before the prompt was evaluated: nothing was said.
        }
        write("\n");
    }
}
