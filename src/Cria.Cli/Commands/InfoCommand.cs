using System.CommandLine;
using System.Globalization;
using Cria.Gguf;
using Cria.Model;
using Cria.Numerics;

namespace Cria.Cli.Commands;

/// <summary><c>cria info FILE</c>: architecture, hyper-parameters, metadata and the tensor table.</summary>
internal static class InfoCommand
{
    public static Command Create()
    {
        var fileArg = new Argument<string>("file") { Description = "GGUF file" };
        var cmd = new Command("info", "show a GGUF file's architecture, hyper-parameters, metadata and tensors");
        cmd.Arguments.Add(fileArg);
        cmd.SetAction(r => CliErrors.Guard(() =>
        {
            string path = CliErrors.RequireModelFile(r.GetValue(fileArg));
            using var f = GgufFile.Open(path);
            var o = Console.Out;
            var inv = CultureInfo.InvariantCulture;
            o.WriteLine($"file:          {f.Path}");
            o.WriteLine($"GGUF version:  {f.Version}, alignment {f.Alignment}, {f.Metadata.Count} metadata keys, {f.Tensors.Count} tensors");
            o.WriteLine($"architecture:  {f.GetString("general.architecture") ?? "(none: vocabulary-only file?)"}");
            if (f.GetString("general.architecture") == "llama")
            {
                try
                {
                    var c = LlamaConfig.FromGguf(f);
                    o.WriteLine(string.Format(inv, "hyper-parameters: embd {0}, ff {1}, blocks {2}, heads {3}, kv heads {4}{5}, head size {6}, rope dims {7}, rope base {8}, rope scale {9}, rms eps {10:G}, ctx {11}, vocab {12}",
                        c.EmbeddingLength, c.FeedForwardLength, c.BlockCount, c.HeadCount, c.KvHeadCount,
                        c.KvHeadCount < c.HeadCount ? " (GQA)" : "", c.HeadSize, c.RopeDimensionCount, c.RopeFrequencyBase,
                        c.RopeFrequencyScale, c.RmsEpsilon, c.ContextLength, c.VocabularySize));
                }
                catch (ModelLoadException e)
                {
                    o.WriteLine($"hyper-parameters: incomplete ({e.Message})");
                }
            }
            long totalBytes = f.Tensors.Sum(t => t.ByteSize);
            long totalParams = f.Tensors.Sum(t => t.ElementCount);
            o.WriteLine(string.Format(inv, "parameters:    {0:N0} in {1:N1} MiB", totalParams, totalBytes / 1048576.0));
            o.WriteLine();
            o.WriteLine("metadata:");
            int keyWidth = f.MetadataList.Count == 0 ? 0 : f.MetadataList.Max(kv => kv.Key.Length);
            foreach (var kv in f.MetadataList)
            {
                string value = kv.Value.ToString();
                if (value.Length > 120) value = value[..117] + "...";
                value = value.Replace("\n", "\\n");
                string type = kv.Value.Type == GgufValueType.Array
                    ? $"array<{kv.Value.AsArray().ElementType.ToString().ToLowerInvariant()}>"
                    : kv.Value.Type.ToString().ToLowerInvariant();
                o.WriteLine($"  {kv.Key.PadRight(keyWidth)}  {type,-14} {value}");
            }
            o.WriteLine();
            o.WriteLine("tensors:");
            int nameWidth = f.Tensors.Count == 0 ? 4 : Math.Max(4, f.Tensors.Max(t => t.Name.Length));
            o.WriteLine($"  {"name".PadRight(nameWidth)}  {"type",-6} {"shape",-20} {"bytes",12} {"offset",12}");
            foreach (var t in f.Tensors)
                o.WriteLine($"  {t.Name.PadRight(nameWidth)}  {GgmlTypeInfo.Name(t.Type),-6} {"[" + string.Join(", ", t.Dimensions) + "]",-20} {t.ByteSize,12} {t.Offset,12}");
            return 0;
        }));
        return cmd;
    }
}
