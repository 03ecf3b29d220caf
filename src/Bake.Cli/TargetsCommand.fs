/// `bake targets`: BAKE soft targets for features and logits in CSV or .npy files. Parsing only; the work is
/// Bake.Core.Interop.SoftTargetFiles.compute.
module Bake.Cli.TargetsCommand

open Argu
open Bake.Core
open Bake.Core.Interop

[<CliPrefix(CliPrefix.DoubleDash)>]
type TargetsArgs =
    | [<Mandatory; Unique>] Features of path: string
    | [<Mandatory; Unique>] Logits of path: string
    | [<Unique>] Omega of omega: float
    | [<Unique>] Temperature of tau: float
    | [<Unique>] Iterations of steps: int
    | [<Unique>] One_Step
    | [<Mandatory; Unique>] Out of path: string
    | [<Unique>] Batch of rows: int
    interface IArgParserTemplate with
        member this.Usage =
            match this with
            | Features _ -> "features F(x), one row per sample (.csv or .npy), e.g. penultimate-layer embeddings."
            | Logits _ -> "logits z, one row per sample (same order as the features), one column per class (.csv or .npy)."
            | Omega _ -> "ensembling weight ω in [0, 1) (default 0.5)."
            | Temperature _ -> "softmax temperature τ > 0 (default 4)."
            | Iterations _ -> "use N propagation steps of Eq. (7) instead of the closed form of Eq. (9)."
            | One_Step -> "use a single propagation step, Eq. (6) (same as --iterations 1)."
            | Out _ -> "where to write the soft targets Q, N×K (.csv or .npy; .npy keeps the logits' float32/float64)."
            | Batch _ -> "soft targets within consecutive batches of this many rows, as training computes them (default: all rows as one batch; memory grows with its square)."

/// What `bake targets --help` adds below the options.
let example =
    "All rows of the two files form one batch unless --batch cuts them: memory and time grow with the square of the\n\
     batch (about 5·N² numbers); a batch that would not fit in half the available memory is refused with the figure.\n\
     Example:\n  bake targets --features emb.npy --logits logits.npy --omega 0.5 --temperature 4 --out targets.npy"

/// Parses the options, computes and writes the targets; returns the exit code.
let run (args: ParseResults<TargetsArgs>) : int =
    let propagation =
        match args.TryGetResult Iterations, args.Contains One_Step with
        | Some _, true -> raise (UsageException "--iterations and --one-step exclude each other: give one of them, or neither for the closed form")
        | Some steps, false -> Steps steps
        | None, true -> OneStep
        | None, false -> ClosedForm
    let defaults = BakeOptions.Default
    let options =
        { defaults with
            Omega = args.GetResult(Omega, defaultValue = defaults.Omega)
            Temperature = args.GetResult(Temperature, defaultValue = defaults.Temperature)
            Propagation = propagation }
    let out = args.GetResult Out
    use targets =
        SoftTargetFiles.computeBatched (args.GetResult Features, args.GetResult Logits, options, out, args.TryGetResult Batch, SoftTargetFiles.defaultMemoryLimit ())
    printfn "wrote soft targets %s to %s" (Tensors.describe targets) out
    0
