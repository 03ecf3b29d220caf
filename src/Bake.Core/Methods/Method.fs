namespace Bake.Core

open System
open System.Collections.Generic
open TorchSharp
open Bake.Core.Models

/// <summary>How a method draws the batches of an epoch (<c>Sampling</c>).</summary>
[<RequireQualifiedAccess>]
type Sampler =
    /// <summary>Plain shuffled batches of N images, or the per-class sampler (N̂ = N / (M + 1) anchors, M same-class
    /// images each) when TRAIN.INTRA_IMGS = M &gt; 0; METHOD.EQUAL_STEPS_M applies to the shuffled ones.</summary>
    | Standard
    /// <summary>CS-KD's pairs: N / 2 anchors and one same-class partner each.</summary>
    | ClassPairs
    /// <summary>DLB's: N / 2 images repeated from the previous batch, N / 2 new ones.</summary>
    | RepeatLastHalf

/// <summary>The global batch of a data-parallel step, for methods that ensemble over it (BAKE with TRAIN.GLOBAL_KE):
/// this rank's batch is rows [Offset, Offset + N) of the concatenation of every rank's batch.</summary>
[<NoComparison; NoEquality>]
type GlobalBatch =
    { /// <summary>The rows of every rank's tensor, rank after rank: a fresh tensor without autograd history (a
      /// collective: every rank calls it the same number of times).</summary>
      Gather: torch.Tensor -> torch.Tensor
      /// <summary>This rank's first row in gathered tensors.</summary>
      Offset: int64 }

/// <summary>What a method's loss sees of one training batch. Every tensor belongs to the trainer's iteration scope:
/// a method reads them and never disposes them.</summary>
[<NoComparison; NoEquality>]
type MethodBatch =
    { Model: Classifier
      /// <summary>N×C×H×W images on the model's device (mixed when CutMix mixed this batch).</summary>
      Images: torch.Tensor
      /// <summary>int64 vector of N class indices.</summary>
      Labels: torch.Tensor
      /// <summary>N×K label probabilities when CutMix mixed this batch.</summary>
      MixedTargets: torch.Tensor option
      /// <summary>The images' indices in the training split, in batch order.</summary>
      Indices: int[]
      /// <summary>0-based epoch.</summary>
      Epoch: int
      /// <summary>Epochs of the run.</summary>
      Epochs: int
      /// <summary>The global batch this batch is a shard of, when the method should ensemble over it; None when the
      /// batch is the whole batch (one process, or TRAIN.GLOBAL_KE off).</summary>
      Global: GlobalBatch option }

/// <summary>A method's loss on one batch, and the logits (with their labels) that training accuracy is counted on.</summary>
[<NoComparison; NoEquality>]
type MethodStep = { Loss: Loss; Logits: torch.Tensor; Labels: torch.Tensor }

/// <summary>Named tensors a method carries from one iteration to the next (DLB: the last batch's predictions) or from
/// epoch to epoch (PS-KD: every training image's last prediction). The trainer owns it, disposes it with the run and
/// saves it in every checkpoint (<c>method_state.safetensors</c>), so a resumed run continues bit for bit.</summary>
[<Sealed; AllowNullLiteral>]
type CarriedState() =
    let tensors = Dictionary<string, torch.Tensor>()

    /// <summary>The tensor under a name, if any. The state keeps owning it.</summary>
    member _.TryGet(name: string) : torch.Tensor option =
        match tensors.TryGetValue name with
        | true, t -> Some t
        | _ -> None

    /// <summary>Stores a tensor under a name, taking it out of any dispose scope (the state owns it from now on) and
    /// disposing the tensor it replaces.</summary>
    member _.Set(name: string, tensor: torch.Tensor) : unit =
        match tensors.TryGetValue name with
        | true, old when not (obj.ReferenceEquals(old, tensor)) -> old.Dispose()
        | _ -> ()
        tensors[name] <- tensor.DetachFromDisposeScope()

    /// <summary>Every tensor, by name (for checkpoints).</summary>
    member _.Tensors: IReadOnlyDictionary<string, torch.Tensor> = tensors

    interface IDisposable with
        member _.Dispose() =
            for t in tensors.Values do t.Dispose()
            tensors.Clear()

/// <summary>A method configured from a config: its options, its carried state's initial value and its loss.</summary>
[<NoComparison; NoEquality>]
type ConfiguredMethod =
    { Name: string
      Sampler: Sampler
      /// <summary>The options in words, for dry runs and the start line ("τ = 4, ω = 0.5, λ = 1, closed form").</summary>
      Options: string
      /// <summary>Fills the carried state before the first iteration of a fresh run, from the training labels and the
      /// class count (nothing for methods that carry nothing).</summary>
      Initialise: CarriedState -> int[] -> int -> unit
      /// <summary>The loss of one batch; may read and update the carried state.</summary>
      Step: CarriedState -> MethodBatch -> MethodStep }

/// <summary>One entry of the method table (pycls's registries, timm's loss factory): everything Bake knows about a
/// training method. Adding a method is one entry, its loss in <c>Losses</c>, and tests.</summary>
[<NoComparison; NoEquality>]
type MethodSpec =
    { /// <summary>The name in METHOD.NAME, logs and reports.</summary>
      Name: string
      /// <summary>One line for help texts.</summary>
      Summary: string
      /// <summary>The method's own configuration keys, with the published defaults.</summary>
      Keys: ConfigKey list
      Sampler: Sampler
      /// <summary>Whether it trains with batch-level CutMix (TRAIN.IS_CUTMIX).</summary>
      CutMix: bool
      /// <summary>Reads and validates its options: the configured method, or every problem (naming the keys).</summary>
      Configure: Config -> Result<ConfiguredMethod, string list> }

/// <summary>Helpers the method entries share.</summary>
[<RequireQualifiedAccess>]
module MethodSpec =

    /// <summary>Turns a validation result of option records into one naming the config keys: <paramref name="keys"/>
    /// maps the option records' field names (as Validate reports them) to keys.</summary>
    let validated (keys: (string * string) list) (result: Result<'T, string list>) : Result<'T, string list> =
        let rename (problem: string) =
            keys
            |> List.tryFind (fun (field, _) -> problem.StartsWith(field + " ", StringComparison.Ordinal))
            |> Option.map (fun (field, key) -> key + problem.Substring field.Length)
            |> Option.defaultValue problem
        result |> Result.mapError (List.map rename)

    /// <summary>A configured method with no carried state.</summary>
    let stateless name sampler options (step: MethodBatch -> MethodStep) : ConfiguredMethod =
        { Name = name; Sampler = sampler; Options = options; Initialise = (fun _ _ _ -> ()); Step = (fun _ batch -> step batch) }

    /// <summary>One forward pass and the loss of its logits with the batch's labels (every labels-only loss).</summary>
    let onLogits (loss: torch.Tensor -> torch.Tensor -> Loss) (batch: MethodBatch) : MethodStep =
        let logits = batch.Model.forward batch.Images
        { Loss = loss logits batch.Labels; Logits = logits; Labels = batch.Labels }
