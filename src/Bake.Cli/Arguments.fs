/// The `bake` command line: verbs and their options (Argu). Parsing only; the work is done by Bake.Core.
module Bake.Cli.Arguments

open Argu

[<CliPrefix(CliPrefix.DoubleDash)>]
type VersionArgs =
    | [<Hidden>] Placeholder
    interface IArgParserTemplate with
        member _.Usage = ""

type BakeArgs =
    | [<CliPrefix(CliPrefix.None); SubCommand>] Version of ParseResults<VersionArgs>
    | [<CliPrefix(CliPrefix.None); SubCommand>] Targets of ParseResults<Bake.Cli.TargetsCommand.TargetsArgs>
    | [<CliPrefix(CliPrefix.None); SubCommand>] Plot of ParseResults<Bake.Cli.PlotCommand.PlotArgs>
    interface IArgParserTemplate with
        member this.Usage =
            match this with
            | Version _ -> "print the versions of Bake, TorchSharp and libtorch, and check that libtorch loads."
            | Targets _ -> "BAKE soft targets for features and logits from CSV or .npy files (any framework)."
            | Plot _ -> "PNG figures (loss, learning rate, top-1 accuracy) of run directories, and a comparison of runs."
