/// `bake plot`: PNG figures of training runs from their summary.csv. Parsing only; the work is
/// Bake.Core.Plots.plotRuns.
module Bake.Cli.PlotCommand

open Argu
open Bake.Core
open Bake.Core.Reporting

type PlotArgs =
    | [<MainCommand; Mandatory>] Runs of run_dir: string list
    | [<Unique>] Out of path: string
    interface IArgParserTemplate with
        member this.Usage =
            match this with
            | Runs _ -> "run directories holding a summary.csv; each gets loss.png and accuracy.png."
            | Out _ -> "comparison figure of the runs' top-1 accuracy (.png; default compare.png when several runs are given)."

/// What `bake plot --help` adds below the options.
let example =
    "Examples:\n  bake plot runs/bake-cifar100             writes runs/bake-cifar100/loss.png and accuracy.png\n\
     \x20 bake plot runs/ce runs/bake --out ce-vs-bake.png"

/// Writes the figures; returns the exit code.
let run (args: ParseResults<PlotArgs>) : int =
    if Plots.textFont().IsNone then
        eprintfn "bake: warning: no font found, the figures will have no text (on Debian: apt-get install fonts-dejavu-core)"
    for path in Plots.plotRuns (args.GetResult Runs, args.TryGetResult Out) do
        printfn "wrote %s" path
    0
