/// `bake data info` and `bake data fetch`: what a dataset holds, and downloading the full public datasets.
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

[<RequireSubcommand>]
type DataArgs =
    | [<CliPrefix(CliPrefix.None); SubCommand>] Info of ParseResults<InfoArgs>
    | [<CliPrefix(CliPrefix.None); SubCommand>] Fetch of ParseResults<FetchArgs>
    interface IArgParserTemplate with
        member this.Usage =
            match this with
            | Info _ -> "print what a dataset holds: classes, counts per class and split, image shape, mean and std."
            | Fetch _ -> "download a full public dataset into the cache, verify its hashes, extract it (resumable)."

let private positive (name: string) (value: int) =
    if value < 1 then raise (UsageException($"{name} must be >= 1, got {value}"))
    value

/// `bake data info`: prints the summary of a dataset to `out`.
let info (args: ParseResults<InfoArgs>) (out: TextWriter) : int =
    let imageOptions =
        { ImageFolder.defaultOptions with
            ImageSize = args.TryGetResult InfoArgs.Image_Size |> Option.map (positive "--image-size")
            SkipUndecodable = args.Contains InfoArgs.Skip_Undecodable }
    let format = args.TryGetResult InfoArgs.Format |> Option.map DataFormat.Parse
    let dataset = Datasets.loadWith (args.GetResult InfoArgs.Dataset, format, args.TryGetResult InfoArgs.Cache, imageOptions)
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

/// Runs a `bake data` sub-verb. Usage mistakes raise UsageException (exit 2), failures BakeException (exit 1).
let run (args: ParseResults<DataArgs>) : int =
    match args.GetSubCommand() with
    | Info infoArgs -> info infoArgs Console.Out
    | Fetch fetchArgs -> fetch fetchArgs Console.Out
