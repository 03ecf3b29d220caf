/// `bake time`: median step times of a model and BAKE's overhead per training step (pycls `--mode time`). Parsing
/// and printing only; the work is Bake.Core.Timing.
module Bake.Cli.TimeCommand

open Argu
open Bake.Core

[<CliPrefix(CliPrefix.DoubleDash)>]
type TimeArgs =
    | [<Mandatory; Unique>] Model of name: string
    | [<Mandatory; Unique>] Batch of images: int
    | [<Unique>] Method of method: string
    | [<Unique>] Image_Size of pixels: int
    | [<Unique>] Channels of count: int
    | [<Unique>] Classes of count: int
    | [<Unique>] Iterations of count: int
    | [<Unique>] Channels_Last of on: bool
    interface IArgParserTemplate with
        member this.Usage =
            match this with
            | Model _ -> "a model registry name (see bake info)."
            | Batch _ -> "images per batch N."
            | Method _ -> "bake (default: also time the BAKE step and its soft targets + KD) or vanilla."
            | Image_Size _ -> "the side of the square random images (default 32)."
            | Channels _ -> "image channels (default 3)."
            | Classes _ -> "number of classes K (default 10)."
            | Iterations _ -> "timed iterations per measurement; the median is printed (default 20, after 3 warm-up)."
            | Channels_Last _ -> "true: channels-last images, weights and buffers (default, as TRAIN.CHANNELS_LAST); false: the standard layout."

/// What `bake time --help` adds below the options.
let example =
    "Times are wall-clock medians on the CPU with libtorch's current thread count; the optimizer update is not timed.\n\
     Example:\n  bake time --model cnn --batch 128 --channels 1 --image-size 28"

/// Measures and prints; returns the exit code.
let run (args: ParseResults<TimeArgs>) : int =
    let defaults = TimingOptions.Default(args.GetResult Model)
    let bake =
        match args.GetResult(Method, "bake").Trim().ToLowerInvariant() with
        | "bake" -> Some BakeOptions.Default
        | "vanilla" -> None
        | other -> raise (UsageException $"--method {other}: expected bake or vanilla")
    let options =
        { defaults with
            Batch = args.GetResult Batch
            ImageSize = args.GetResult(Image_Size, defaults.ImageSize)
            Channels = args.GetResult(Channels, defaults.Channels)
            Classes = args.GetResult(Classes, defaults.Classes)
            Iterations = args.GetResult(Iterations, defaults.Iterations)
            Bake = bake
            ChannelsLast = args.GetResult(Channels_Last, defaults.ChannelsLast) }
    let r = Timing.measure options
    printfn "bake time: %s (%s parameters), batch %d of %d×%d×%d, %d classes, %s; median of %d iterations after %d warm-up, %d threads"
        options.Model (r.Parameters.ToString("N0", System.Globalization.CultureInfo.InvariantCulture)) options.Batch options.Channels
        options.ImageSize options.ImageSize options.Classes (if options.ChannelsLast then "channels-last" else "standard layout")
        options.Iterations options.Warmup r.Threads
    let line (what: string) (ms: float) = printfn "  %-34s %10.2f ms" what ms
    line "forward (eval, no grad)" r.ForwardMs
    line "forward + backward (CE)" r.TrainStepMs
    match r.BakeStepMs, r.SoftTargetsKdMs, r.OverheadPercent with
    | Some step, Some extra, Some overhead ->
        line "forward + backward (BAKE)" step
        printfn "  %-34s %10.2f ms   %.1f%% of a CE training step" "BAKE soft targets + KD (+ backward)" extra overhead
    | _ -> ()
    0
