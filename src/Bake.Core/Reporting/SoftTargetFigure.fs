namespace Bake.Core.Reporting

open System
open System.IO
open SkiaSharp
open TorchSharp
open Bake.Core
open Bake.Core.Data
open Bake.Core.Models

/// <summary>One image of a soft-target figure: the image, its label and the top classes of its BAKE soft target.</summary>
[<NoComparison>]
type SoftTargetPanel =
    {
        /// <summary>The image as the dataset stores it: channel-planar bytes, C×H×W.</summary>
        Pixels: byte[]
        /// <summary>C; H; W of <c>Pixels</c>.</summary>
        Shape: int[]
        /// <summary>The index of the image in the training split.</summary>
        Index: int
        /// <summary>The ground-truth label and its class name.</summary>
        Label: int
        /// <summary>The class name of <c>Label</c>.</summary>
        LabelName: string
        /// <summary>The most probable classes of the image's soft target Q (Eq. 9), most probable first.</summary>
        Target: ClassScore[]
        /// <summary>The most probable classes of the model's own tempered prediction softmax(z/τ), for comparison.</summary>
        Own: ClassScore[]
    }

/// <summary>What a soft-target figure shows and where its settings came from.</summary>
[<NoComparison>]
type SoftTargetSample =
    {
        /// <summary>The checkpoint folder.</summary>
        Checkpoint: string
        /// <summary>The model name.</summary>
        Model: string
        /// <summary>The dataset's name.</summary>
        Dataset: string
        /// <summary>ω, τ and the propagation form used for the targets.</summary>
        Options: BakeOptions
        /// <summary>M, same-class images per anchor in the sampled batch.</summary>
        IntraImages: int
        /// <summary>The images in the batch (anchors × (M + 1)); all of them take part in the ensemble.</summary>
        BatchSize: int
        /// <summary>Where ω, τ, M and the batch size came from: the run's config.yaml, or the paper's defaults.</summary>
        SettingsSource: string
        /// <summary>The images shown.</summary>
        Panels: SoftTargetPanel list
    }

