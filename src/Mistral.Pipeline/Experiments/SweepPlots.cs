using System.Globalization;
using ScottPlot;

namespace Mistral.Pipeline.Experiments;

/// <summary>
/// PNG plots of a sweep's results (ScottPlot): accuracy vs training samples, ROUGE by method, the training-loss curves of
/// the sweep's runs, and a confusion-matrix heatmap of a classification run. Each file is written atomically.
/// </summary>
public static class SweepPlots
{
    /// <summary>The file name of <see cref="AccuracyVsSamples"/> in <see cref="SaveAll"/>.</summary>
    public const string AccuracyFile = "accuracy_vs_samples.png";

    /// <summary>The file name of <see cref="RougeByMethod"/> in <see cref="SaveAll"/>.</summary>
    public const string RougeFile = "rouge_by_method.png";

    /// <summary>The file name of <see cref="TrainingLoss"/> in <see cref="SaveAll"/>.</summary>
    public const string LossFile = "training_loss.png";

    /// <summary>The file name of <see cref="ConfusionMatrix"/> (best classification run) in <see cref="SaveAll"/>.</summary>
    public const string ConfusionFile = "confusion_matrix.png";

    /// <summary>Writes every plot that applies to the results into <paramref name="folder"/>: accuracy vs samples (runs with accuracy), ROUGE by method (runs with ROUGE), training loss (runs that trained), and the confusion matrix of the most accurate classification run.</summary>
    /// <param name="results">The results.</param>
    /// <param name="folder">The destination folder (created when absent).</param>
    /// <returns>The paths written.</returns>
    public static IReadOnlyList<string> SaveAll(SweepResults results, string folder)
    {
        ArgumentNullException.ThrowIfNull(results);
        ArgumentException.ThrowIfNullOrWhiteSpace(folder);
        var written = new List<string>();
        if (results.Runs.Any(r => Accuracy(r) is not null))
        {
            written.Add(AccuracyVsSamples(results, Path.Combine(folder, AccuracyFile)));
        }

        if (results.Runs.Any(r => r.Quality.ContainsKey("rouge1")))
        {
            written.Add(RougeByMethod(results, Path.Combine(folder, RougeFile)));
        }

        if (results.Runs.Any(r => r.ReadTrainingLoss().Count > 0))
        {
            written.Add(TrainingLoss(results, Path.Combine(folder, LossFile)));
        }

        var best = results.Runs.Where(r => r.ReadConfusionMatrix() is not null || r.ReadConfusionMatrix(likelihood: true) is not null)
            .OrderByDescending(r => Accuracy(r) ?? 0).FirstOrDefault();
        if (best is not null)
        {
            written.Add(ConfusionMatrix(best, Path.Combine(folder, ConfusionFile)));
        }

        return written;
    }

