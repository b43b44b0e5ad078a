using Cria.Model;
using Cria.Server;
using Microsoft.Playwright;
using Xunit;

namespace Cria.Tests.Server;

/// <summary>
/// stories260K behind a server that needs an API key (one slot, a 4096-token context so that an unlimited
/// answer runs for seconds and can be stopped), and Debian's Chromium driven by Playwright. No browser is
/// downloaded: the tests skip when <see cref="ChromiumPath"/> is absent.
/// </summary>
public sealed class ChatPageFixture : IAsyncLifetime
{
    public const string ChromiumPath = "/usr/bin/chromium";
    public const string ApiKey = "browser-test-key";
    public const int Context = 4096;

    private string? _profile;
    private Exception? _launchError;

    public LlamaModel? Model { get; private set; }
    public CriaServer? Server { get; private set; }
    public IPlaywright? Playwright { get; private set; }
    public IBrowserContext? Browser { get; private set; }

    public async Task InitializeAsync()
    {
        string? path = RefData.File(ServerFixture.ModelFile);
        if (path is null) return;
        Model = LlamaModel.Load(path, new ModelOptions { Threads = 1 });
        Server = new CriaServer(Model, new ServerOptions { Host = "127.0.0.1", Port = 0, Parallel = 1, QueueSize = 4, ContextSize = Context, ApiKey = ApiKey });
        await Server.StartAsync();
        if (!File.Exists(ChromiumPath)) return;
        try
        {
            _profile = Directory.CreateTempSubdirectory("cria-chromium-").FullName;
            Playwright = await Microsoft.Playwright.Playwright.CreateAsync();
            Browser = await Playwright.Chromium.LaunchPersistentContextAsync(_profile, new BrowserTypeLaunchPersistentContextOptions
            {
                ExecutablePath = ChromiumPath,
                Headless = true,
                Timeout = 30_000,
                Args = new[]
                {
                    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                },
            });
        }
        catch (Exception e)
        {
            _launchError = e;
        }
    }

    /// <summary>The server alone; skips when the model is missing.</summary>
    public (LlamaModel Model, CriaServer Server) RequireServer()
    {
        RefData.Require(ServerFixture.ModelFile);
        return (Model!, Server!);
    }

    /// <summary>A new page showing the chat page; skips when the model or Chromium is missing, fails when Chromium would not start.</summary>
    public async Task<IPage> OpenChatPageAsync()
    {
        RequireServer();
        Skip.If(!File.Exists(ChromiumPath), $"{ChromiumPath} not found: install Debian's chromium package (apt-get install chromium) to run the browser tests");
        if (_launchError != null) throw new InvalidOperationException($"Chromium ({ChromiumPath}) did not start: {_launchError.Message}", _launchError);
        var page = await Browser!.NewPageAsync();
        page.SetDefaultTimeout(15_000);
        var response = await page.GotoAsync(Server!.Url + "/");
        Assert.NotNull(response);
        Assert.Equal(200, response.Status);
        return page;
    }

    public async Task DisposeAsync()
    {
        if (Browser != null) await Browser.DisposeAsync();
        Playwright?.Dispose();
        if (Server != null) await Server.DisposeAsync();
        Model?.Dispose();
        if (_profile != null)
        {
            try { Directory.Delete(_profile, recursive: true); } catch (IOException) { /* Chromium may still hold a file for a moment */ }
        }
    }
}
