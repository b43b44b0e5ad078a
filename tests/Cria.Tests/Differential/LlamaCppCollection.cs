using Xunit;

namespace Cria.Tests.Differential;

/// <summary>
/// Every test class that calls into llama.cpp's native library (through LLamaSharp) belongs to
/// this collection, so they never run at the same time: llama.cpp's process-wide state (backend
/// initialisation, the log callback) is not meant to be set up from several threads at once.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class LlamaCppCollection
{
    public const string Name = "llama.cpp native library";
}
