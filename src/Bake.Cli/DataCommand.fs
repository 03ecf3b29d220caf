/// `bake data info`, `fetch`, `bench` and `downsample`: what a dataset holds, downloading the full public datasets,
/// the loader's speed, and the 32×32 TinyImageNet made from the official folder.
module Bake.Cli.DataCommand

open System
open System.IO
open Argu
open Bake.Core
open Bake.Core.Data

[<CliPrefix(CliPrefix.DoubleDash)>]
type InfoArgs =
    | [<MainCommand; ExactlyOnce>] Dataset of name_or_path: string
    | Format of format: string
    | Cache of dir: string
    | Image_Size of pixels: int
    | Skip_Undecodable
    interface IArgParserTemplate with
        member this.Usage =
            match this with
            | Dataset _ ->
                "embedded, fashion-mnist, mnist, cifar10, cifar100 (fetched), or a dataset folder. Examples: "
                + "`bake data info embedded`, `bake data info cifar10`, `bake data info ~/data/cifar-10-batches-py`, "
                + "`bake data info ~/data/tiny-imagenet-200 --image-size 64`"
            | Format _ ->
                "force the layout of a folder: idx, cifar10-binary, cifar100-binary, cifar10-pickle, cifar100-pickle, imagefolder or tinyimagenet (default: recognised automatically)."
            | Cache _ -> "the download cache (default: $BAKE_DATA, else $XDG_CACHE_HOME/bake/datasets, else ~/.cache/bake/datasets)."
            | Image_Size _ -> "image folders: resize the shorter side to this size and center-crop a square (needed when images differ in size)."
            | Skip_Undecodable -> "image folders: leave out images that cannot be decoded, and report how many, instead of failing."

[<CliPrefix(CliPrefix.DoubleDash)>]
type FetchArgs =
    | [<MainCommand; ExactlyOnce>] Name of name: string
    | Cache of dir: string
    | Base_Url of url: string
    interface IArgParserTemplate with
        member this.Usage =
            match this with
            | Name _ ->
                "fashion-mnist, mnist, cifar10 or cifar100. Examples: `bake data fetch cifar10`, "
                + "`bake data fetch fashion-mnist --cache /data/bake`, `bake data fetch mnist --base-url http://mirror.local/mnist/`"
            | Cache _ -> "where to put it (default: $BAKE_DATA, else $XDG_CACHE_HOME/bake/datasets, else ~/.cache/bake/datasets)."
            | Base_Url _ -> "download from this base URL instead of the official one (a mirror); the files and hashes stay the same."

[<CliPrefix(CliPrefix.DoubleDash)>]
type BenchArgs =
    | [<MainCommand; ExactlyOnce>] Dataset of name_or_path: string
    | Format of format: string
    | Cache of dir: string
    | Batch_Size of images: int
    | Batches of count: int
    | Workers of counts: string
    | On_Demand
    | Image_Size of pixels: int
    | Model of name: string
    interface IArgParserTemplate with
        member this.Usage =
            match this with
            | Model _ -> "the model whose training step consumes the batches (default cnn, the default model; see bake train)."
            | Dataset _ ->
                "the dataset to measure (as for `bake data info`). Examples: `bake data bench embedded`, "
                + "`bake data bench ~/data/cifar10-jpeg --on-demand --workers 0,1,2`"
            | Format _ -> "force the layout of a folder (see `bake data info --help`)."
            | Cache _ -> "the download cache."
            | Batch_Size _ -> "images per batch (default 128)."
            | Batches _ -> "batches per measurement (default 40)."
            | Workers _ -> "comma-separated loader worker counts to measure (default 0,1,2)."
            | On_Demand -> "image folders: decode every image when its batch is loaded instead of once into memory."
            | Image_Size _ -> "image folders: resize the shorter side and center-crop a square."

[<CliPrefix(CliPrefix.DoubleDash)>]
type DownsampleArgs =
    | [<Mandatory>] From of folder: string
    | [<Mandatory>] To of folder: string
    | Size of pixels: int
    | Filter of name: string
    | Quality of percent: int
    interface IArgParserTemplate with
        member this.Usage =
            match this with
            | From _ ->
                "the official TinyImageNet-200 folder (train/<wnid>/images, val/images + val_annotations.txt, wnids.txt, words.txt). "
                + "Example: `bake data downsample --from tiny-imagenet-200 --to tinyimagenet32`"
            | To _ -> "the folder to create (must not exist; written to a temporary folder next to it, then renamed)."
            | Size _ -> "the side of the output images (default 32: every image becomes 32×32)."
            | Filter _ -> "the resampling filter, Pillow-exact and antialiased: box, bilinear (default; torchvision's Resize default), bicubic or lanczos."
            | Quality _ -> "the JPEG quality 1–100 (default 75, Pillow's default; 4:2:0 chroma subsampling)."

