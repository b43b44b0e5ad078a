using System.CommandLine;
using Cria.Model;

namespace Cria.Cli.Commands;

/// <summary>--no-repack and --repack-cache: how a command loads the weights.</summary>
internal sealed class RepackOptions
{
    public Option<bool> NoRepack { get; } = new("--no-repack")
    {
        Description = "read Q4_0, Q8_0, Q4_K and Q6_K weights from the mapped file as they are, instead of repacking them at load into the faster eight-row groups",
    };

    public Option<string?> Cache { get; } = new("--repack-cache")
    {
        Description = "directory for a cache of the repacked weights (default: $CRIA_REPACK_CACHE, else none): the first load writes it, "
                      + "as large as those weights; later loads of the same model file map it instead of repacking",
        DefaultValueFactory = _ => Environment.GetEnvironmentVariable("CRIA_REPACK_CACHE") is { Length: > 0 } dir ? dir : null,
    };

    public Option[] All => [NoRepack, Cache];

    public ModelOptions ModelOptions(ParseResult r, int threads)
    {
        string? cache = r.GetValue(Cache);
        if (cache is { Length: 0 }) cache = null;
        if (cache is not null && File.Exists(cache)) throw new CliException($"--repack-cache: {cache} is a file, not a directory");
        return new ModelOptions { Threads = threads, RepackWeights = !r.GetValue(NoRepack), RepackCacheDirectory = cache };
    }

    /// <summary>Loads the model and says on stderr what became of the repack cache, when one was asked for.</summary>
    public static LlamaModel Load(string path, ModelOptions options)
    {
        var model = LlamaModel.Load(path, options);
        if (model.Weights.RepackCacheMessage is { } message)
            Console.Error.WriteLine(model.Weights.RepackCacheState == RepackCacheState.Failed ? $"cria: warning: {message}" : $"cria: {message}");
        return model;
    }
}

/// <summary>Options shared by several verbs, built fresh for each command.</summary>
internal static class CommonOptions
{
    public static Option<string> Model() => new("--model", "-m") { Description = "GGUF model file", Required = true };
    public static Option<string?> Prompt() => new("--prompt", "-p") { Description = "prompt text" };
    public static Option<string?> PromptFile() => new("--file", "-f") { Description = "read the prompt from a file (raw UTF-8)" };
    public static Option<int> Context() => new("--ctx-size", "-c") { Description = "context size in tokens (0: the model's, at most 4096)", DefaultValueFactory = _ => 0 };
    public static Option<int> Threads() => new("--threads", "-t") { Description = "threads (default: physical cores)", DefaultValueFactory = _ => 0 };
    public static Option<string> KvType() => new("--kv-type") { Description = "KV cache element type: f16 (default) or f32", DefaultValueFactory = _ => "f16" };
    public static Option<float> Temperature(float defaultValue) => new("--temp") { Description = "temperature (0: greedy)", DefaultValueFactory = _ => defaultValue };
    public static Option<ulong?> Seed() => new("--seed", "-s") { Description = "random seed (default: random)" };
    public static Option<bool> NoBos() => new("--no-bos") { Description = "do not add the BOS token" };
    public static Option<bool> Special() => new("--special") { Description = "parse special-token text such as <s> into token ids" };

    public static Option<string?> ChatTemplate() => new("--chat-template")
    {
        Description = "chat template to use instead of the model's: a Jinja template file, or a built-in name (llama2, llama3)",
    };

    /// <summary>
    /// The template a <c>--chat-template</c> value names: an existing file is read as a Jinja template (raw UTF-8),
    /// otherwise the value must be a built-in name; null when no value was given.
    /// </summary>
    public static Cria.Chat.ChatTemplate? ResolveChatTemplate(string? value)
    {
        if (value is null) return null;
        if (File.Exists(value))
        {
            try { return Cria.Chat.ChatTemplate.Parse(CliErrors.ReadPromptFile(value)); }
            catch (Cria.Chat.ChatTemplateException e) { throw new CliException($"invalid chat template {value}: {e.Message}"); }
        }
        if (Directory.Exists(value)) throw new CliException($"--chat-template: {value} is a directory, not a template file");
        return Cria.Chat.ChatTemplate.Builtin(value)
            ?? throw new CliException($"--chat-template: '{value}' is neither a template file nor a built-in template ({string.Join(", ", Cria.Chat.ChatTemplate.BuiltinNames)})");
    }

    /// <summary>The prompt from -p or -f (exactly one of them).</summary>
    public static string ResolvePrompt(string? prompt, string? file)
    {
        if (prompt != null && file != null) throw new CliException("give either -p TEXT or -f FILE, not both");
        if (file != null) return CliErrors.ReadPromptFile(file);
        if (prompt != null) return prompt;
        throw new CliException("no prompt given (-p TEXT or -f FILE)");
    }

    public static int ResolveThreads(int threads)
    {
        if (threads < 0) throw new CliException($"--threads must be positive, not {threads}");
        return threads == 0 ? Cria.Numerics.Threading.WorkerPool.DefaultThreadCount : threads;
    }

    /// <summary>Context size: explicit, else the model's training context capped at 4096.</summary>
    public static int ResolveContext(int requested, int modelContext)
    {
        if (requested < 0) throw new CliException($"--ctx-size must be positive, not {requested}");
        return requested > 0 ? requested : Math.Min(modelContext, 4096);
    }
}
