// Where a model's forward pass spends its time, layer by layer (eval, no grad, channels-last, random images): the
// profile behind the per-step rows of docs/performance.md, to set beside `twin.py layers` with the same arguments.
//
//     dotnet build Bake.sln -c Release
//     dotnet fsi benchmarks/layer-times.fsx MODEL BATCH CHANNELS SIZE CLASSES [ITERATIONS]
//     /usr/bin/python3 benchmarks/twin.py layers --model MODEL --batch BATCH --channels CHANNELS --image-size SIZE --classes CLASSES
//
// Containers (the registry's Chain, PyTorch's Sequential) are opened down to their children, so the rows are the
// same layers on both sides: for `cnn` every conv, BN, ReLU and pool; for `resnet18` the stem's layers and each
// basic block. Each layer is timed on its own input (made once by running the layers before it), median of
// ITERATIONS (default 30) after 3 warm-up runs; "whole forward" is the model's forward pass as `bake time` times it.
#load "../scripts/Bake.fsx"

open System
open System.Diagnostics
open TorchSharp
open Bake.Core
open Bake.Core.Models

let args = fsi.CommandLineArgs |> Array.skip 1
if args.Length < 5 then
    eprintfn "usage: dotnet fsi benchmarks/layer-times.fsx MODEL BATCH CHANNELS SIZE CLASSES [ITERATIONS]"
    exit 2
let modelName, batch, channels, size, classes = args[0], int64 args[1], int64 args[2], int64 args[3], int args[4]
let iterations = if args.Length > 5 then int args[5] else 30

Runtime.keepFreedMemory ()
torch.manual_seed 0L |> ignore
let model = Models.create (modelName, classes, int channels, int size)
Classifier.useChannelsLast (model, true)
model.eval ()

/// The leaf layers in order: containers whose type is a Chain are opened; the head is timed separately.
let rec leaves (prefix: string) (m: torch.nn.Module) : (string * torch.nn.Module<torch.Tensor, torch.Tensor>) list =
    [ for name, child in m.named_children () do
          let path = if prefix = "" then name else $"{prefix}.{name}"
          if child.GetType().Name = "Chain" then yield! leaves path child
          else
              match child with
              | :? torch.nn.Module<torch.Tensor, torch.Tensor> as layer -> yield path, layer
              | _ -> () ]
let layers = leaves "" model |> List.filter (fun (name, _) -> name <> "fc" && name <> "classifier")

let median (values: float[]) = let s = Array.sort values in s[s.Length / 2]
let time (action: unit -> unit) =
    for _ in 1 .. 3 do action ()
    median (Array.init iterations (fun _ -> let clock = Stopwatch.StartNew() in action (); clock.Elapsed.TotalMilliseconds))

using (torch.no_grad ()) (fun _ ->
    use images = using (torch.randn (batch, channels, size, size)) MemoryFormat.channelsLast
    let mutable input = images.alias ()
    let rows = ResizeArray<string * float>()
    for name, layer in layers do
        // In-place layers (ReLU) are timed on a copy so the next layer's input is not changed by the repeats.
        let ms = time (fun () -> use copy = input.clone () in use output = layer.call copy in ())
        rows.Add(name, ms)
        let next = layer.call (input.clone ())
        input.Dispose()
        input <- next
    let headMs = time (fun () -> use maps = torch.nn.functional.adaptive_avg_pool2d (input, 1L) in use pooled = maps.flatten 1L in use logits = model.Head pooled in ())
    rows.Add("pool + head", headMs)
    let clone = time (fun () -> use copy = images.clone () in ())
    let whole = time (fun () -> use logits = model.forward images in ())
    printfn "bake layers: %s, batch %d of %d×%d×%d, %d classes, %d threads, median of %d (ms; each layer's row includes one clone of its input, %.2f ms for the image batch)"
        modelName batch channels size size classes (torch.get_num_threads ()) iterations clone
    for name, ms in rows do printfn "  %-22s %8.2f" name ms
    printfn "  %-22s %8.2f" "sum of rows" (rows |> Seq.sumBy snd)
    printfn "  %-22s %8.2f" "whole forward" whole
    input.Dispose())
