/// `bake predict`: classify image files with a checkpoint. Parsing and printing only; the work is
/// Bake.Core.Prediction.
module Bake.Cli.PredictCommand

open Argu
open Bake.Core

[<CliPrefix(CliPrefix.DoubleDash)>]
type PredictArgs =
    | [<Mandatory; Unique>] Checkpoint of path: string
    | [<Unique>] Top of k: int
    | [<MainCommand; Mandatory>] Images of image: string list
    interface IArgParserTemplate with
        member this.Usage =
            match this with
            | Checkpoint _ -> "a checkpoint folder or a run directory (its last checkpoint: the final model)."
            | Top _ -> "how many classes to print per image, most probable first (default 5)."
            | Images _ -> "image files (JPEG or PNG); converted to the checkpoint's channels and size as in evaluation."

/// What `bake predict --help` adds below the options.
let example =
    "Example:\n  bake predict --checkpoint runs/bake-default --top 3 shirt.png boot.jpg"

/// Classifies the images and prints, per image, the top-k classes with their probabilities; returns the exit code.
let run (args: ParseResults<PredictArgs>) : int =
    let k = args.GetResult(Top, defaultValue = 5)
    if k < 1 then raise (UsageException $"--top {k}: expected at least 1 class per image")
    let images = args.GetResult Images
    use predictor = Prediction.load (args.GetResult Checkpoint)
    let predictions = Prediction.predictFiles (predictor, images, k)
    let width = predictor.Classes |> Array.fold (fun w name -> max w name.Length) 5
    for image, scores in List.zip images (List.ofArray predictions) do
        printfn "%s" image
        scores |> Array.iteri (fun rank score -> printfn "  %d. %s  %6.2f%%" (rank + 1) (score.ClassName.PadRight width) (100.0 * score.Probability))
    0
