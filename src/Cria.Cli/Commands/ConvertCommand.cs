using System.CommandLine;
using Cria.Conversion;
using Cria.Numerics;

namespace Cria.Cli.Commands;

/// <summary><c>cria convert</c>: llama2.c checkpoints and Hugging Face Llama folders to GGUF.</summary>
internal static class ConvertCommand
{
    public static Command Create()
    {
        var input = new Argument<string>("path") { Description = "llama2.c checkpoint (.bin) or Hugging Face Llama model folder" };
        var output = new Option<string>("--outfile", "-o") { Description = "output GGUF file", Required = true };
        var outType = new Option<string>("--outtype") { Description = "matrix type: f32 (default), f16, bf16 or q8_0", DefaultValueFactory = _ => "f32" };
        var vocab = new Option<string?>("--vocab")
        {
            Description = "tokenizer: for a llama2.c checkpoint its tokenizer.bin or the SentencePiece tokenizer.model (required); "
                + "for a Hugging Face folder a tokenizer.model or tokenizer.json to use instead of the folder's",
        };
        var cmd = new Command("convert", "convert a llama2.c checkpoint or a Hugging Face Llama folder (safetensors) to GGUF");
        cmd.Arguments.Add(input);
        cmd.Options.Add(output);
        cmd.Options.Add(outType);
        cmd.Options.Add(vocab);
        cmd.SetAction(r => CliErrors.Guard(() =>
        {
            string path = r.GetValue(input)!;
            var type = (r.GetValue(outType) ?? "f32").ToLowerInvariant() switch
            {
                "f32" => GgmlType.F32,
                "f16" => GgmlType.F16,
                "bf16" => GgmlType.BF16,
                "q8_0" => GgmlType.Q8_0,
                var other => throw new CliException($"--outtype must be f32, f16, bf16 or q8_0, not '{other}'"),
            };
            if (Directory.Exists(path))
            {
                HfModelConverter.Convert(path, r.GetValue(output)!, type, Report, r.GetValue(vocab));
                return Wrote(r.GetValue(output)!);
            }
            if (!File.Exists(path)) throw new CliException($"input not found: {path}");
            string? vocabPath = r.GetValue(vocab) ?? throw new CliException("a llama2.c checkpoint needs its tokenizer: --vocab tokenizer.bin (or tokenizer.model)");
            Llama2cConverter.Convert(path, vocabPath, r.GetValue(output)!, type, Report);
            return Wrote(r.GetValue(output)!);
        }));
        return cmd;
    }

    /// <summary>The closing line (over the progress line on a terminal); exit code 0.</summary>
    private static int Wrote(string output)
    {
        Console.Error.WriteLine($"{(Console.IsErrorRedirected ? "" : "\r")}wrote {output}");
        return 0;
    }

    // On a terminal progress overwrites one line and warnings and notes get a line of their own; a log file or
    // pipe gets every message on its own line.
    private static readonly IProgress<string> Report = new Progress<string>(s =>
        Console.Error.Write(Console.IsErrorRedirected ? $"{s}\n"
            : s.StartsWith("warning: ", StringComparison.Ordinal) || s.StartsWith("note: ", StringComparison.Ordinal) ? $"\r{s}\n" : $"\r{s}   "));
}
