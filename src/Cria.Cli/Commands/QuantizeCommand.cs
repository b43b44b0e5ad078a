using System.CommandLine;
using Cria.Numerics;
using Cria.Quantization;

namespace Cria.Cli.Commands;

/// <summary>
/// <c>cria quantize IN.gguf OUT.gguf TYPE</c>: llama-quantize's file types and per-tensor rules
/// (see <see cref="QuantizationPlan"/>), byte-identical output without an importance matrix.
/// </summary>
internal static class QuantizeCommand
{
    public static Command Create()
    {
        var inArg = new Argument<string>("input") { Description = "GGUF model to quantize (F32, F16 or BF16 weights)" };
        var outArg = new Argument<string>("output") { Description = "GGUF file to write" };
        var typeArg = new Argument<string>("type") { Description = "file type: " + string.Join(", ", LlamaFileTypes.Names) + " (case-insensitive)" };
        var threads = CommonOptions.Threads();
        var pure = new Option<bool>("--pure") { Description = "use the base type for every quantizable tensor: no per-tensor mix, no fallbacks" };
        var outputType = new Option<string?>("--output-tensor-type") { Description = "ggml type for output.weight (e.g. q8_0, f16)" };
        var embdType = new Option<string?>("--token-embedding-type") { Description = "ggml type for token_embd.weight (e.g. q8_0, f16)" };
        var requant = new Option<bool>("--allow-requantize") { Description = "allow converting tensors that are already quantized (loses precision)" };

        var cmd = new Command("quantize", "quantize a Llama GGUF model like llama-quantize");
        cmd.Arguments.Add(inArg);
        cmd.Arguments.Add(outArg);
        cmd.Arguments.Add(typeArg);
        cmd.Options.Add(threads);
        cmd.Options.Add(pure);
        cmd.Options.Add(outputType);
        cmd.Options.Add(embdType);
        cmd.Options.Add(requant);
        cmd.SetAction((r, ct) => Task.FromResult(CliErrors.Guard(() =>
        {
            string input = CliErrors.RequireModelFile(r.GetValue(inArg));
            string output = r.GetValue(outArg) ?? throw new CliException("no output file given");
            string typeName = r.GetValue(typeArg) ?? "";
            if (!LlamaFileTypes.TryParse(typeName, out var ftype))
                throw new CliException($"unknown quantization type '{typeName}'; valid types: {string.Join(", ", LlamaFileTypes.Names)}");
            int t = r.GetValue(threads);
            if (t < 0) throw new CliException("--threads must not be negative");
            var options = new QuantizationOptions
            {
                FileType = ftype,
                Threads = t,
                Pure = r.GetValue(pure),
                OutputTensorType = ParseTensorType(r.GetValue(outputType), "--output-tensor-type"),
                TokenEmbeddingType = ParseTensorType(r.GetValue(embdType), "--token-embedding-type"),
                AllowRequantize = r.GetValue(requant),
            };
            try
            {
                // A terminal gets one progress line rewritten in place; a log file or pipe one line per tensor.
                ModelQuantizer.Quantize(input, output, options, Console.Error, ct, progressOnOneLine: !Console.IsErrorRedirected);
            }
            catch (QuantizationException e)
            {
                throw new CliException(e.Message);
            }
            return 0;
        })));
        return cmd;
    }

    private static GgmlType? ParseTensorType(string? name, string option)
    {
        if (name is null) return null;
        if (!GgmlTypeInfo.TryParse(name, out var type) || !Cria.Numerics.Formats.RowEncoder.CanEncode(type))
            throw new CliException($"{option}: unsupported tensor type '{name}' (use f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_nl or iq4_xs)");
        return type;
    }
}