/// <summary>The paper's Figure 4 for one batch: images of a BAKE batch with their labels and the top-3 classes of
/// the soft targets the batch's knowledge ensembling gives them (SkiaSharp drawing, PNG).</summary>
[<RequireQualifiedAccess>]
module SoftTargetFigure =

    /// <summary>The width of one image's tile, in pixels.</summary>
    [<Literal>]
    let TileWidth = 340

    /// <summary>The height of one image's tile, in pixels.</summary>
    [<Literal>]
    let TileHeight = 160

    /// <summary>The height of the title band, in pixels.</summary>
    [<Literal>]
    let TitleHeight = 44

    /// <summary>Tiles per row at most.</summary>
    [<Literal>]
    let Columns = 4

    /// <summary>The side of the drawn image inside its tile, in pixels.</summary>
    let private imageSide = 128

    /// <summary>The figure's size in pixels for <paramref name="count"/> images.</summary>
    [<CompiledName("Size")>]
    let size (count: int) : int * int =
        let columns = max 1 (min Columns count)
        let rows = (count + columns - 1) / columns
        columns * TileWidth, TitleHeight + rows * TileHeight

    /// <summary>ω, τ, the propagation form, M and the batch size of the run a checkpoint belongs to (from its
    /// config.yaml: BAKE's keys are read whatever the method, so a baseline's checkpoint is shown with the targets BAKE
    /// would have given it), with a description of the source; the paper's defaults (M = 1, batch 128) when the run
    /// has no config.</summary>
    let private runSettings (opened: OpenedCheckpoint) =
        match opened.Run with
        | Some run ->
            let options = BakeMethod.optionsOf run.Config |> Result.defaultValue BakeOptions.Default
            let m = if run.Settings.IntraImages > 0 then run.Settings.IntraImages else 1
            options, m, run.Settings.BatchSize, $"the run's {run.ConfigPath}"
        | None -> BakeOptions.Default, 1, 128, "the paper's defaults (the checkpoint has no run directory with a config.yaml)"

    /// <summary>Samples one BAKE batch of a checkpoint's training data and computes the soft targets of its images.</summary>
    /// <param name="path">A checkpoint folder or a run directory (its last checkpoint: the final model).</param>
    /// <param name="datasetSpec">The dataset to sample from (its whole training split); None: the run's own training images (TRAIN.DATASET after TRAIN.PER_CLASS and the held-out images).</param>
    /// <param name="count">How many images of the batch to show (its first anchors, in the sampler's random order).</param>
    /// <param name="seed">Seeds the sampler (epoch 0).</param>
    /// <exception cref="T:Bake.Core.UsageException">No dataset can be determined, or count &lt; 1.</exception>
    /// <exception cref="T:Bake.Core.BakeException">No checkpoint, or a dataset with another class count.</exception>
    [<CompiledName("Compute")>]
    let compute (path: string, datasetSpec: string option, count: int, seed: int) : SoftTargetSample =
        if count < 1 then raise (UsageException($"count {count}: expected at least 1 image", "count"))
        let opened = RunDirectory.openCheckpoint path
        let checkpoint, state = opened.Checkpoint, opened.State
        let options, m, batchSize, source = runSettings opened
        // From the run's own training images (its TRAIN.PER_CLASS selection, the only ones an ImageFolder run holds),
        // or a named dataset's; `kept` maps them to their indices in the training split.
        let dataset, kept =
            match datasetSpec, opened.Run with
            | Some spec, _ -> let d = Datasets.load (spec, None) in d, Array.init d.Train.Count id
            | None, Some run -> let d = RunDirectory.trainingData run in d, Setup.trainingIndices run.Settings d
            | None, None -> raise (UsageException($"{path}: the run's config.yaml was not found next to the checkpoint; name the dataset to sample from", "dataset"))
        use dataset = dataset
        let images = Split.subset dataset.Train kept
        use model = RunDirectory.loadModel opened
        Checkpoints.requireSameClasses (checkpoint, state, dataset.Name, dataset)
        let anchors = max 1 (batchSize / (m + 1))
        let batch = (Sampling.bakeBatches (images.Labels, anchors, m, seed, 0))[0]
        use _ = torch.NewDisposeScope()
        use _ = torch.no_grad ()
        let raw = images.Load batch
        let output = Classifier.featuresAndLogits (model, Prediction.prepare (state, raw))
        let targets = Propagation.softTargets (output.Features, output.Logits, options)
        let own = Propagation.temperedProbabilities (output.Logits, options.Temperature)
        let shown = min count batch.Length
        let top (probabilities: torch.Tensor) = Prediction.topK (probabilities.narrow (0L, 0L, int64 shown), state.Classes, 3)
        let targetTop, ownTop = top targets, top own
        let shape = raw.shape |> Array.skip 1 |> Array.map int
        { Checkpoint = checkpoint
          Model = state.Model
          Dataset = dataset.Name
          Options = options
          IntraImages = m
          BatchSize = batch.Length
          SettingsSource = source
          Panels =
            [ for i in 0 .. shown - 1 ->
                  let label = images.Labels[batch[i]]
                  { Pixels = raw[int64 i].contiguous().data<byte>().ToArray()
                    Shape = shape
                    Index = kept[batch[i]]
                    Label = label
                    LabelName = state.Classes[label]
                    Target = targetTop[i]
                    Own = ownTop[i] } ] }

    /// <summary>An image's pixels as a Skia image (gray or RGB).</summary>
    let private skiaImage (panel: SoftTargetPanel) : SKImage =
        let c, h, w = panel.Shape[0], panel.Shape[1], panel.Shape[2]
        use bitmap = new SKBitmap(SKImageInfo(w, h, SKColorType.Rgba8888, SKAlphaType.Opaque))
        let plane = h * w
        let rgba = Array.zeroCreate<byte> (4 * plane)
        for p in 0 .. plane - 1 do
            for k in 0 .. 2 do
                rgba[4 * p + k] <- panel.Pixels[(if c = 3 then k * plane else 0) + p]
            rgba[4 * p + 3] <- 255uy
        Runtime.InteropServices.Marshal.Copy(rgba, 0, bitmap.GetPixels(), rgba.Length)
        SKImage.FromBitmap bitmap

    let private ink = SKColor(0x22uy, 0x22uy, 0x22uy)
    let private muted = SKColor(0x66uy, 0x66uy, 0x66uy)
    let private truthBar = SKColor(0x2Cuy, 0xA0uy, 0x2Cuy)
    let private otherBar = SKColor(0x1Fuy, 0x77uy, 0xB4uy)
    let private track = SKColor(0xE8uy, 0xE8uy, 0xE8uy)

    let private format (v: float) = v.ToString("0.00", Globalization.CultureInfo.InvariantCulture)

    /// <summary>A class name short enough for a tile.</summary>
    let private shortName (name: string) = if name.Length <= 22 then name else name.Substring(0, 21) + "…"

    /// <summary>Draws a sample as a PNG grid (up to four tiles per row): each tile shows the image (scaled to 128
    /// pixels, nearest-neighbour for small images), its ground truth ("GT"), the top-3 classes of its soft target
    /// with probability bars (green for the ground-truth class) and, in grey, the model's own top class. Written
    /// atomically.</summary>
    /// <exception cref="T:Bake.Core.BakeException">The file cannot be written.</exception>
    [<CompiledName("Draw")>]
    let draw (sample: SoftTargetSample, outPath: string) : unit =
        let width, height = size sample.Panels.Length
        use surface = SKSurface.Create(SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Premul))
        let canvas = surface.Canvas
        canvas.Clear SKColors.White
        use typeface =
            match Plots.textFont () with
            | Some family -> SKTypeface.FromFamilyName(family)
            | None -> SKTypeface.Default
        use bold = SKTypeface.FromFamilyName(typeface.FamilyName, SKFontStyle.Bold)
        use titleFont = new SKFont(bold, 17.0f)
        use textFont = new SKFont(typeface, 14.0f)
        use labelFont = new SKFont(bold, 14.0f)
        use smallFont = new SKFont(typeface, 12.0f)
        use paint = new SKPaint(IsAntialias = true, Color = ink)
        let text (s: string) (x: int) (y: int) (font: SKFont) (color: SKColor) =
            paint.Color <- color
            canvas.DrawText(s, float32 x, float32 y, SKTextAlign.Left, font, paint)
        let o = sample.Options
        text $"BAKE soft targets · {sample.Model} · {sample.Dataset} · batch of {sample.BatchSize} (M = {sample.IntraImages}) · ω = {o.Omega}, τ = {o.Temperature}" 12 28 titleFont ink
        sample.Panels
        |> List.iteri (fun i panel ->
            let left = (i % Columns) * TileWidth
            let top = TitleHeight + (i / Columns) * TileHeight
            use image = skiaImage panel
            let sampling =
                if panel.Shape[1] < imageSide then SKSamplingOptions(SKFilterMode.Nearest)
                else SKSamplingOptions(SKFilterMode.Linear, SKMipmapMode.Linear)
            let imageTop = top + (TileHeight - imageSide) / 2
            canvas.DrawImage(image, SKRect.Create(float32 (left + 12), float32 imageTop, float32 imageSide, float32 imageSide), sampling, null)
            let x = left + 12 + imageSide + 12
            let barWidth = TileWidth - (x - left) - 14
            text $"GT: {shortName panel.LabelName}" x (imageTop + 14) labelFont ink
            panel.Target
            |> Array.iteri (fun rank score ->
                let y = imageTop + 38 + rank * 28
                text $"{shortName score.ClassName}  {format score.Probability}" x y textFont ink
                paint.Color <- track
                canvas.DrawRect(SKRect.Create(float32 x, float32 (y + 5), float32 barWidth, 6.0f), paint)
                paint.Color <- (if score.Label = panel.Label then truthBar else otherBar)
                canvas.DrawRect(SKRect.Create(float32 x, float32 (y + 5), float32 (float barWidth * score.Probability), 6.0f), paint))
            let own = panel.Own[0]
            text $"own: {shortName own.ClassName} {format own.Probability}" x (imageTop + imageSide) smallFont muted)
        use snapshot = surface.Snapshot()
        use png = snapshot.Encode(SKEncodedImageFormat.Png, 100)
        Files.writeAtomic outPath (fun stream -> png.SaveTo stream)

    /// <summary>Computes (see <see cref="M:Bake.Core.Reporting.SoftTargetFigure.Compute"/>) and draws (see
    /// <see cref="M:Bake.Core.Reporting.SoftTargetFigure.Draw"/>) the figure.</summary>
    /// <exception cref="T:Bake.Core.UsageException">The output is not a .png file, or see Compute.</exception>
    [<CompiledName("Render")>]
    let render (path: string, datasetSpec: string option, count: int, seed: int, outPath: string) : SoftTargetSample =
        if not (outPath.EndsWith(".png", StringComparison.OrdinalIgnoreCase)) then
            raise (UsageException($"{outPath}: the figure is a PNG file (expected a .png name)", "out"))
        let sample = compute (path, datasetSpec, count, seed)
        draw (sample, outPath)
        sample