[<RequireSubcommand>]
type DataArgs =
    | [<CliPrefix(CliPrefix.None); SubCommand>] Info of ParseResults<InfoArgs>
    | [<CliPrefix(CliPrefix.None); SubCommand>] Fetch of ParseResults<FetchArgs>
    | [<CliPrefix(CliPrefix.None); SubCommand>] Bench of ParseResults<BenchArgs>
    | [<CliPrefix(CliPrefix.None); SubCommand>] Downsample of ParseResults<DownsampleArgs>
    interface IArgParserTemplate with
        member this.Usage =
            match this with
            | Info _ -> "print what a dataset holds: classes, counts per class and split, image shape, mean and std."
            | Fetch _ -> "download a full public dataset into the cache, verify its hashes, extract it (resumable)."
            | Downsample _ -> "make the 32×32 TinyImageNet (or another size) from the official TinyImageNet-200 folder, in the same layout."
            | Bench _ -> "measure the loader (decoding + augmentation, images/s) next to a model's training step (default: the small CNN)."

let private positive (name: string) (value: int) =
    if value < 1 then raise (UsageException($"{name} must be >= 1, got {value}"))
    value

/// `bake data info`: prints the summary of a dataset to `out`.
/// Opens the dataset named on the command line with the options `info` and `bench` share.
let private openDataset (spec: string) (format: string option) (cache: string option) (imageSize: int option) (skip: bool) (onDemand: bool) =
    let imageOptions =
        { ImageFolder.defaultOptions with
            ImageSize = imageSize |> Option.map (positive "--image-size")
            SkipUndecodable = skip
            InMemory = (if onDemand then Some false else None) }
    Datasets.loadWith (spec, format |> Option.map DataFormat.Parse, cache, imageOptions)

let info (args: ParseResults<InfoArgs>) (out: TextWriter) : int =
    let dataset =
        openDataset (args.GetResult InfoArgs.Dataset) (args.TryGetResult InfoArgs.Format) (args.TryGetResult InfoArgs.Cache)
            (args.TryGetResult InfoArgs.Image_Size) (args.Contains InfoArgs.Skip_Undecodable) false
    out.WriteLine(Datasets.describe dataset)
    0

/// `bake data fetch`: downloads a dataset, printing progress lines to `out`.
let fetch (args: ParseResults<FetchArgs>) (out: TextWriter) : int =
    let name = args.GetResult FetchArgs.Name
    let dataset = Fetch.find name
    let cache = args.TryGetResult FetchArgs.Cache |> Option.defaultWith Datasets.defaultCacheDirectory
    let baseUrl =
        args.TryGetResult FetchArgs.Base_Url
        |> Option.map (fun url ->
            match Uri.TryCreate(url, UriKind.Absolute) with
            | true, uri when uri.Scheme = Uri.UriSchemeHttp || uri.Scheme = Uri.UriSchemeHttps -> url
            | _ -> raise (UsageException($"--base-url must be an http or https URL, got '{url}'")))
    out.WriteLine $"fetching {dataset.Name} into {Path.Combine(cache, dataset.Name)}"
    out.WriteLine $"  hashes: {dataset.Provenance}"
    let folder = Fetch.fetch (dataset.Name, cache, baseUrl, (fun line -> out.WriteLine line))
    out.WriteLine $"done: {folder} (`bake data info {dataset.Name}` shows what it holds)"
    0

