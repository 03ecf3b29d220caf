// Times one SGD training step (forward, cross-entropy, backward, update) of Bake's models on random data.
//
//     dotnet build src/Bake.Cli -c Release
//     dotnet fsi scripts/time-models.fsx [model] [batch] [channels] [size] [steps] [threads]
//
// Defaults: cnn, batch 128 of 1×28×28, 20 timed steps after 3 warm-up steps, 2 threads. Prints the median and
// mean step time, what that means for an epoch of 10,000 images, and the process CPU time per step (on an idle
// machine about threads × wall time; on a busy one the wall time also counts the waits for a core). Do not set OMP_WAIT_POLICY=PASSIVE here:
// it slows throughput (it is for tests sharing the CPU).
#load "Bake.fsx"

open System
open System.Diagnostics
open TorchSharp
open Bake.Core.Models

let args = fsi.CommandLineArgs |> Array.skip 1
let argument index fallback = if args.Length > index then args[index] else fallback
let name = argument 0 "cnn"
let batch, channels, size = int64 (argument 1 "128"), int (argument 2 "1"), int (argument 3 "28")
let steps, threads = int (argument 4 "20"), int (argument 5 "2")

torch.set_num_threads threads
torch.manual_seed 0L |> ignore
let model = Models.create (name, 10, channels, size)
model.train ()
let optimizer = torch.optim.SGD(model.parameters (), 0.01, momentum = 0.9)
let images = torch.randn (batch, int64 channels, int64 size, int64 size)
let labels = torch.randint (10L, [| batch |])

let step () =
    use scope = torch.NewDisposeScope()
    optimizer.zero_grad ()
    let logits = model.forward images
    let loss = torch.nn.functional.cross_entropy (logits, labels)
    loss.backward ()
    optimizer.step () |> ignore

for _ in 1..3 do
    step ()

// Process CPU time as well as wall time: on a shared machine the wall time includes waiting for the CPU.
let cpuBefore = Process.GetCurrentProcess().TotalProcessorTime
let times =
    [| for _ in 1..steps ->
           let watch = Stopwatch.StartNew()
           step ()
           watch.Elapsed.TotalMilliseconds |]
let cpuPerStep = (Process.GetCurrentProcess().TotalProcessorTime - cpuBefore).TotalMilliseconds / float steps

let median = (Array.sort times)[times.Length / 2]
printfn "%s" (Models.describe model)
printfn "%s, batch %d of %d×%d×%d, %d threads: median %.1f ms/step, mean %.1f ms/step over %d steps (%.0f images/s; 10,000 images ≈ %.1f s); CPU time %.1f ms/step"
    name batch channels size size threads median (Array.average times) steps (float batch * 1000.0 / median) (10000.0 / float batch * median / 1000.0) cpuPerStep
