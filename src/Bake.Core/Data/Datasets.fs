namespace Bake.Core.Data

open System
open System.IO
open Bake.Core

/// <summary>The on-disk layouts Bake reads.</summary>
[<RequireQualifiedAccess>]
type DataFormat =
    /// <summary>Four IDX files with their standard names (MNIST, Fashion-MNIST, KMNIST).</summary>
    | Idx
    /// <summary>CIFAR-10 binary batches (<c>data_batch_1..5.bin</c>, <c>test_batch.bin</c>).</summary>
    | Cifar10Binary
    /// <summary>CIFAR-100 binary (<c>train.bin</c>, <c>test.bin</c>; coarse and fine labels).</summary>
    | Cifar100Binary
    /// <summary>CIFAR-10 Python pickles (<c>cifar-10-batches-py</c>).</summary>
    | Cifar10Pickle
    /// <summary>CIFAR-100 Python pickles (<c>cifar-100-python</c>).</summary>
    | Cifar100Pickle
    /// <summary><c>root/train/&lt;class&gt;/*.jpg|png</c> and <c>root/test</c> (or <c>val</c>).</summary>
    | ImageFolder
    /// <summary>TinyImageNet's layout: <c>train/&lt;wnid&gt;/images</c>, <c>val/images</c> + <c>val_annotations.txt</c>.</summary>
    | TinyImageNet

    /// <summary>The name used by <c>--format</c>.</summary>
    member this.Name =
        match this with
        | Idx -> "idx"
        | Cifar10Binary -> "cifar10-binary"
        | Cifar100Binary -> "cifar100-binary"
        | Cifar10Pickle -> "cifar10-pickle"
        | Cifar100Pickle -> "cifar100-pickle"
        | ImageFolder -> "imagefolder"
        | TinyImageNet -> "tinyimagenet"

    /// <summary>Every format, in the order detection tries them.</summary>
    static member All =
        [ Idx; Cifar10Binary; Cifar100Binary; Cifar10Pickle; Cifar100Pickle; TinyImageNet; ImageFolder ]

    /// <summary>Parses a <c>--format</c> name (case-insensitive).</summary>
    /// <exception cref="T:Bake.Core.UsageException">An unknown name; the message lists the known ones.</exception>
    static member Parse(name: string) : DataFormat =
        match DataFormat.All |> List.tryFind (fun f -> String.Equals(f.Name, name.Trim(), StringComparison.OrdinalIgnoreCase)) with
        | Some format -> format
        | None ->
            let known = DataFormat.All |> List.map (fun f -> f.Name) |> String.concat ", "
            raise (UsageException($"unknown dataset format '{name}': expected one of {known}"))

/// <summary>A dataset known by name is not in the download cache yet; the command line adds how to fetch it.</summary>
type DatasetNotFetchedException(name: string, cache: string) =
    inherit BakeException($"dataset '{name}' is not in the cache {cache}: fetch it into the cache first (the cache is the BAKE_DATA folder unless given)")

    /// <summary>The dataset's name.</summary>
    member _.Name = name

