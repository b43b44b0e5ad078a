using System.CommandLine;
using Cria.Cli.Commands;

var root = new RootCommand("cria — Llama models in pure C#: run, chat, serve, inspect, convert, quantize and benchmark GGUF models");
root.Subcommands.Add(RunCommand.Create());
root.Subcommands.Add(InfoCommand.Create());
root.Subcommands.Add(TokenizeCommand.Create());
root.Subcommands.Add(LogitsCommand.Create());
root.Subcommands.Add(BenchCommand.Create());
root.Subcommands.Add(PerplexityCommand.Create());
root.Subcommands.Add(ChatTemplateCommand.Create());
root.Subcommands.Add(ConvertCommand.Create());
root.Subcommands.Add(QuantizeCommand.Create());
root.Subcommands.Add(SynthCommand.Create());
root.Subcommands.Add(ChatCommand.Create());
root.Subcommands.Add(InfillCommand.Create());
root.Subcommands.Add(ServeCommand.Create());
return root.Parse(args).Invoke();
