using System.Globalization;
using Mistral.Pipeline;
using Mistral.Pipeline.Experiments;
using Spectre.Console;

namespace Mistral.Samples.Study;

/// <summary>
/// Shows a sweep's progress: a live Spectre.Console display (sweep bar, current stage bar with step, epoch, loss, tokens/s
/// and ETA) on an interactive terminal; plain log lines (at most one every two seconds per stage, plus every start and end)
/// when the output is redirected or captured.
/// </summary>
internal sealed class StudyConsole(TextWriter output, bool live)
{
    private readonly object _gate = new();

    public TextWriter Output { get; } = output;

    public bool Live { get; } = live;

    public void Line(string text)
    {
        // Called outside the live display only (before and after a sweep): plain text, never wrapped (tables stay Markdown).
        lock (_gate)
        {
            Output.WriteLine(text);
        }
    }

    /// <summary>Runs <paramref name="work"/> with a progress sink that renders as this console does.</summary>
    public async Task<T> RunAsync<T>(string title, Func<IProgress<SweepProgress>, Task<T>> work)
    {
        if (!Live)
        {
            var plain = new PlainSink(this, title);
            return await work(plain).ConfigureAwait(false);
        }

        T result = default!;
        await AnsiConsole.Progress()
            .AutoClear(false)
            .HideCompleted(true)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new ElapsedTimeColumn())
            .StartAsync(async ctx =>
            {
                var sink = new LiveSink(ctx, title);
                result = await work(sink).ConfigureAwait(false);
                sink.Finish();
            }).ConfigureAwait(false);
        return result;
    }

    internal static string Describe(SweepProgress p)
    {
        var ci = CultureInfo.InvariantCulture;
        if (p.Pipeline is not { } s)
        {
            return p.Kind.ToString().ToLowerInvariant();
        }

        return s.Stage switch
        {
            PipelineStage.Training when s.Training is { } t => string.Create(ci, $"training step {t.Step}/{t.TotalSteps} epoch {t.Epoch}: loss {t.Loss:F4}, {t.TokensPerSecond:N0} tokens/s"),
            PipelineStage.Evaluating => string.Create(ci, $"evaluating {s.Done}/{s.Total}"),
            PipelineStage.Loading => "loading the model",
            _ => s.Message,
        };
    }

    private sealed class PlainSink(StudyConsole console, string title) : IProgress<SweepProgress>
    {
        private DateTime _lastLine = DateTime.MinValue;
        private PipelineStage? _stage;
        private DateTime _stageStart = DateTime.UtcNow;

        public void Report(SweepProgress p)
        {
            var ci = CultureInfo.InvariantCulture;
            string prefix = string.Create(ci, $"[{title} {p.Position}/{p.Count}] {p.Run.Name}");
            switch (p.Kind)
            {
                case SweepProgressKind.Skipped:
                    console.Line($"{prefix}: already complete, skipped");
                    return;
                case SweepProgressKind.Started:
                    _stage = null;
                    console.Line($"{prefix}: started");
                    return;
                case SweepProgressKind.Completed:
                    console.Line(string.Create(ci, $"{prefix}: completed in {p.Elapsed.TotalSeconds:0.#} s"));
                    return;
            }

            var s = p.Pipeline!;
            var now = DateTime.UtcNow;
            if (s.Stage != _stage)
            {
                _stage = s.Stage;
                _stageStart = now;
                _lastLine = DateTime.MinValue;
            }

            bool last = s.Total > 0 && s.Done >= s.Total;
            if (!last && now - _lastLine < TimeSpan.FromSeconds(2))
            {
                return;
            }

            _lastLine = now;
            string eta = s.Fraction is > 0 and < 1
                ? " ETA " + TimeSpan.FromSeconds((now - _stageStart).TotalSeconds / s.Fraction * (1 - s.Fraction)).ToString(@"h\:mm\:ss", ci)
                : string.Empty;
            console.Line($"{prefix}: {Describe(p)}{eta}");
        }
    }

    private sealed class LiveSink(ProgressContext ctx, string title) : IProgress<SweepProgress>
    {
        private readonly object _gate = new();
        private readonly ProgressTask _sweep = ctx.AddTask(Markup.Escape(title), maxValue: 1);
        private ProgressTask? _stage;
        private PipelineStage? _stageKind;

        public void Report(SweepProgress p)
        {
            lock (_gate)
            {
                _sweep.MaxValue = Math.Max(1, p.Count);
                _sweep.Value = p.Completed + p.Skipped;
                _sweep.Description = Markup.Escape($"{title}: run {p.Position}/{p.Count} {p.Run.Name}");
                if (p.Kind is SweepProgressKind.Completed or SweepProgressKind.Skipped)
                {
                    AnsiConsole.MarkupLine(Markup.Escape(string.Create(CultureInfo.InvariantCulture,
                        $"{title} {p.Position}/{p.Count} {p.Run.Name}: {(p.Kind == SweepProgressKind.Skipped ? "already complete, skipped" : $"completed in {p.Elapsed.TotalSeconds:0.#} s")}")));
                }

                if (p.Kind is SweepProgressKind.Completed or SweepProgressKind.Skipped or SweepProgressKind.Started)
                {
                    _stage?.StopTask();
                    _stage = null;
                    _stageKind = null;
                    return;
                }

                var s = p.Pipeline!;
                if (_stage is null || s.Stage != _stageKind)
                {
                    _stage?.StopTask();
                    _stage = ctx.AddTask(Markup.Escape("  " + Describe(p)), maxValue: Math.Max(1, s.Total));
                    _stageKind = s.Stage;
                }

                _stage.MaxValue = Math.Max(1, s.Total);
                _stage.Value = Math.Min(s.Done, _stage.MaxValue);
                _stage.Description = Markup.Escape("  " + Describe(p));
            }
        }

        public void Finish()
        {
            lock (_gate)
            {
                _stage?.StopTask();
                _sweep.Value = _sweep.MaxValue;
                _sweep.StopTask();
            }
        }
    }
}