/// <summary>Where datasets live: the embedded default, the download cache, and folders in any supported layout.</summary>
[<RequireQualifiedAccess>]
module Datasets =

    /// <summary>The name of the embedded default dataset.</summary>
    [<Literal>]
    let EmbeddedName = "embedded"

    /// <summary>The download cache: <c>$BAKE_DATA</c> when set, else <c>$XDG_CACHE_HOME/bake/datasets</c>, else
    /// <c>~/.cache/bake/datasets</c>.</summary>
    [<CompiledName("DefaultCacheDirectory")>]
    let defaultCacheDirectory () : string =
        let env name =
            match Environment.GetEnvironmentVariable name with
            | null
            | "" -> None
            | value -> Some value
        match env "BAKE_DATA", env "XDG_CACHE_HOME" with
        | Some dir, _ -> dir
        | None, Some cache -> Path.Combine(cache, "bake", "datasets")
        | None, None -> Path.Combine(Environment.GetFolderPath Environment.SpecialFolder.UserProfile, ".cache", "bake", "datasets")

    /// <summary>The folder of the embedded dataset: <c>data/fashion-mnist-subset</c> next to Bake.Core.dll (copied
    /// into every build output that references Bake.Core), else in the source tree above it.</summary>
    [<CompiledName("EmbeddedDirectory")>]
    let embeddedDirectory () : string =
        let relative = Path.Combine("data", "fashion-mnist-subset")
        let nextTo (dir: string) = if isNull dir then None else Some(Path.Combine(dir, relative))
        let rec above (dir: DirectoryInfo) =
            if isNull dir then None
            else
                let candidate = Path.Combine(dir.FullName, relative)
                if Directory.Exists candidate then Some candidate else above dir.Parent
        let assemblyDir = Path.GetDirectoryName(typeof<InMemorySplit>.Assembly.Location)
        [ nextTo assemblyDir; nextTo AppContext.BaseDirectory ]
        |> List.choose id
        |> List.tryFind Directory.Exists
        |> Option.orElse (if String.IsNullOrEmpty assemblyDir then None else above (DirectoryInfo assemblyDir))
        |> Option.defaultWith (fun () ->
            raise (BakeException($"the embedded dataset was not found: expected {relative} next to {typeof<InMemorySplit>.Assembly.Location}")))

    /// <summary>The embedded default dataset: a class-balanced Fashion-MNIST subset, 8,000 training and 2,000 test
    /// images of 1×28×28 (see <c>data/fashion-mnist-subset/README.md</c>).</summary>
    [<CompiledName("Embedded")>]
    let embedded () : Dataset =
        Idx.load (embeddedDirectory ()) "fashion-mnist-subset" (Some Idx.fashionMnistClasses)

    /// <summary>The datasets known by name, with their images' channels and side: the embedded one and those the
    /// fetcher puts in the cache (its catalogue has the same names).</summary>
    let known: (string * (int * int)) list =
        [ EmbeddedName, (1, 28); "fashion-mnist", (1, 28); "mnist", (1, 28); "cifar10", (3, 32); "cifar100", (3, 32) ]

    /// <summary>The names of <see cref="P:Bake.Core.Data.Datasets.known"/>.</summary>
    let knownNames: string list = known |> List.map fst

    let private exists (folder: string) (name: string) = File.Exists(Path.Combine(folder, name))

    /// <summary>True when <paramref name="folder"/> itself holds a dataset in <paramref name="format"/>.</summary>
    [<CompiledName("Matches")>]
    let matches (format: DataFormat) (folder: string) : bool =
        match format with
        | DataFormat.Idx -> (Idx.find folder Idx.standardNames[0]).IsSome
        | DataFormat.Cifar10Binary -> exists folder "data_batch_1.bin" || exists folder "test_batch.bin"
        | DataFormat.Cifar100Binary -> exists folder "train.bin" && exists folder "test.bin"
        | DataFormat.Cifar10Pickle -> exists folder "data_batch_1" || exists folder "test_batch"
        | DataFormat.Cifar100Pickle -> exists folder "train" && exists folder "test" && exists folder "meta"
        | DataFormat.TinyImageNet ->
            Directory.Exists(Path.Combine(folder, "train")) && exists folder (Path.Combine("val", "val_annotations.txt"))
        | DataFormat.ImageFolder -> Directory.Exists(Path.Combine(folder, "train")) && (ImageFolder.testFolder folder).IsSome

    /// <summary>Recognises the layout of a folder: the folder itself, else exactly one of its subfolders (an extracted
    /// archive such as <c>cifar-10-batches-bin/</c>), with the first matching format in
    /// <see cref="P:Bake.Core.Data.DataFormat.All"/>; <paramref name="format"/> restricts the search to one format.</summary>
    /// <returns>The format and the folder that holds the files, or None.</returns>
    [<CompiledName("Detect")>]
    let detect (folder: string) (format: DataFormat option) : (DataFormat * string) option =
        let formats = format |> Option.map List.singleton |> Option.defaultValue DataFormat.All
        let inFolder (dir: string) = formats |> List.tryFind (fun f -> matches f dir) |> Option.map (fun f -> f, dir)
        match inFolder folder with
        | Some found -> Some found
        | None ->
            match Directory.GetDirectories folder |> Array.choose inFolder with
            | [| found |] -> Some found
            | _ -> None

    /// <summary>Loads a dataset folder in a known format.</summary>
    [<CompiledName("LoadFormat")>]
    let loadFormat (format: DataFormat) (folder: string) (imageOptions: ImageFolderOptions) : Dataset =
        let name = DirectoryInfo(folder).Name
        match format with
        | DataFormat.Idx -> Idx.load folder name None
        | DataFormat.Cifar10Binary -> Cifar.loadCifar10Binary folder
        | DataFormat.Cifar100Binary -> Cifar.loadCifar100Binary folder
        | DataFormat.Cifar10Pickle -> Cifar.loadCifar10Pickle folder
        | DataFormat.Cifar100Pickle -> Cifar.loadCifar100Pickle folder
        | DataFormat.ImageFolder -> ImageFolder.load folder imageOptions
        | DataFormat.TinyImageNet -> ImageFolder.loadTinyImageNet folder imageOptions

    /// <summary>Loads the dataset in a folder, recognising its layout (see <see cref="M:Bake.Core.Data.Datasets.Detect"/>)
    /// or using the forced <paramref name="format"/>.</summary>
    /// <exception cref="T:Bake.Core.BakeException">The folder does not exist or holds no supported layout.</exception>
    [<CompiledName("LoadFolder")>]
    let loadFolder (folder: string) (format: DataFormat option) (imageOptions: ImageFolderOptions) : Dataset =
        let folder = Path.GetFullPath folder
        if not (Directory.Exists folder) then raise (BakeException($"{folder}: dataset folder not found"))
        match detect folder format with
        | Some(found, dir) -> loadFormat found dir imageOptions
        | None ->
            match format with
            | Some f ->
                // Forced: read the folder as that format, so the error names the missing file.
                loadFormat f folder imageOptions
            | None ->
                raise (
                    BakeException(
                        $"{folder}: no supported dataset layout found (looked for IDX files such as train-images-idx3-ubyte[.gz], "
                        + "CIFAR binary batches (data_batch_1.bin, train.bin), CIFAR Python batches (data_batch_1, train + meta), "
                        + "TinyImageNet (train/ + val/val_annotations.txt) and ImageFolder (train/<class>/ + test/ or val/), "
                        + "in the folder and its subfolders); a format (DATA.FORMAT) forces one"
                    )
                )

    /// <summary>The cache folder of a dataset fetched by name.</summary>
    [<CompiledName("CachedFolder")>]
    let cachedFolder (cache: string) (name: string) : string = Path.Combine(cache, name)

    /// <summary>Loads a dataset by name or path, with options for image folders and the cache.</summary>
    /// <param name="spec">"embedded"; "fashion-mnist", "mnist", "cifar10" or "cifar100" (from the fetch cache); or a
    /// folder path.</param>
    /// <param name="format">Forces a layout for a folder.</param>
    /// <param name="cache">The fetch cache, or None for <see cref="M:Bake.Core.Data.Datasets.DefaultCacheDirectory"/>.</param>
    /// <param name="imageOptions">How image folders are opened.</param>
    /// <exception cref="T:Bake.Core.UsageException">An unknown name that is not a folder.</exception>
    /// <exception cref="T:Bake.Core.BakeException">A named dataset missing from the cache, or a bad dataset.</exception>
    [<CompiledName("LoadWith")>]
    let loadWith (spec: string, format: DataFormat option, cache: string option, imageOptions: ImageFolderOptions) : Dataset =
        if String.IsNullOrWhiteSpace spec then raise (UsageException "no dataset given")
        let lower = spec.Trim().ToLowerInvariant()
        if lower = EmbeddedName then
            embedded ()
        elif knownNames |> List.contains lower && not (Directory.Exists spec) then
            let cache = cache |> Option.defaultWith defaultCacheDirectory
            let folder = cachedFolder cache lower
            if not (Directory.Exists folder) then
                raise (DatasetNotFetchedException(lower, cache))
            let dataset = loadFolder folder format imageOptions
            { dataset with Name = lower }
        elif File.Exists spec then
            raise (UsageException($"'{spec}' is a file: give the folder that holds the dataset's files"))
        elif Directory.Exists spec || spec.Contains '/' || spec.Contains '\\' || spec.StartsWith "." then
            // A path: loadFolder names it when it does not exist.
            loadFolder spec format imageOptions
        else
            let known = knownNames |> String.concat ", "
            raise (UsageException($"unknown dataset '{spec}': expected one of {known}, or the path of a dataset folder"))

    /// <summary>Loads a dataset by name or path (see <see cref="M:Bake.Core.Data.Datasets.LoadWith"/>) with the
    /// default cache and image options.</summary>
    [<CompiledName("Load")>]
    let load (spec: string, format: string option) : Dataset =
        loadWith (spec, format |> Option.map DataFormat.Parse, None, ImageFolder.defaultOptions)

    /// <summary>Loads a dataset by name or path in a layout already parsed (a run's DATA.FORMAT), with the default
    /// cache and image options, holding only the training images <paramref name="trainingSelection"/> picks when the
    /// layout decodes files (a run's TRAIN.PER_CLASS and held-out images; see
    /// <see cref="P:Bake.Core.Data.ImageFolderOptions.TrainingSelection"/>); the other layouts hold every image.</summary>
    [<CompiledName("LoadIn")>]
    let loadIn (spec: string, format: DataFormat option, trainingSelection: (int[] -> int[]) option) : Dataset =
        loadWith (spec, format, None, { ImageFolder.defaultOptions with TrainingSelection = trainingSelection })

    /// <summary>Loads a dataset for its test split alone (see <see cref="M:Bake.Core.Data.Datasets.LoadIn"/>): an
    /// ImageFolder holds none of its training images and decodes none for statistics, so its Mean and Std are empty
    /// and the caller supplies its own (a checkpoint's, the training dataset's); the other layouts load as usual.</summary>
    [<CompiledName("LoadTestSplit")>]
    let loadTestSplit (spec: string, format: DataFormat option) : Dataset =
        loadWith (spec, format, None, { ImageFolder.defaultOptions with TrainingSelection = Some(fun _ -> [||]); TrainingStatistics = false })

    /// <summary>A readable summary: source, shape, classes with their counts per split, mean and std.</summary>
    [<CompiledName("Describe")>]
    let describe (dataset: Dataset) : string =
        let fmt (values: float[]) =
            values |> Array.map (fun v -> v.ToString("0.0000", Globalization.CultureInfo.InvariantCulture)) |> String.concat ", "
        let classes = dataset.Classes.Length
        let trainCounts = DatasetStats.classCounts classes dataset.Train
        let testCounts = DatasetStats.classCounts classes dataset.Test
        let shape = dataset.ImageShape |> Array.map string |> String.concat "×"
        let width = dataset.Classes |> Array.map String.length |> Array.fold max 5
        let lines =
            [ yield $"dataset   {dataset.Name}"
              yield $"source    {dataset.Source}"
              yield $"images    {shape} (C×H×W), uint8"
              yield $"train     {dataset.Train.Count} images"
              yield $"test      {dataset.Test.Count} images"
              yield $"classes   {classes}"
              yield $"mean      {fmt dataset.Mean} (per channel, train split, [0, 1] units)"
              yield $"std       {fmt dataset.Std}"
              yield ""
              yield $"""  {"label",5}  {"class".PadRight width}  {"train",7}  {"test",7}"""
              for c in 0 .. classes - 1 do
                  yield $"  {c,5}  {dataset.Classes[c].PadRight width}  {trainCounts[c],7}  {testCounts[c],7}"
              match dataset.Train with
              | :? ICoarseLabelled as coarse ->
                  let coarseTest = match dataset.Test with :? ICoarseLabelled as t -> t.CoarseLabels | _ -> [||]
                  yield ""
                  yield $"coarse classes {coarse.CoarseClasses.Length}"
                  let w = coarse.CoarseClasses |> Array.map String.length |> Array.fold max 5
                  for c in 0 .. coarse.CoarseClasses.Length - 1 do
                      let train = coarse.CoarseLabels |> Array.filter ((=) c) |> Array.length
                      let test = coarseTest |> Array.filter ((=) c) |> Array.length
                      yield $"  {c,5}  {coarse.CoarseClasses[c].PadRight w}  {train,7}  {test,7}"
              | _ -> () ]
        String.concat Environment.NewLine lines
