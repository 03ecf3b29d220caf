module Bake.Core.Tests.LoaderTests

open System
open System.Threading
open Expecto
open TorchSharp
open Bake.Core
open Bake.Core.Data
open Bake.Core.Tests.TestUtil
open Bake.Core.Tests.DataTestUtil

/// A split of n random 3×8×8 images; Load sleeps a little (like decoding) and fails for the index `failAt`.
type SlowSplit(n: int, failAt: int option) =
    let memory = new InMemorySplit(TransformsTests.images n 3 8 8 11, Array.init n (fun i -> i % 4))
    let split = memory :> ISplit
    member val Loads = ref 0
    interface ISplit with
        member _.Count = n
        member _.Labels = split.Labels
        member this.Load indices =
            Interlocked.Increment &this.Loads.contents |> ignore
            Thread.Sleep 2
            match failAt with
            | Some bad when Array.contains bad indices -> raise (BakeException($"image {bad}: cannot decode"))
            | _ -> split.Load indices

let spec =
    { Transforms.none with
        RandomCrop = Some { Size = 8; Padding = 2 }
        HorizontalFlip = true
        Normalize = Some([| 0.5; 0.5; 0.5 |], [| 0.2; 0.2; 0.2 |]) }

let collect (batches: seq<Batch>) =
    [ for batch in batches do
          use batch = batch
          yield batch.Indices, toArray batch.Images, batch.Labels.data<int64>().ToArray() ]

[<Tests>]
let tests =
    testList "Data.Loader" [
        test "0, 1 and 3 workers give identical batches in the sampler's order" {
            let split = SlowSplit(40, None)
            let batches = Sampling.bakeBatches ((split :> ISplit).Labels, 4, 1, 3, 0)
            let sync = collect (Loader.epoch (split, batches, spec, 3, 0, 0))
            for workers in [ 1; 3 ] do
                let threaded = collect (Loader.epoch (split, batches, spec, 3, 0, workers))
                Expect.equal threaded.Length batches.Length "one batch per index array"
                List.iteri2
                    (fun b (i1, x1, l1) (i2, x2, l2) ->
                        Expect.equal i2 i1 $"batch {b} indices"
                        Expect.equal l2 l1 $"batch {b} labels"
                        Expect.equal x2 x1 $"batch {b} pixels")
                    sync threaded
            List.iteri
                (fun b (indices: int[], _, labels: int64[]) ->
                    Expect.equal indices batches[b] "sampler order"
                    Expect.equal labels (indices |> Array.map (fun i -> int64 (i % 4))) "labels of the indices")
                sync
        }

        test "another epoch or seed augments differently" {
            let split = SlowSplit(8, None)
            let batches = [| [| 0 .. 7 |] |]
            let pixels seed epoch = collect (Loader.epoch (split, batches, spec, seed, epoch, 0)) |> List.map (fun (_, x, _) -> x)
            Expect.notEqual (pixels 1 0) (pixels 1 1) "epoch"
            Expect.notEqual (pixels 1 0) (pixels 2 0) "seed"
            Expect.equal (pixels 1 0) (pixels 1 0) "same"
        }

        test "prefetching is bounded and stopping early loads no further" {
            let split = SlowSplit(400, None)
            let batches = Array.chunkBySize 4 [| 0 .. 399 |]
            for batch in Loader.epoch (split, batches, spec, 0, 0, 2) |> Seq.truncate 3 do
                (batch :> IDisposable).Dispose()
            // 3 consumed, at most 2 × workers prepared ahead.
            Expect.isLessThanOrEqual split.Loads.Value (3 + 4 + 1) $"{split.Loads.Value} loads"
        }

        test "a failing batch rethrows the loader's error, unchanged, when it is reached" {
            let split = SlowSplit(20, Some 13)
            let batches = Array.chunkBySize 5 [| 0 .. 19 |]
            for workers in [ 0; 2 ] do
                let seen = ResizeArray()
                let e =
                    throwsWith<BakeException> (fun () ->
                        for batch in Loader.epoch (split, batches, spec, 0, 0, workers) do
                            use batch = batch
                            seen.Add batch.Indices[0])
                Expect.stringContains e.Message "image 13" "the split's message"
                Expect.equal (List.ofSeq seen) [ 0; 5 ] $"batches before the failing one ({workers} workers)"
        }

        test "sequential batches cover 0..n-1 in order" {
            Expect.equal (Loader.sequential (7, 3)) [| [| 0; 1; 2 |]; [| 3; 4; 5 |]; [| 6 |] |] "chunks"
        }

        test "the embedded dataset through the training preset" {
            let data = Datasets.embedded ()
            let batches = Sampling.bakeBatches (data.Train.Labels, 16, 1, 0, 0) |> Array.take 3
            let transform = Transforms.forTraining data
            Expect.equal transform.RandomCrop (Some { Size = 28; Padding = 4 }) "random crop 28, padding 4"
            for batch in Loader.epoch (data.Train, batches, transform, 0, 0, 2) do
                use batch = batch
                Expect.sequenceEqual batch.Images.shape [| 32L; 1L; 28L; 28L |] "32 images of 1×28×28"
                Expect.equal batch.Images.dtype torch.float32 "float32"
                let labels = batch.Labels.data<int64>().ToArray()
                for g in 0 .. 15 do
                    Expect.equal labels[16 + g] labels[g] "positive of anchor g has its class"
        }
    ]
