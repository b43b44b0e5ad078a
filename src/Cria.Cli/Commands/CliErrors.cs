using Cria.Conversion;
using Cria.Gguf;
using Cria.Model;

namespace Cria.Cli.Commands;

/// <summary>A problem with the user's input, reported as one line without a stack trace.</summary>
internal sealed class CliException : Exception
{
    public CliException(string message) : base(message) { }
}

internal static class CliErrors
{
    /// <summary>Runs a command body; turns every expected failure into one "error:" line and exit code 1.</summary>
    public static int Guard(Func<int> body)
    {
        try
        {
            return body();
        }
        catch (Exception e) when (e is CliException or GgufFormatException or SentencePieceModelException or ModelLoadException or ContextOverflowException
                                      or FileNotFoundException or DirectoryNotFoundException or UnauthorizedAccessException
                                      or IOException or ArgumentException or InvalidDataException or NotSupportedException)
        {
            string what = e switch
            {
                GgufFormatException => "invalid GGUF file: ",
                _ => "",
            };
            string message = e is ArgumentException { ParamName: not null } ae
                ? ae.Message.Replace($" (Parameter '{ae.ParamName}')", "")
                : e.Message;
            Console.Error.WriteLine($"error: {what}{message.ReplaceLineEndings(" ")}");
            return 1;
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine("cancelled");
            return 130;
        }
    }

    /// <summary>Reads a text file as raw UTF-8 (nothing trimmed, a byte-order mark kept as U+FEFF).</summary>
    public static string ReadPromptFile(string path)
    {
        if (!File.Exists(path)) throw new CliException($"prompt file not found: {path}");
        return new System.Text.UTF8Encoding(false, false).GetString(File.ReadAllBytes(path));
    }

    public static string RequireModelFile(string? path)
    {
        if (string.IsNullOrEmpty(path)) throw new CliException("no model file given (-m FILE)");
        if (Directory.Exists(path)) throw new CliException($"{path} is a directory, not a model file");
        if (!File.Exists(path)) throw new CliException($"model file not found: {path}");
        return path;
    }

    public static KvCacheType ParseKvType(string? s) => s?.ToLowerInvariant() switch
    {
        null or "f16" => KvCacheType.F16,
        "f32" => KvCacheType.F32,
        _ => throw new CliException($"--kv-type must be f32 or f16, not '{s}'"),
    };

    public static Stream StandardOutput { get; } = Console.OpenStandardOutput();
}
