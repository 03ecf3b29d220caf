// BAKE soft targets for a random batch, from an F# script: `dotnet fsi scripts/soft-targets-demo.fsx`.
#load "Bake.fsx"

open TorchSharp
open Bake.Core

torch.manual_seed 0L |> ignore
let features = torch.randn (8L, 16L)
let logits = torch.randn (8L, 5L)
let targets = Propagation.softTargets (features, logits, BakeOptions.Default)
printfn "Q (8×5), rows sum to 1: %A" (targets.sum(1L).data<float32>().ToArray())
printfn "KD term: %.6f" (Losses.distillation(logits, targets, 4.0).item<float32> ())
