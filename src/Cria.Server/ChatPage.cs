using Microsoft.AspNetCore.Http;

namespace Cria.Server;

/// <summary>
/// The web chat page served at <c>GET /</c>: one self-contained HTML file (inline CSS and JavaScript, no
/// external requests) embedded in this assembly. It needs no API key itself; it asks for one and sends it
/// with its API calls.
/// </summary>
internal static class ChatPage
{
    private const string ResourceName = "Cria.Server.Web.ChatPage.html";

    /// <summary>
    /// Only inline script and style, and requests to this server: model text that slipped past the page's
    /// escaping still could not load or send anything elsewhere.
    /// </summary>
    private const string ContentSecurityPolicy =
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; "
        + "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

    private static readonly Lazy<byte[]> Html = new(Load);

    /// <summary>Writes the page (a request handler for <c>MapGet</c>).</summary>
    public static Task Serve(HttpContext ctx)
    {
        byte[] html = Html.Value;
        var response = ctx.Response;
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "text/html; charset=utf-8";
        response.ContentLength = html.Length;
        response.Headers.CacheControl = "no-cache";
        response.Headers.ContentSecurityPolicy = ContentSecurityPolicy;
        response.Headers.XContentTypeOptions = "nosniff";
        response.Headers["Referrer-Policy"] = "no-referrer";
        return response.Body.WriteAsync(html, ctx.RequestAborted).AsTask();
    }

    private static byte[] Load()
    {
        using var stream = typeof(ChatPage).Assembly.GetManifestResourceStream(ResourceName)
            ?? throw new InvalidOperationException($"the embedded resource {ResourceName} is missing from {typeof(ChatPage).Assembly.GetName().Name}");
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    }
}
