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