/// `bake data bench`: images/s of the loader alone (per worker count), of the training step alone, and of both
/// together (with the share of time the step waits for data).
let bench (args: ParseResults<BenchArgs>) (out: TextWriter) : int =
    let batchSize = args.GetResult(BenchArgs.Batch_Size, 128) |> positive "--batch-size"
    let count = args.GetResult(BenchArgs.Batches, 40) |> positive "--batches"
    let workers =
        args.GetResult(BenchArgs.Workers, "0,1,2").Split(',')
        |> Array.map (fun w ->
            match Int32.TryParse(w.Trim()) with
            | true, v when v >= 0 -> v
            | _ -> raise (UsageException($"--workers must list counts >= 0, got '{w}'")))
    let opened = Diagnostics.Stopwatch.StartNew()
    let dataset =
        openDataset (args.GetResult BenchArgs.Dataset) (args.TryGetResult BenchArgs.Format) (args.TryGetResult BenchArgs.Cache)
            (args.TryGetResult BenchArgs.Image_Size) false (args.Contains BenchArgs.On_Demand)
    let shape = dataset.ImageShape |> Array.map string |> String.concat "×"
    out.WriteLine $"dataset {dataset.Name}: {dataset.Train.Count} training images of {shape}; {dataset.Source}; opened in {opened.Elapsed.TotalSeconds:F1} s"
    out.WriteLine $"torch threads {TorchSharp.torch.get_num_threads ()}, {Environment.ProcessorCount} cores, batch {batchSize}, {count} batches per measurement"
    let transform = Transforms.forTraining dataset
    let batches epoch = Sampling.shuffledBatches (dataset.Train.Count, batchSize, 0, epoch, Some count)
    let rate images (watch: Diagnostics.Stopwatch) = float images / watch.Elapsed.TotalSeconds
    // 1. The loader alone.
    for w in workers do
        Loader.epoch (dataset.Train, Array.truncate 2 (batches 100), transform, 0, 100, w) |> Seq.iter (fun b -> (b :> IDisposable).Dispose())
        let watch = Diagnostics.Stopwatch.StartNew()
        let mutable images = 0
        for batch in Loader.epoch (dataset.Train, batches 0, transform, 0, 0, w) do
            images <- images + batch.Indices.Length
            (batch :> IDisposable).Dispose()
        out.WriteLine $"loader, {w} worker(s): {rate images watch,8:F0} images/s (decode + augment + normalise)"
    // 2. The training step alone, on one prepared batch.
    let modelName = args.GetResult(BenchArgs.Model, "cnn")
    let model =
        Bake.Core.Models.Models.create (modelName, dataset.Classes.Length, dataset.ImageShape[0], min dataset.ImageShape[1] dataset.ImageShape[2])
    // In the layout training uses by default (TRAIN.CHANNELS_LAST).
    Bake.Core.Models.Classifier.useChannelsLast (model, Keys.TRAIN.CHANNELS_LAST.Default)
    let optimizer = TorchSharp.torch.optim.SGD(model.parameters (), 0.01, momentum = 0.9)
    let step (batch: Batch) =
        use scope = TorchSharp.torch.NewDisposeScope()
        optimizer.zero_grad ()
        let loss = TorchSharp.torch.nn.functional.cross_entropy (model.forward batch.Images, batch.Labels)
        loss.backward ()
        optimizer.step () |> ignore
    do
        use prepared = Loader.makeBatch (dataset.Train, (batches 0)[0], transform, 0, 0, 0)
        for _ in 1..3 do step prepared
        let watch = Diagnostics.Stopwatch.StartNew()
        for _ in 1..count do step prepared
        out.WriteLine $"training step alone ({modelName}, cross-entropy, SGD): {rate (count * prepared.Indices.Length) watch,8:F0} images/s"
    // 3. Both: the step consumes the loader's batches; waiting = time blocked on the next batch.
    for w in workers do
        let watch = Diagnostics.Stopwatch.StartNew()
        let waiting = Diagnostics.Stopwatch()
        let mutable images = 0
        use batchesOf = (Loader.epoch (dataset.Train, batches 1, transform, 0, 1, w)).GetEnumerator()
        waiting.Start()
        while batchesOf.MoveNext() do
            waiting.Stop()
            use batch = batchesOf.Current
            step batch
            images <- images + batch.Indices.Length
            waiting.Start()
        waiting.Stop()
        let waitShare = 100.0 * waiting.Elapsed.TotalSeconds / watch.Elapsed.TotalSeconds
        out.WriteLine $"loader ({w} worker(s)) + training step: {rate images watch,8:F0} images/s, {waitShare:F0}%% of the time waiting for data"
    0

/// `bake data downsample`: a smaller copy of a TinyImageNet-200 folder, in the same layout.
let downsample (args: ParseResults<DownsampleArgs>) (out: TextWriter) : int =
    let options =
        { Size = args.GetResult(DownsampleArgs.Size, DownsampleOptions.Default.Size)
          Filter = args.TryGetResult DownsampleArgs.Filter |> Option.map ResampleFilter.Parse |> Option.defaultValue DownsampleOptions.Default.Filter
          Quality = args.GetResult(DownsampleArgs.Quality, DownsampleOptions.Default.Quality) }
    let watch = Diagnostics.Stopwatch.StartNew()
    let summary =
        Downsample.run (args.GetResult DownsampleArgs.From, args.GetResult DownsampleArgs.To, options, (fun line -> out.WriteLine line))
    out.WriteLine $"done in {watch.Elapsed.TotalSeconds:F0} s: {summary.Images} images resized, {summary.Copied} other files copied into {summary.Target}"
    out.WriteLine $"`bake data info {summary.Target}` shows its classes and mean/std (docs/tinyimagenet32.md gives the expected ones)"
    0

/// Runs a `bake data` sub-verb. Usage mistakes raise UsageException (exit 2), failures BakeException (exit 1).
let run (args: ParseResults<DataArgs>) : int =
    match args.GetSubCommand() with
    | Info infoArgs -> info infoArgs Console.Out
    | Fetch fetchArgs -> fetch fetchArgs Console.Out
    | Bench benchArgs -> bench benchArgs Console.Out
    | Downsample downsampleArgs -> downsample downsampleArgs Console.Out
