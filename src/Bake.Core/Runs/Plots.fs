namespace Bake.Core

open System
open System.IO

open Bake.Core.Interop
open ScottPlot

/// <summary>PNG figures of training runs (ScottPlot, rendered headless by SkiaSharp).</summary>
/// <remarks>Text needs a TrueType font on the machine (on Debian the package <c>fonts-dejavu-core</c>); without
/// one the curves are still drawn. Figures are written atomically.</remarks>
[<RequireQualifiedAccess>]
module Plots =

    /// <summary>The width of every figure, in pixels; a grouped bar chart with many groups is wider (see
    /// <see cref="M:Bake.Core.Plots.GroupedBars"/>).</summary>
    [<Literal>]
    let Width = 900

    // A grouped bar chart's width: this much per group of bars, plus the legend's column on the right.
    let private GroupWidth = 190
    let private LegendWidth = 240

    /// <summary>The height of every figure, in pixels.</summary>
    [<Literal>]
    let Height = 560

    let private finitePoints (xs: float[]) (ys: float[]) =
        Array.zip xs ys |> Array.filter (fun (x, y) -> Double.IsFinite x && Double.IsFinite y) |> Array.unzip

    /// Adds one curve; NaN points (epochs without that measurement) are left out.
    let private curve (plot: Plot) (xs: float[]) (ys: float[]) (label: string) (color: Color) (dashed: bool) (width: float32) =
        let xs, ys = finitePoints xs ys
        let line = plot.Add.Scatter(xs, ys, color)
        line.LegendText <- label
        line.LineWidth <- width
        line.MarkerSize <- (if xs.Length <= 40 then 5.0f else 0.0f)
        if dashed then line.LinePattern <- LinePattern.Dashed
        line

    let private fontFamily =
        lazy
            // Without any font file, Skia's directory-scanning font manager lists one family with an empty name.
            (let installed = SkiaSharp.SKFontManager.Default.FontFamilies |> Seq.filter (String.IsNullOrWhiteSpace >> not) |> Set.ofSeq
             if installed.IsEmpty then None
             else
                 // ScottPlot's own default falls back to whatever Skia lists first, often a serif face.
                 [ "DejaVu Sans"; "Liberation Sans"; "Noto Sans"; "Arial"; "Helvetica" ]
                 |> List.tryFind installed.Contains
                 |> Option.orElse (Some Fonts.Default))

    /// <summary>The font family the figures' text uses, or <c>None</c> when the machine has no font that Skia can
    /// find (then figures are drawn without any text; on Debian install <c>fonts-dejavu-core</c>).</summary>
    [<CompiledName("TextFont")>]
    let textFont () : string option = fontFamily.Value

    let private newPlot (title: string) (xLabel: string) (yLabel: string) =
        let plot = new Plot()
        fontFamily.Value |> Option.iter (fun family -> plot.Font.Set family |> ignore)
        plot.Title title
        plot.XLabel xLabel
        plot.YLabel yLabel
        plot

    let private saveWide (plot: Plot) (path: string) (width: int) =
        let bytes = plot.GetImageBytes(width, Height, ImageFormat.Png)
        Files.writeAtomic path (fun stream -> stream.Write(bytes, 0, bytes.Length))

    let private save (plot: Plot) (path: string) = saveWide plot path Width

    let private best (summary: RunSummary) =
        let epochs, top1 = finitePoints summary.Epochs summary.TestTop1
        if top1.Length = 0 then ""
        else
            let i = Array.findIndex ((=) (Array.max top1)) top1
            let fmt (v: float) = v.ToString("0.##", Globalization.CultureInfo.InvariantCulture)
            $" (best {fmt top1[i]} at epoch {fmt epochs[i]})"

    /// <summary>Writes the loss figure of one summary: total loss and its named terms per epoch on the left axis,
    /// the learning rate (dashed grey) on the right axis.</summary>
    [<CompiledName("LossFigure")>]
    let lossFigure (summary: RunSummary, outPath: string) : unit =
        use plot = newPlot $"{summary.Name}: training loss" "epoch" "loss"
        let palette = Palettes.Category10()
        curve plot summary.Epochs summary.TrainLoss "loss (total)" (palette.GetColor 0) false 2.5f |> ignore
        summary.Terms |> List.iteri (fun i (name, values) -> curve plot summary.Epochs values name (palette.GetColor(i + 1)) false 1.5f |> ignore)
        let lr = curve plot summary.Epochs summary.LearningRates "learning rate (right axis)" Colors.Gray true 1.5f
        lr.Axes.YAxis <- plot.Axes.Right
        plot.Axes.Right.Label.Text <- "learning rate"
        plot.ShowLegend Alignment.UpperRight |> ignore
        save plot outPath

    /// <summary>Writes the accuracy figure of one summary: train top-1 (dashed) and test top-1 per epoch, percent.</summary>
    [<CompiledName("AccuracyFigure")>]
    let accuracyFigure (summary: RunSummary, outPath: string) : unit =
        use plot = newPlot $"{summary.Name}: top-1 accuracy" "epoch" "top-1 accuracy (%)"
        let palette = Palettes.Category10()
        curve plot summary.Epochs summary.TrainTop1 "train" (palette.GetColor 0) true 1.5f |> ignore
        curve plot summary.Epochs summary.TestTop1 ("test" + best summary) (palette.GetColor 0) false 2.5f |> ignore
        plot.ShowLegend Alignment.LowerRight |> ignore
        save plot outPath

    let private requirePng (outPath: string) =
        if not (String.Equals(Path.GetExtension outPath, ".png", StringComparison.OrdinalIgnoreCase)) then
            raise (UsageException $"{outPath}: figures are PNG files: expected a path ending in .png")

    /// <summary>A line figure of several series, each with optional ± error bars (e.g. mean ± std over seeds).</summary>
    /// <param name="title">Figure title.</param>
    /// <param name="xLabel">x-axis label.</param>
    /// <param name="yLabel">y-axis label.</param>
    /// <param name="series">(legend, x values, y values, error half-widths or an empty array).</param>
    /// <param name="outPath">The PNG to write (atomically).</param>
    [<CompiledName("Lines")>]
    let lines (title: string, xLabel: string, yLabel: string, series: (string * float[] * float[] * float[]) list, outPath: string) : unit =
        requirePng outPath
        use plot = newPlot title xLabel yLabel
        let palette = Palettes.Category10()
        series
        |> List.iteri (fun i (label, xs, ys, errors) ->
            let color = palette.GetColor i
            curve plot xs ys label color false 2.0f |> ignore
            if errors.Length = xs.Length && xs.Length > 0 then
                let bars = plot.Add.ErrorBar(xs, ys, errors)
                bars.Color <- color)
        plot.ShowLegend Alignment.LowerRight |> ignore
        save plot outPath

    /// <summary>A grouped bar figure: one group of bars per category (e.g. dataset × regime), one bar per series
    /// (e.g. method) in every group, each with a ± error bar; NaN values (a series missing in a group) draw no bar.</summary>
    /// <param name="title">Figure title.</param>
    /// <param name="yLabel">y-axis label.</param>
    /// <param name="groups">The category names, left to right.</param>
    /// <param name="series">(legend, one value per group, one error half-width per group).</param>
    /// <param name="outPath">The PNG to write (atomically).</param>
    [<CompiledName("GroupedBars")>]
    let groupedBars (title: string, yLabel: string, groups: string[], series: (string * float[] * float[]) list, outPath: string) : unit =
        requirePng outPath
        use plot = newPlot title "" yLabel
        let palette = Palettes.Category10()
        let width = 0.8 / float (max 1 series.Length)
        series
        |> List.iteri (fun i (label, values, errors) ->
            let color = palette.GetColor i
            let bars =
                [| for g in 0 .. groups.Length - 1 do
                       if g < values.Length && Double.IsFinite values[g] then
                           let position = float g - 0.4 + width * (float i + 0.5)
                           let error = if g < errors.Length && Double.IsFinite errors[g] then errors[g] else 0.0
                           yield Bar(Position = position, Value = values[g], Error = error, Size = width * 0.9, FillColor = color) |]
            plot.Add.Bars bars |> ignore
            plot.Legend.ManualItems.Add(LegendItem(LabelText = label, FillColor = color)))
        plot.Axes.Bottom.SetTicks(Array.init groups.Length float, groups)
        // Outside the data area: with many groups and series, any corner inside it covers some group's bars.
        plot.ShowLegend Edge.Right |> ignore
        // Room for each group's label (study names run to ~25 characters) beside the legend's column, so that
        // neighbouring tick labels never run into each other.
        saveWide plot outPath (max Width (groups.Length * GroupWidth + LegendWidth))

    /// <summary>Reads <c>runDir/summary.csv</c> and writes <c>runDir/loss.png</c> and <c>runDir/accuracy.png</c>.</summary>
    /// <returns>The two paths written.</returns>
    /// <exception cref="T:Bake.Core.BakeException">The summary is missing or malformed (see
    /// <see cref="M:Bake.Core.Reporting.Summary.Read(System.String)"/>), or a figure cannot be written.</exception>
    [<CompiledName("SummaryFigures")>]
    let summaryFigures (runDir: string) : string[] =
        let summary = Summary.read runDir
        let dir = Path.GetDirectoryName summary.Path
        let loss, accuracy = Path.Combine(dir, "loss.png"), Path.Combine(dir, "accuracy.png")
        lossFigure (summary, loss)
        accuracyFigure (summary, accuracy)
        [| loss; accuracy |]

    /// <summary>Overlays several runs' test top-1 (solid) and train top-1 (dashed, same colour) per epoch in one
    /// figure; the legend names each run by its folder name.</summary>
    /// <exception cref="T:Bake.Core.UsageException">No run directory, or an output path not ending in .png.</exception>
    /// <exception cref="T:Bake.Core.BakeException">A summary is missing or malformed, or the figure cannot be written.</exception>
    [<CompiledName("CompareRuns")>]
    let compareRuns (runDirs: string seq, outPath: string) : unit =
        requirePng outPath
        let summaries = runDirs |> Seq.map Summary.read |> List.ofSeq
        if summaries.IsEmpty then raise (UsageException "no run directory to compare: expected at least one")
        use plot = newPlot "top-1 accuracy: test (solid) and train (dashed)" "epoch" "top-1 accuracy (%)"
        let palette = Palettes.Category10()
        summaries |> List.iteri (fun i summary ->
            let color = palette.GetColor i
            curve plot summary.Epochs summary.TestTop1 (summary.Name + best summary) color false 2.5f |> ignore
            // The train curve shares the run's colour; one legend entry per run is enough.
            curve plot summary.Epochs summary.TrainTop1 "" color true 1.5f |> ignore)
        plot.ShowLegend Alignment.LowerRight |> ignore
        save plot outPath

    /// <summary>What <c>bake plot</c> does: each run directory gets its <c>loss.png</c> and <c>accuracy.png</c>;
    /// with several runs, or with <paramref name="compareOut"/> given, a comparison figure is written too (to
    /// <paramref name="compareOut"/>, by default <c>compare.png</c> in the current directory).</summary>
    /// <returns>Every path written, in order.</returns>
    /// <exception cref="T:Bake.Core.UsageException">No run directory, or a comparison path not ending in .png.</exception>
    /// <exception cref="T:Bake.Core.BakeException">A summary is missing or malformed, or a figure cannot be written.</exception>
    [<CompiledName("PlotRuns")>]
    let plotRuns (runDirs: string list, compareOut: string option) : string list =
        if runDirs.IsEmpty then raise (UsageException "no run directory given: expected at least one")
        compareOut |> Option.iter requirePng
        let perRun = runDirs |> List.collect (summaryFigures >> List.ofArray)
        match compareOut, runDirs with
        | None, [ _ ] -> perRun
        | _ ->
            let out = Path.GetFullPath(defaultArg compareOut "compare.png")
            compareRuns (runDirs, out)
            perRun @ [ out ]
