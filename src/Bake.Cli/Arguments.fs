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
    | [<CliPrefix(CliPrefix.None); SubCommand>] Predict of ParseResults<Bake.Cli.PredictCommand.PredictArgs>
    | [<CliPrefix(CliPrefix.None); SubCommand>] Info of ParseResults<Bake.Cli.InfoCommand.InfoArgs>
    | [<CliPrefix(CliPrefix.None); SubCommand>] Time of ParseResults<Bake.Cli.TimeCommand.TimeArgs>
    | [<CliPrefix(CliPrefix.None); SubCommand>] Export of ParseResults<Bake.Cli.ExportCommand.ExportArgs>
    | [<CliPrefix(CliPrefix.None); SubCommand>] Soft_Targets of ParseResults<Bake.Cli.SoftTargetsCommand.SoftTargetsArgs>
    interface IArgParserTemplate with
        member this.Usage =
            match this with
            | Train _ ->
                "train a model (default: BAKE, small CNN, embedded Fashion-MNIST subset). Examples: bake train; "
                + "bake train --config configs/fashion-mnist/BAKE-cnn.yaml --set TRAIN.OMEGA=0.3 --out runs/omega03; bake train --out runs/x --resume"
            | Eval _ -> "evaluate a checkpoint: top-1/top-5, NLL, ECE, per class. Example: bake eval --checkpoint runs/bake-default"
            | Version _ -> "print the versions of Bake, TorchSharp and libtorch, and check that libtorch loads."
            | Data _ -> "datasets: `bake data info <name|path>` shows what one holds, `bake data fetch <name>` downloads one, `bake data downsample --from tiny-imagenet-200 --to tinyimagenet32` makes the 32×32 TinyImageNet."
            | Targets _ -> "BAKE soft targets for features and logits from CSV or .npy files (any framework)."
            | Plot _ -> "PNG figures (loss, learning rate, top-1 accuracy) of run directories, and a comparison of runs."
            | Predict _ -> "classify image files with a checkpoint: the top-k classes and their probabilities."
            | Info _ -> "a model's layers, parameter count and feature size."
            | Time _ -> "median forward and training-step times of a model, and BAKE's overhead per step."
            | Export _ -> "a checkpoint's weights as .safetensors or a PyTorch .pth state dict, or its graph as ONNX."
            | Soft_Targets _ -> "the paper's Figure 4 for one batch: images, labels and the top-3 classes of their BAKE soft targets (PNG)."
