using System.CommandLine;
using Cria.Gguf;
using Cria.Tokenizers;

namespace Cria.Cli.Commands;

/// <summary><c>cria tokenize</c>: token ids of a text as one JSON array. Works on vocabulary-only files.</summary>
internal static class TokenizeCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var file = CommonOptions.PromptFile();
        var noBos = CommonOptions.NoBos();
        var special = CommonOptions.Special();
        var text = new Argument<string?>("text") { Description = "text to tokenize", Arity = ArgumentArity.ZeroOrOne };
        var cmd = new Command("tokenize", "print the token ids of a text as a JSON array");
        cmd.Options.Add(model);
        cmd.Options.Add(file);
        cmd.Options.Add(noBos);
        cmd.Options.Add(special);
        cmd.Arguments.Add(text);
        cmd.SetAction(r => CliErrors.Guard(() =>
        {
            string input = CommonOptions.ResolvePrompt(r.GetValue(text), r.GetValue(file));
            string path = CliErrors.RequireModelFile(r.GetValue(model));
            using var f = GgufFile.Open(path);
            var tokenizer = TokenizerFactory.Create(Vocabulary.FromGguf(f));
            int[] ids = tokenizer.Encode(input, addSpecial: !r.GetValue(noBos), parseSpecial: r.GetValue(special));
            Console.Out.WriteLine("[" + string.Join(", ", ids) + "]");
            return 0;
        }));
        return cmd;
    }
}
