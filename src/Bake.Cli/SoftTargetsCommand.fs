/// `bake soft-targets`: the paper's Figure 4 for one batch of a trained run. Parsing and printing only; the work is
/// Bake.Core.Reporting.SoftTargetFigure.
module Bake.Cli.SoftTargetsCommand

open Argu
open Bake.Core
open Bake.Core.Reporting

[<CliPrefix(CliPrefix.DoubleDash)>]
type SoftTargetsArgs =
    | [<Mandatory; Unique>] Checkpoint of path: string
    | [<Unique>] Dataset of spec: string
    | [<Unique>] Count of images: int
    | [<Unique>] Seed of seed: int
    | [<Mandatory; Unique>] Out of file: string
    interface IArgParserTemplate with
        member this.Usage =
            match this with
            | Checkpoint _ -> "a checkpoint folder or a run directory (its last checkpoint: the final model)."
            | Dataset _ -> "the dataset to sample the batch from (default: the run's TRAIN.DATASET)."
            | Count _ -> "how many images of the batch to draw (default 8)."
            | Seed _ -> "seed of the batch sampler (default 1)."
            | Out _ -> "the PNG file to write."

/// What `bake soft-targets --help` adds below the options.
let example =
    "One BAKE batch (anchors × (M + 1) images, M, ω and τ from the run's config.yaml) goes through the model in eval\n\
     mode; every image of the batch takes part in the ensemble, the first --count are drawn.\n\
     Example:\n  bake soft-targets --checkpoint runs/bake-default --count 8 --out soft-targets.png"

/// Draws the figure and prints what it shows; returns the exit code.
let run (args: ParseResults<SoftTargetsArgs>) : int =
    if Plots.textFont().IsNone then
        eprintfn "bake: warning: no font found, the figure will have no text (on Debian: apt-get install fonts-dejavu-core)"
    let out = args.GetResult Out
    let sample = SoftTargetFigure.render (args.GetResult Checkpoint, args.TryGetResult Dataset, args.GetResult(Count, 8), args.GetResult(Seed, 1), out)
    let o = sample.Options
    printfn "wrote %s: soft targets of %d images of a BAKE batch of %d from %s (M = %d, ω = %g, τ = %g, from %s)"
        out sample.Panels.Length sample.BatchSize sample.Dataset sample.IntraImages o.Omega o.Temperature sample.SettingsSource
    let width = sample.Panels |> List.fold (fun w p -> max w p.LabelName.Length) 5
    for panel in sample.Panels do
        let top = panel.Target |> Array.map (fun s -> sprintf "%s %.2f" s.ClassName s.Probability) |> String.concat ", "
        printfn "  GT %s → %s" (panel.LabelName.PadRight width) top
    0
