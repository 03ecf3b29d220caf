/// `bake info`: a model's layers, parameter count and feature size (pycls `--mode info`). Parsing and printing
/// only; the work is Bake.Core.Models.
module Bake.Cli.InfoCommand

open Argu
open Bake.Core.Models

[<CliPrefix(CliPrefix.DoubleDash)>]
type InfoArgs =
    | [<Mandatory; Unique>] Model of name: string
    | [<Unique>] Classes of count: int
    | [<Unique>] Channels of count: int
    | [<Unique>] Image_Size of pixels: int
    interface IArgParserTemplate with
        member this.Usage =
            match this with
            | Model _ -> "a model registry name: " + String.concat ", " Models.names + "."
            | Classes _ -> "number of classes K, the width of the logits (default 10)."
            | Channels _ -> "image channels: 1 for grayscale, 3 for RGB (default 3)."
            | Image_Size _ -> "the side of the square input images, checked against the model's minimum (default 32)."

/// What `bake info --help` adds below the options.
let example = "Examples:\n  bake info --model resnet18 --classes 1000 --image-size 224\n  bake info --model cnn --channels 1 --image-size 28"

/// Builds the model and prints its summary; returns the exit code.
let run (args: ParseResults<InfoArgs>) : int =
    let classes, channels, size = args.GetResult(Classes, 10), args.GetResult(Channels, 3), args.GetResult(Image_Size, 32)
    use model = Models.create (args.GetResult Model, classes, channels, size)
    printfn "%s" (Models.describe model)
    printfn "input: %d×%d×%d (channels × height × width)" channels size size
    0
