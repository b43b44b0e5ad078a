namespace Cria.Tests;

/// <summary>
/// Locates the shared reference data (llama.cpp's golden outputs). It lives beside the project
/// root as ../shared/refdata; CRIA_REFDATA overrides that. Tests that need it skip with a visible
/// reason when it is missing, so a clone without it still builds and passes.
/// </summary>
public static class RefData
{
    private static readonly Lazy<string?> Root = new(Find);

    public static string? Directory => Root.Value;

    public const string MissingReason =
        "reference data not found: set CRIA_REFDATA or place shared/refdata beside the project root";

    /// <summary>Full path of a file under refdata, or null when refdata or the file is absent.</summary>
    public static string? File(string relative)
    {
        if (Root.Value is null) return null;
        string p = Path.Combine(Root.Value, relative);
        return System.IO.File.Exists(p) ? p : null;
    }

    /// <summary>Full path of a refdata file; skips the calling test when it is absent.</summary>
    public static string Require(string relative)
    {
        string? p = File(relative);
        Xunit.Skip.If(p is null, Root.Value is null ? MissingReason : $"reference file missing: {relative}");
        return p!;
    }

    private static string? Find()
    {
        string? env = Environment.GetEnvironmentVariable("CRIA_REFDATA");
        if (!string.IsNullOrEmpty(env) && System.IO.Directory.Exists(env)) return Path.GetFullPath(env);
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir != null)
        {
            string candidate = Path.Combine(dir.FullName, "shared", "refdata");
            if (System.IO.Directory.Exists(candidate)) return candidate;
            dir = dir.Parent;
        }
        return null;
    }
}
