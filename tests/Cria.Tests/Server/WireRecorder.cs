using System.Net.Sockets;
using System.Text;

namespace Cria.Tests.Server;

/// <summary>
/// An HttpClient handler whose connections keep every byte they read, so that a test which sees a
/// malformed response can print what actually arrived on the wire (the framing, not the decoded body).
/// </summary>
internal sealed class WireRecorder
{
    private readonly List<RecordingStream> _connections = new();

    public SocketsHttpHandler CreateHandler() => new()
    {
        ConnectCallback = async (context, cancellationToken) =>
        {
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                await socket.ConnectAsync(context.DnsEndPoint, cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
            var stream = new RecordingStream(new NetworkStream(socket, ownsSocket: true));
            lock (_connections) _connections.Add(stream);
            return stream;
        },
    };

    /// <summary>The last <paramref name="count"/> bytes each connection read, control characters escaped.</summary>
    public string Tails(int count)
    {
        var text = new StringBuilder();
        lock (_connections)
        {
            for (int i = 0; i < _connections.Count; i++)
                text.Append("connection ").Append(i).Append(": ").Append(_connections[i].Tail(count)).Append('\n');
        }
        return text.ToString();
    }

    private sealed class RecordingStream(Stream inner) : Stream
    {
        private readonly MemoryStream _read = new();

        public string Tail(int count)
        {
            lock (_read)
            {
                byte[] all = _read.ToArray();
                int start = Math.Max(0, all.Length - count);
                return Encoding.UTF8.GetString(all, start, all.Length - start).Replace("\r", "\\r").Replace("\n", "\\n");
            }
        }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            int n = await inner.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
            lock (_read) _read.Write(buffer.Span[..n]);
            return n;
        }

        public override int Read(byte[] buffer, int offset, int count)
        {
            int n = inner.Read(buffer, offset, count);
            lock (_read) _read.Write(buffer, offset, n);
            return n;
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) => inner.WriteAsync(buffer, cancellationToken);
        public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);
        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => inner.WriteAsync(buffer, offset, count, cancellationToken);
        public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);
        public override void Flush() => inner.Flush();
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing) inner.Dispose();
            base.Dispose(disposing);
        }
    }
}
