/// `bake export`: a checkpoint's weights as safetensors or a PyTorch state dict. Parsing and printing only; the work
/// is Bake.Core.Checkpoints.export.
module Bake.Cli.ExportCommand

open Argu
open Bake.Core

[<CliPrefix(CliPrefix.DoubleDash)>]
type ExportArgs =
    | [<Mandatory; Unique>] Checkpoint of path: string
    | [<Mandatory; Unique>] Format of format: string
    | [<Unique>] Out of file: string
    interface IArgParserTemplate with
        member this.Usage =
            match this with
            | Checkpoint _ -> "a checkpoint folder or a run directory (its last checkpoint: the final model)."
            | Format _ -> "safetensors, or pth (a torch.save state dict that PyTorch's model.load_state_dict accepts)."
            | Out _ -> "the file to write (default: <model>-<checkpoint>.<format> in the current directory)."

/// What `bake export --help` adds below the options.
let example =
    "Parameter names are torchvision's (or the official small-scale code's), so PyTorch loads the file directly.\n\
     Example:\n  bake export --checkpoint runs/bake-default --format pth --out cnn.pth"

/// Writes the file; returns the exit code.
let run (args: ParseResults<ExportArgs>) : int =
    let file, state = Checkpoints.export (args.GetResult Checkpoint, args.GetResult Format, args.TryGetResult Out)
    printfn "wrote %s: %s weights, %d classes in label order: %s" file state.Model state.Classes.Length (String.concat ", " state.Classes)
    0