    /// <summary>
    /// Accuracy (%) against training samples, one line per combination of the other settings (solid: the study's
    /// generate-and-parse accuracy; dashed: label-likelihood accuracy). The x axis is logarithmic when samples span a factor of 10 or more.
    /// </summary>
    /// <param name="results">The results (runs without accuracy are left out).</param>
    /// <param name="path">The PNG to write.</param>
    /// <param name="width">Width in pixels.</param>
    /// <param name="height">Height in pixels.</param>
    /// <returns><paramref name="path"/>.</returns>
    /// <exception cref="InvalidOperationException">No run has an accuracy.</exception>
    public static string AccuracyVsSamples(SweepResults results, string path, int width = 900, int height = 560)
    {
        ArgumentNullException.ThrowIfNull(results);
        var runs = results.Runs.Where(r => Accuracy(r) is not null).ToList();
        if (runs.Count == 0)
        {
            throw new InvalidOperationException($"AccuracyVsSamples: no run in {results.Folder} has an accuracy (is it a classification sweep?).");
        }

        int min = Math.Max(1, runs.Min(r => r.TrainingSamples)), max = Math.Max(1, runs.Max(r => r.TrainingSamples));
        bool log = max >= 10 * min;
        double X(int samples) => log ? Math.Log10(Math.Max(1, samples)) : samples;
        var plot = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        var groups = runs.GroupBy(OtherSettings(runs)).ToList();
        for (int g = 0; g < groups.Count; g++)
        {
            var points = groups[g].OrderBy(r => r.TrainingSamples).ToList();
            var color = palette.GetColor(g);
            string label = groups.Count > 1 ? groups[g].Key : "accuracy";
            if (points.Any(r => r.Quality.ContainsKey("accuracy")))
            {
                var withAcc = points.Where(r => r.Quality.ContainsKey("accuracy")).ToList();
                var s = plot.Add.Scatter(withAcc.Select(r => X(r.TrainingSamples)).ToArray(), withAcc.Select(r => r.Quality["accuracy"] * 100).ToArray(), color);
                s.LegendText = groups.Count > 1 ? label : "accuracy (generate + parse)";
                s.LineWidth = 2;
                s.MarkerSize = 8;
            }

            if (points.Any(r => r.Quality.ContainsKey("likelihood_accuracy")))
            {
                var withLik = points.Where(r => r.Quality.ContainsKey("likelihood_accuracy")).ToList();
                var s = plot.Add.Scatter(withLik.Select(r => X(r.TrainingSamples)).ToArray(), withLik.Select(r => r.Quality["likelihood_accuracy"] * 100).ToArray(), color);
                s.LegendText = (groups.Count > 1 ? label + ", " : string.Empty) + "label likelihood";
                s.LinePattern = LinePattern.Dashed;
                s.LineWidth = 2;
                s.MarkerSize = 6;
                s.MarkerShape = MarkerShape.OpenCircle;
            }
        }

        var samples = runs.Select(r => r.TrainingSamples).Distinct().Order().ToArray();
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            samples.Select(X).ToArray(), samples.Select(s => s.ToString(CultureInfo.InvariantCulture)).ToArray());
        double pad = (X(max) - X(min)) * 0.05 + (log ? 0.05 : 0.5);
        plot.Axes.SetLimits(X(min) - pad, X(max) + pad, 0, 105);
        plot.Title($"{results.Name ?? "sweep"}: accuracy vs training samples");
        plot.XLabel(log ? "training samples (log scale)" : "training samples");
        plot.YLabel("accuracy (%)");
        plot.ShowLegend(Alignment.LowerRight);
        return Save(plot, path, width, height);
    }

    /// <summary>ROUGE-1/2/L/Lsum F-measures (×100) for each run, grouped bars with one group per method (the study's Table 2 as a chart).</summary>
    /// <param name="results">The results (runs without ROUGE are left out).</param>
    /// <param name="path">The PNG to write.</param>
    /// <param name="width">Width in pixels; null scales with the number of runs.</param>
    /// <param name="height">Height in pixels.</param>
    /// <returns><paramref name="path"/>.</returns>
    /// <exception cref="InvalidOperationException">No run has ROUGE scores.</exception>
    public static string RougeByMethod(SweepResults results, string path, int? width = null, int height = 600)
    {
        ArgumentNullException.ThrowIfNull(results);
        var runs = results.Runs.Where(r => r.Quality.ContainsKey("rouge1")).ToList();
        if (runs.Count == 0)
        {
            throw new InvalidOperationException($"RougeByMethod: no run in {results.Folder} has ROUGE scores (is it a summarization sweep?).");
        }

        string[] keys = ["rouge1", "rouge2", "rougeL", "rougeLsum"];
        string[] names = ["ROUGE-1", "ROUGE-2", "ROUGE-L", "ROUGE-Lsum"];
        var plot = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        var bars = new List<Bar>();
        double barWidth = 0.8 / keys.Length;
        for (int i = 0; i < runs.Count; i++)
        {
            for (int k = 0; k < keys.Length; k++)
            {
                if (runs[i].Quality.TryGetValue(keys[k], out double v))
                {
                    bars.Add(new Bar { Position = i + (k - (keys.Length - 1) / 2.0) * barWidth, Value = v, Size = barWidth * 0.95, FillColor = palette.GetColor(k), LineWidth = 0 });
                }
            }
        }

        plot.Add.Bars(bars);
        for (int k = 0; k < keys.Length; k++)
        {
            plot.Legend.ManualItems.Add(new LegendItem { LabelText = names[k], FillColor = palette.GetColor(k) });
        }

        var labels = runs.Select(Label).ToArray();
        int w = width ?? Math.Clamp(300 + 90 * runs.Count, 800, 4000);
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(Enumerable.Range(0, runs.Count).Select(i => (double)i).ToArray(), labels);
        if (labels.Max(l => l.Length) * 7.5 > (w - 120.0) / runs.Count)
        {
            plot.Axes.Bottom.TickLabelStyle.Rotation = 40;
            plot.Axes.Bottom.TickLabelStyle.Alignment = Alignment.MiddleLeft;
            plot.Axes.Bottom.MinimumSize = Math.Min(260, 5f * labels.Max(l => l.Length) + 30);
        }

        double top = Math.Max(10, bars.Max(b => b.Value) * 1.1);
        plot.Axes.SetLimits(-0.6, runs.Count - 0.4, 0, top);
        plot.Title($"{results.Name ?? "sweep"}: ROUGE by method");
        plot.YLabel("F-measure × 100");
        plot.ShowLegend(Edge.Right);
        return Save(plot, path, w, height);
    }

    /// <summary>Training loss per optimizer step, one line per run that trained (legend when there are at most 12).</summary>
    /// <param name="results">The results.</param>
    /// <param name="path">The PNG to write.</param>
    /// <param name="width">Width in pixels.</param>
    /// <param name="height">Height in pixels.</param>
    /// <returns><paramref name="path"/>.</returns>
    /// <exception cref="InvalidOperationException">No run has a training log.</exception>
    public static string TrainingLoss(SweepResults results, string path, int width = 900, int height = 560)
    {
        ArgumentNullException.ThrowIfNull(results);
        var curves = results.Runs.Select(r => (Run: r, Loss: r.ReadTrainingLoss())).Where(c => c.Loss.Count > 0).ToList();
        if (curves.Count == 0)
        {
            throw new InvalidOperationException($"TrainingLoss: no run in {results.Folder} has a training log (zero- and few-shot runs do not train).");
        }

        var plot = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        for (int i = 0; i < curves.Count; i++)
        {
            var (run, loss) = curves[i];
            var s = plot.Add.Scatter(loss.Select(p => (double)p.Step).ToArray(), loss.Select(p => p.Loss).ToArray(), palette.GetColor(i));
            s.LineWidth = 2;
            s.MarkerSize = loss.Count <= 40 ? 4 : 0;
            s.LegendText = Label(run);
        }

        plot.Title($"{results.Name ?? "sweep"}: training loss");
        plot.XLabel("optimizer step");
        plot.YLabel("loss");
        if (curves.Count <= 12)
        {
            plot.ShowLegend(Alignment.UpperRight);
        }

        return Save(plot, path, width, height);
    }

    /// <summary>A heatmap of a classification run's confusion matrix (rows: gold label, columns: predicted), with the counts written in the cells.</summary>
    /// <param name="run">The run.</param>
    /// <param name="path">The PNG to write.</param>
    /// <param name="likelihood">The label-likelihood predictions instead of the generated ones (default: generated when present).</param>
    /// <param name="size">Width and height in pixels; null scales with the number of labels.</param>
    /// <returns><paramref name="path"/>.</returns>
    /// <exception cref="InvalidOperationException">The run has no confusion matrix of that kind.</exception>
    public static string ConfusionMatrix(CompletedRun run, string path, bool? likelihood = null, int? size = null)
    {
        ArgumentNullException.ThrowIfNull(run);
        bool useLikelihood = likelihood ?? run.ReadConfusionMatrix() is null;
        var matrix = run.ReadConfusionMatrix(useLikelihood)
            ?? throw new InvalidOperationException($"ConfusionMatrix: run {run.Name} has no {(useLikelihood ? "label-likelihood" : "generated")} confusion matrix (is it a classification run?).");
        var (labels, counts) = matrix;
        int n = labels.Count;
        var data = new double[n, n];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < n; j++)
            {
                data[i, j] = counts[i][j];
            }
        }

        var plot = new Plot();
        var heatmap = plot.Add.Heatmap(data);
        heatmap.Colormap = new ScottPlot.Colormaps.Viridis();
        plot.Add.ColorBar(heatmap);
        double peak = Math.Max(1, counts.Max(r => r.Length == 0 ? 0 : r.Max()));
        if (n <= 25)
        {
            for (int i = 0; i < n; i++)
            {
                for (int j = 0; j < n; j++)
                {
                    var text = plot.Add.Text(counts[i][j].ToString(CultureInfo.InvariantCulture), j, n - 1 - i);
                    text.LabelAlignment = Alignment.MiddleCenter;
                    text.LabelFontSize = n <= 10 ? 16 : 10;
                    text.LabelFontColor = counts[i][j] > peak * 0.6 ? Colors.Black : Colors.White;
                }
            }
        }

        double[] positions = Enumerable.Range(0, n).Select(i => (double)i).ToArray();
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(positions, labels.ToArray());
        plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericManual(positions, labels.Reverse().ToArray());
        if (n > 6 || labels.Any(l => l.Length > 8))
        {
            plot.Axes.Bottom.TickLabelStyle.Rotation = 45;
            plot.Axes.Bottom.TickLabelStyle.Alignment = Alignment.MiddleLeft;
            plot.Axes.Bottom.MinimumSize = Math.Min(220, 7f * labels.Max(l => l.Length) + 20);
        }

        plot.Title($"confusion matrix ({(useLikelihood ? "label likelihood" : "generate + parse")}): {Label(run)}");
        plot.XLabel("predicted");
        plot.YLabel("gold");
        int side = size ?? Math.Clamp(300 + 40 * n, 600, 1600);
        return Save(plot, path, side + 120, side);
    }

    private static double? Accuracy(CompletedRun r) =>
        r.Quality.TryGetValue("accuracy", out double a) ? a : r.Quality.TryGetValue("likelihood_accuracy", out double l) ? l : null;

    /// <summary>The settings other than the training fraction that vary across <paramref name="runs"/>, as a short label per run.</summary>
    private static Func<CompletedRun, string> OtherSettings(IReadOnlyList<CompletedRun> runs)
    {
        var ci = CultureInfo.InvariantCulture;
        var parts = new (string Name, Func<CompletedRun, string> Value)[]
        {
            ("method", r => r.ModeKind == EvaluationModeKind.FineTuned ? "QLoRA" : r.Mode),
            ("r", r => string.Create(ci, $"r={r.R}")),
            ("alpha", r => string.Create(ci, $"α={r.Alpha:0.###}")),
            ("dropout", r => string.Create(ci, $"dropout={r.Dropout:0.###}")),
            ("epochs", r => string.Create(ci, $"epochs={r.Epochs}")),
            ("lr", r => string.Create(ci, $"lr={r.LearningRate:0.######}")),
            ("targets", r => r.TargetModules is { } t ? string.Join("+", t) : string.Empty),
        };
        var varying = parts.Where(p => runs.Select(p.Value).Distinct().Count() > 1).ToArray();
        return r => varying.Length == 0 ? "all runs" : string.Join(" ", varying.Select(p => p.Value(r)));
    }

    private static string Label(CompletedRun r)
    {
        var ci = CultureInfo.InvariantCulture;
        string fraction = r.Fraction is double f && f < 1 ? string.Create(ci, $" {f * 100:0.##}%") : string.Empty;
        return r.ModeKind == EvaluationModeKind.FineTuned
            ? string.Create(ci, $"QLoRA{(r.R is int rank ? $" r{rank}" : string.Empty)}{(r.Dropout is double d ? $" d{d:0.##}" : string.Empty)}{(r.Epochs is int e ? $" e{e}" : string.Empty)}{fraction}")
            : r.Mode + fraction;
    }

    private static string Save(Plot plot, string path, int width, int height)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        byte[] png = plot.GetImageBytes(width, height, ImageFormat.Png);
        AtomicFile.WriteAllBytes(path, png);
        return path;
    }
}
