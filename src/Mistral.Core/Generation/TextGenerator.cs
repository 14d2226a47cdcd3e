using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Mistral.Core.Modeling;
using Mistral.Core.Tokenization;

namespace Mistral.Core.Generation;

/// <summary>
/// Text in, text out: tokenizes prompts (with BOS), generates with <see cref="TokenGenerator"/> (KV cache, left-padded
/// batches), stops at EOS or a stop string, and decodes — or streams the text as it is produced.
/// </summary>
public sealed class TextGenerator
{
    private readonly TokenGenerator tokens;
    private readonly MistralTokenizer tokenizer;

    /// <summary>Creates a generator for a model and its tokenizer.</summary>
    public TextGenerator(MistralForCausalLM model, MistralTokenizer tokenizer, ILogger<TokenGenerator>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        this.tokenizer = tokenizer ?? throw new ArgumentNullException(nameof(tokenizer));
        if (tokenizer.VocabSize > model.Config.VocabSize)
        {
            throw new ArgumentException($"The tokenizer has {tokenizer.VocabSize} tokens but the model only {model.Config.VocabSize}.", nameof(tokenizer));
        }

        tokens = new TokenGenerator(model, logger);
    }

    /// <summary>Generates a continuation of one prompt.</summary>
    public GenerationResult Generate(string prompt, GenerationOptions options, CancellationToken cancellationToken = default) =>
        Generate([prompt], options, cancellationToken);

    /// <summary>Generates continuations of several prompts in one left-padded batch.</summary>
    public GenerationResult Generate(IReadOnlyList<string> prompts, GenerationOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentNullException.ThrowIfNull(options);
        options = WithTokenizerEos(options);
        var streams = prompts.Select(_ => new TextStream(tokenizer, options.StopStrings)).ToArray();
        var ids = prompts.Select(p => (IReadOnlyList<int>)tokenizer.Encode(p ?? throw new ArgumentException("A prompt is null.", nameof(prompts)))).ToArray();
        GenerationResult raw = tokens.Generate(ids, options, (row, token) =>
        {
            streams[row].Append(token);
            return streams[row].Stopped;
        }, cancellationToken);
        return Finish(raw, streams);
    }

    /// <summary>
    /// Generates a continuation of a prompt given as token ids, used as they are (no BOS is added): for chat formats
    /// whose special tokens (BOS, EOS between turns) cannot be written as text.
    /// </summary>
    public GeneratedSequence Generate(IReadOnlyList<int> promptTokenIds, GenerationOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(promptTokenIds);
        ArgumentNullException.ThrowIfNull(options);
        options = WithTokenizerEos(options);
        var streams = new[] { new TextStream(tokenizer, options.StopStrings) };
        GenerationResult raw = tokens.Generate([promptTokenIds], options, (row, token) =>
        {
            streams[row].Append(token);
            return streams[row].Stopped;
        }, cancellationToken);
        return Finish(raw, streams).Sequences[0];
    }

    /// <summary>
    /// Streams the continuation of one prompt as text pieces; their concatenation equals the text
    /// <see cref="Generate(string, GenerationOptions, CancellationToken)"/> returns. Cancelling ends the stream.
    /// </summary>
    public IAsyncEnumerable<string> StreamAsync(string prompt, GenerationOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        return StreamAsync(tokenizer.Encode(prompt), options, null, cancellationToken);
    }

    /// <summary>
    /// Streams the continuation of a prompt given as token ids (used as they are, no BOS is added) as text pieces; their
    /// concatenation equals the text of <see cref="Generate(IReadOnlyList{int}, GenerationOptions, CancellationToken)"/>.
    /// <paramref name="completed"/>, when given, receives the finished sequence (token ids, finish reason) before the
    /// stream ends. Cancelling ends the stream.
    /// </summary>
    public async IAsyncEnumerable<string> StreamAsync(IReadOnlyList<int> promptTokenIds, GenerationOptions options,
        Action<GeneratedSequence>? completed, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(promptTokenIds);
        options = WithTokenizerEos(options ?? throw new ArgumentNullException(nameof(options)));
        // A small bounded channel: the producer stays a few tokens ahead of the reader, and stops when the reader does.
        var channel = Channel.CreateBounded<string>(new BoundedChannelOptions(8) { SingleReader = true, SingleWriter = true });
        var stream = new TextStream(tokenizer, options.StopStrings);
        IReadOnlyList<int> ids = promptTokenIds;
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        CancellationToken token = stop.Token;
        // Generation is synchronous tensor work: give it its own thread rather than holding a pool thread for minutes.
        Task producer = Task.Factory.StartNew(() =>
        {
            try
            {
                GenerationResult raw = tokens.Generate([ids], options, (_, id) =>
                {
                    string piece = stream.Append(id);
                    if (piece.Length > 0)
                    {
                        channel.Writer.WriteAsync(piece, token).AsTask().GetAwaiter().GetResult();
                    }

                    return stream.Stopped;
                }, token);
                string rest = stream.Finish();
                if (rest.Length > 0)
                {
                    channel.Writer.WriteAsync(rest, token).AsTask().GetAwaiter().GetResult();
                }

                completed?.Invoke(raw.Sequences[0] with { Text = stream.Text });
                channel.Writer.TryComplete();
            }
            catch (Exception e)
            {
                channel.Writer.TryComplete(e);
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

        try
        {
            while (await channel.Reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
            {
                while (channel.Reader.TryRead(out string? piece))
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    yield return piece;
                }
            }

            cancellationToken.ThrowIfCancellationRequested();
        }
        finally
        {
            stop.Cancel();
            try
            {
                await producer.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
        }
    }

    private GenerationOptions WithTokenizerEos(GenerationOptions options) =>
        options.EosTokenIds.Contains(tokenizer.EosId) ? options : options with { EosTokenIds = [.. options.EosTokenIds, tokenizer.EosId] };

    private static GenerationResult Finish(GenerationResult raw, TextStream[] streams)
    {
        var sequences = raw.Sequences.Select((s, i) =>
        {
            streams[i].Finish();
            return s with { Text = streams[i].Text };
        }).ToList();
        return raw with { Sequences = sequences };
    }
}
