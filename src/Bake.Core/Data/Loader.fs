namespace Bake.Core.Data

open System
open System.Threading
open System.Threading.Tasks
open TorchSharp
open Bake.Core

/// <summary>One mini-batch ready for the network. The consumer owns it and disposes it after the step.</summary>
[<NoComparison; NoEquality>]
type Batch =
    {
        /// <summary>float32 N×C×H×W, augmented and normalised.</summary>
        Images: torch.Tensor
        /// <summary>int64 N class indices.</summary>
        Labels: torch.Tensor
        /// <summary>The dataset indices of the images, in batch order.</summary>
        Indices: int[]
    }
    interface IDisposable with
        member this.Dispose() =
            this.Images.Dispose()
            this.Labels.Dispose()

/// <summary>Turns batches of indices into tensors: decoding (<see cref="M:Bake.Core.Data.ISplit.Load(System.Int32[])"/>)
/// and augmentation run on background workers into a bounded prefetch queue, so the training step does not wait
/// when the machine can keep up.</summary>
[<RequireQualifiedAccess>]
module Loader =

    /// <summary>Loads and transforms one batch. Its randomness is seeded by (seed, epoch, batch index) only, so the
    /// result does not depend on which worker ran it or when.</summary>
    [<CompiledName("MakeBatch")>]
    let makeBatch (split: ISplit, indices: int[], transform: TransformSpec, seed: int, epoch: int, batchIndex: int) : Batch =
        let random = SeededRandom.Derive(int64 seed, int64 epoch, int64 batchIndex, 0x10ADL)
        use scope = torch.NewDisposeScope()
        let raw = split.Load indices
        let images = ByteTransforms.apply transform random raw
        let labels = torch.tensor (indices |> Array.map (fun i -> int64 split.Labels[i]), dtype = torch.int64)
        { Images = images.MoveToOuterDisposeScope(); Labels = labels.MoveToOuterDisposeScope(); Indices = indices }

    /// <summary>Batches of consecutive indices 0 .. count − 1 in order (evaluation), the last possibly partial.</summary>
    [<CompiledName("Sequential")>]
    let sequential (count: int, batchSize: int) : int[][] =
        if batchSize < 1 then invalidArg "batchSize" $"batch size must be >= 1, got {batchSize}"
        Array.chunkBySize batchSize (Array.init count id)

    let private rethrow (e: exn) : 'a =
        let inner =
            match e with
            | :? AggregateException as a when a.InnerExceptions.Count = 1 -> a.InnerExceptions[0]
            | e -> e
        Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(inner).Throw()
        Unchecked.defaultof<'a>

    /// <summary>The batches of one epoch, in the given order.</summary>
    /// <param name="split">Where the images come from.</param>
    /// <param name="batches">The indices of each batch (from <see cref="T:Bake.Core.Sampling"/>).</param>
    /// <param name="transform">The augmentation and normalisation.</param>
    /// <param name="seed">The run's seed.</param>
    /// <param name="epoch">The epoch; batch b is seeded by (seed, epoch, b).</param>
    /// <param name="workers">Background workers; 0 loads each batch synchronously when it is requested. With
    /// k ≥ 1 workers, up to 2k batches (at least 2) are prepared ahead of the consumer.</param>
    /// <returns>A lazy sequence; enumerate it once. Each batch belongs to the consumer, who disposes it; batches
    /// prepared but not consumed (when the enumeration stops early) are disposed by the loader. A failure while
    /// loading a batch (e.g. an undecodable image) is rethrown, unchanged, when that batch is requested.</returns>
    [<CompiledName("Epoch")>]
    let epoch (split: ISplit, batches: int[][], transform: TransformSpec, seed: int, epoch: int, workers: int) : seq<Batch> =
        if isNull (box split) then nullArg "split"
        if isNull batches then nullArg "batches"
        if workers < 0 then invalidArg "workers" $"workers must be >= 0, got {workers}"
        let make b = makeBatch (split, batches[b], transform, seed, epoch, b)
        if workers = 0 then
            seq {
                for b in 0 .. batches.Length - 1 -> make b
            }
        else
            seq {
                let count = batches.Length
                let depth = max 2 (2 * workers)
                // A worker takes a slot before claiming the next batch; the consumer frees it after taking a batch, so at
                // most `depth` batches wait in memory.
                use slots = new SemaphoreSlim(depth)
                use stop = new CancellationTokenSource()
                let results = Array.init count (fun _ -> TaskCompletionSource<Batch>(TaskCreationOptions.RunContinuationsAsynchronously))
                let next = ref -1
                let work () =
                    try
                        let mutable running = true
                        while running do
                            slots.Wait stop.Token
                            let b = Interlocked.Increment &next.contents
                            if b >= count then
                                running <- false
                            else
                                try
                                    results[b].SetResult(make b)
                                with e ->
                                    results[b].SetException e
                    with :? OperationCanceledException -> ()
                let threads =
                    Array.init (min workers (max count 1)) (fun i ->
                        let thread = Thread(work, IsBackground = true, Name = $"bake-loader-{i}")
                        thread.Start()
                        thread)
                let consumed = ref 0
                try
                    for b in 0 .. count - 1 do
                        let batch =
                            try
                                results[b].Task.Result
                            with e ->
                                rethrow e
                        consumed.Value <- b + 1
                        slots.Release() |> ignore
                        yield batch
                finally
                    stop.Cancel()
                    for thread in threads do
                        thread.Join()
                    // Batches prepared ahead but never handed out.
                    for b in consumed.Value .. count - 1 do
                        let task = results[b].Task
                        if task.IsCompletedSuccessfully then (task.Result :> IDisposable).Dispose()
            }
