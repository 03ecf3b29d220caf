/// `bake export`: a checkpoint's weights as safetensors or a PyTorch state dict, or its graph as ONNX. Parsing and printing only; the work
/// is Bake.Core.Checkpoints.export.
module Bake.Cli.ExportCommand

open Argu
open Bake.Core

[<CliPrefix(CliPrefix.DoubleDash)>]
type ExportArgs =
    | [<Mandatory; Unique>] Checkpoint of path: string
    | [<Mandatory; Unique>] Format of format: string
    | [<Unique>] Out of file: string
    | Features
    interface IArgParserTemplate with
        member this.Usage =
            match this with
            | Checkpoint _ -> "a checkpoint folder or a run directory (its last checkpoint: the final model)."
            | Format _ -> "safetensors, pth (a torch.save state dict that PyTorch's model.load_state_dict accepts), or onnx (the eval-mode graph for ONNX Runtime)."
            | Out _ -> "the file to write (default: <model>-<checkpoint>.<format> in the current directory)."
            | Features -> "onnx only: also output 'features', the pooled penultimate features (N×D), after 'logits'."

/// What `bake export --help` adds below the options.
let example =
    "Parameter names are torchvision's (or the official small-scale code's), so PyTorch loads the file directly.\n\
     An ONNX file (opset 17) takes 'images' N×C×H×W float32 normalised as in evaluation and gives 'logits'; its\n\
     metadata holds the class names, the input shape, mean and std (bake.* keys).\n\
     Example:\n  bake export --checkpoint runs/bake-default --format pth --out cnn.pth\n  bake export --checkpoint runs/bake-default --format onnx --out cnn.onnx"

/// Writes the file; returns the exit code.
let run (args: ParseResults<ExportArgs>) : int =
    let format = args.GetResult Format
    let file, state = Checkpoints.exportWith (args.GetResult Checkpoint, format, args.TryGetResult Out, args.Contains Features)
    let what = if format.Trim().ToLowerInvariant() = "onnx" then "ONNX model" else "weights"
    printfn "wrote %s: %s %s, %d classes in label order: %s" file state.Model what state.Classes.Length (String.concat ", " state.Classes)
    0
