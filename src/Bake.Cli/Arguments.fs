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
    | [<CliPrefix(CliPrefix.None); SubCommand>] Data of ParseResults<DataCommand.DataArgs>
    interface IArgParserTemplate with
        member this.Usage =
            match this with
            | Version _ -> "print the versions of Bake, TorchSharp and libtorch, and check that libtorch loads."
            | Data _ -> "datasets: `bake data info <name|path>` shows what one holds, `bake data fetch <name>` downloads one."
