namespace Cria.Model;

/// <summary>The file is valid GGUF but not a model Cria can run (architecture, missing tensor, shape, type).</summary>
public sealed class ModelLoadException : Exception
{
    public ModelLoadException(string message) : base(message) { }
}
