/// The `bake` command line: verbs and their options (Argu). Parsing only; the work is done by Bake.Core.
module Bake.Cli.Arguments

open Argu
open Bake.Cli.TrainCommand

[<CliPrefix(CliPrefix.DoubleDash)>]
type VersionArgs =
    | [<Hidden>] Placeholder
    interface IArgParserTemplate with
        member _.Usage = ""

type BakeArgs =
    | [<CliPrefix(CliPrefix.None); SubCommand>] Train of ParseResults<TrainArgs>
    | [<CliPrefix(CliPrefix.None); SubCommand>] Eval of ParseResults<EvalArgs>
    | [<CliPrefix(CliPrefix.None); SubCommand>] Version of ParseResults<VersionArgs>
    | [<CliPrefix(CliPrefix.None); SubCommand>] Data of ParseResults<DataCommand.DataArgs>
    | [<CliPrefix(CliPrefix.None); SubCommand>] Targets of ParseResults<Bake.Cli.TargetsCommand.TargetsArgs>
    | [<CliPrefix(CliPrefix.None); SubCommand>] Plot of ParseResults<Bake.Cli.PlotCommand.PlotArgs>
    interface IArgParserTemplate with
        member this.Usage =
            match this with
            | Train _ ->
                "train a model (default: BAKE, small CNN, embedded Fashion-MNIST subset). Examples: bake train; "
                + "bake train --config configs/fashion-mnist/BAKE-cnn.yaml --set TRAIN.OMEGA=0.3 --out runs/omega03; bake train --out runs/x --resume"
            | Eval _ -> "evaluate a checkpoint: top-1/top-5, NLL, ECE, per class. Example: bake eval --checkpoint runs/bake-default"
            | Version _ -> "print the versions of Bake, TorchSharp and libtorch, and check that libtorch loads."
            | Data _ -> "datasets: `bake data info <name|path>` shows what one holds, `bake data fetch <name>` downloads one."
            | Targets _ -> "BAKE soft targets for features and logits from CSV or .npy files (any framework)."
            | Plot _ -> "PNG figures (loss, learning rate, top-1 accuracy) of run directories, and a comparison of runs."
