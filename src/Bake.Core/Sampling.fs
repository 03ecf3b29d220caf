namespace Bake.Core

open System

/// <summary>A small, fast, seedable random number generator (SplitMix64) whose sequence is fixed by this code,
/// not by the .NET version, so sampled batches and augmentations are reproducible everywhere.</summary>
/// <remarks>Not thread-safe: give each thread or task its own instance, derived with
/// <see cref="M:Bake.Core.SeededRandom.Derive(System.Int64[])"/> from the values that identify its work.</remarks>
[<Sealed>]
type SeededRandom(seed: uint64) =
    let mutable state = seed

    static let mix (z: uint64) =
        let z = (z ^^^ (z >>> 30)) * 0xBF58476D1CE4E5B9UL
        let z = (z ^^^ (z >>> 27)) * 0x94D049BB133111EBUL
        z ^^^ (z >>> 31)

    /// <summary>A generator whose stream depends on every value of <paramref name="keys"/> and their order,
    /// e.g. <c>Derive [| seed; epoch; batch |]</c>.</summary>
    static member Derive([<ParamArray>] keys: int64[]) : SeededRandom =
        let mutable h = 0x6A09E667F3BCC909UL
        for key in keys do
            h <- mix (h + 0x9E3779B97F4A7C15UL + uint64 key)
        SeededRandom h

    /// <summary>The next 64 random bits.</summary>
    member _.NextUInt64() : uint64 =
        state <- state + 0x9E3779B97F4A7C15UL
        mix state

    /// <summary>A uniform integer in [0, <paramref name="bound"/>), without modulo bias.</summary>
    member this.NextInt(bound: int) : int =
        if bound <= 0 then invalidArg "bound" $"bound must be > 0, got {bound}"
        let b = uint64 bound
        // Rejection sampling: draw until the value falls below the largest multiple of the bound.
        let limit = UInt64.MaxValue - (UInt64.MaxValue % b)
        let mutable x = this.NextUInt64()
        while x >= limit do
            x <- this.NextUInt64()
        int (x % b)

    /// <summary>A uniform double in [0, 1) with 53 random bits.</summary>
    member this.NextDouble() : float = float (this.NextUInt64() >>> 11) * (1.0 / 9007199254740992.0)

    /// <summary>A uniform double in [<paramref name="lo"/>, <paramref name="hi"/>).</summary>
    member this.Uniform(lo: float, hi: float) : float = lo + (hi - lo) * this.NextDouble()

    /// <summary>A normal draw with the given mean and standard deviation (Box–Muller).</summary>
    member this.Normal(mean: float, std: float) : float =
        let u1 = 1.0 - this.NextDouble() // in (0, 1], so the log is finite
        let u2 = this.NextDouble()
        mean + std * sqrt (-2.0 * log u1) * cos (2.0 * Math.PI * u2)

    /// <summary>A Gamma(shape, 1) draw (Marsaglia–Tsang; shape &lt; 1 by the boost u^(1/shape)).</summary>
    member this.Gamma(shape: float) : float =
        if not (shape > 0.0) then invalidArg "shape" $"shape must be > 0, got {shape}"
        let boosted = if shape < 1.0 then shape + 1.0 else shape
        let d = boosted - 1.0 / 3.0
        let c = 1.0 / sqrt (9.0 * d)
        let mutable result = nan
        while Double.IsNaN result do
            let x = this.Normal(0.0, 1.0)
            let v = 1.0 + c * x
            if v > 0.0 then
                let v = v * v * v
                let u = this.NextDouble()
                if u < 1.0 - 0.0331 * x * x * x * x || log u < 0.5 * x * x + d * (1.0 - v + log v) then
                    result <- d * v
        if shape < 1.0 then result * (1.0 - this.NextDouble()) ** (1.0 / shape) else result

    /// <summary>A Beta(a, b) draw, from two Gamma draws.</summary>
    member this.Beta(a: float, b: float) : float =
        let x = this.Gamma a
        let y = this.Gamma b
        x / (x + y)

    /// <summary>Shuffles <paramref name="items"/> in place (Fisher–Yates).</summary>
    member this.Shuffle(items: 'T[]) : unit =
        for i in items.Length - 1 .. -1 .. 1 do
            let j = this.NextInt(i + 1)
            let t = items[i]
            items[i] <- items[j]
            items[j] <- t

/// <summary>Which images form each mini-batch: the per-class BAKE sampler (docs/official-code.md), plain shuffled
/// batches for the baselines, and CS-KD's pair batches (docs/official-code.md). Pure index arithmetic: every function
/// returns the batches of one epoch as arrays of dataset indices and is deterministic per (seed, epoch).</summary>
[<RequireQualifiedAccess>]
module Sampling =

    // Stream tags keep the three samplers' random streams apart for the same (seed, epoch).
    let private bakeStream = 1L
    let private shuffledStream = 2L
    let private pairStream = 3L
    let private lastHalfStream = 4L

    let private requireLabels (labels: int[]) =
        if isNull labels then nullArg "labels"
        match labels |> Array.tryFindIndex (fun label -> label < 0) with
        | Some i -> invalidArg "labels" $"labels must be class indices >= 0, got {labels[i]} at index {i}"
        | None -> ()

    /// <summary>The indices of each class: <c>result[c]</c> lists, in increasing order, the images of class c.
    /// Its length is max(label) + 1; classes without images have empty lists.</summary>
    [<CompiledName("IndicesByClass")>]
    let indicesByClass (labels: int[]) : int[][] =
        requireLabels labels
        let classes = if labels.Length = 0 then 0 else Array.max labels + 1
        let lists = Array.init classes (fun _ -> ResizeArray<int>())
        labels |> Array.iteri (fun i label -> lists[label].Add i)
        lists |> Array.map (fun list -> list.ToArray())

    /// <summary>The classes that hold exactly one image. <see cref="M:Bake.Core.Sampling.BakeBatches"/> cannot find
    /// another image of such a class, so it repeats the anchor as its own positives; callers should warn once.</summary>
    [<CompiledName("SingletonClasses")>]
    let singletonClasses (labels: int[]) : int[] =
        indicesByClass labels
        |> Array.indexed
        |> Array.choose (fun (label, members) -> if members.Length = 1 then Some label else None)

    /// <summary>The number of batches of one epoch in which every one of <paramref name="count"/> images appears once
    /// as an anchor, <paramref name="anchors"/> at a time: ceil(count / anchors).</summary>
    [<CompiledName("IterationsPerEpoch")>]
    let iterationsPerEpoch (count: int, anchors: int) : int =
        if count < 0 then invalidArg "count" $"count must be >= 0, got {count}"
        if anchors < 1 then invalidArg "anchors" $"anchors must be >= 1, got {anchors}"
        (count + anchors - 1) / anchors

    /// <summary>A seeded permutation of 0 .. count − 1.</summary>
    let private permutation (random: SeededRandom) (count: int) =
        let order = Array.init count id
        random.Shuffle order
        order

    /// <summary>The anchors of each batch: consecutive slices of a permutation, the last one possibly partial.</summary>
    let private anchorSlices (order: int[]) (size: int) : int[][] = Array.chunkBySize size order

    /// <summary>M positives for <paramref name="anchor"/>, drawn from the other members of its class
    /// (<paramref name="members"/>, sorted, holding the anchor): without replacement when the class has at least M
    /// other images, with replacement otherwise. Costs O(M) for small M, never O(class size) per anchor.</summary>
    let private drawPositives (random: SeededRandom) (members: int[]) (anchor: int) (count: int) : int[] =
        let others = members.Length - 1
        let position = Array.BinarySearch(members, anchor)
        // The j-th other member, skipping the anchor's own position.
        let other j = members[if j >= position then j + 1 else j]
        if others = 0 then
            // Documented fallback for a single-image class: the anchor stands in as its own positive.
            Array.create count anchor
        elif others < count then
            Array.init count (fun _ -> other (random.NextInt others))
        elif 2 * count <= others then
            // Few draws from many: rejection of repeats is cheap.
            let seen = Collections.Generic.HashSet<int>()
            let drawn = ResizeArray<int>(count)
            while drawn.Count < count do
                let j = random.NextInt others
                if seen.Add j then drawn.Add(other j)
            drawn.ToArray()
        else
            // Partial Fisher–Yates: the first `count` entries of a shuffled copy.
            let pool = Array.init others other
            for i in 0 .. count - 1 do
                let j = i + random.NextInt(pool.Length - i)
                let t = pool[i]
                pool[i] <- pool[j]
                pool[j] <- t
            Array.sub pool 0 count

    /// <summary>The BAKE batches of one epoch (docs/official-code.md): a seeded shuffle of all indices is cut into
    /// ceil(n / N̂) groups of N̂ anchors (the last may be partial); each anchor is followed by M other images of its
    /// class, drawn without replacement when the class has at least M other images and with replacement otherwise.
    /// A batch is ordered [anchors…, positives of anchor 1…, positives of anchor 2…] and holds N̂·(M+1) images.</summary>
    /// <remarks>Single-image classes (see <see cref="M:Bake.Core.Sampling.SingletonClasses(System.Int32[])"/>):
    /// the anchor is repeated as its own M positives, so the batch keeps its shape instead of crashing (the official
    /// small-scale sampler raises there). Positives may repeat other anchors or each other's positives.</remarks>
    /// <param name="labels">The class index (≥ 0) of every image of the split.</param>
    /// <param name="anchors">N̂ ≥ 1, anchors per batch.</param>
    /// <param name="positives">M ≥ 0, positives per anchor; 0 gives plain shuffled batches of N̂ images.</param>
    /// <param name="seed">The run's seed.</param>
    /// <param name="epoch">The epoch; each epoch has its own shuffle and positives.</param>
    /// <returns>The batches, as arrays of indices into <paramref name="labels"/>.</returns>
    [<CompiledName("BakeBatches")>]
    let bakeBatches (labels: int[], anchors: int, positives: int, seed: int, epoch: int) : int[][] =
        let byClass = indicesByClass labels
        if anchors < 1 then invalidArg "anchors" $"anchors (N̂) must be >= 1, got {anchors}"
        if positives < 0 then invalidArg "positives" $"positives (M) must be >= 0, got {positives}"
        let random = SeededRandom.Derive(int64 seed, int64 epoch, bakeStream)
        let order = permutation random labels.Length
        anchorSlices order anchors
        |> Array.map (fun group ->
            let positivesOf = group |> Array.map (fun anchor -> drawPositives random (byClass[labels[anchor]]) anchor positives)
            Array.append group (Array.concat positivesOf))

    /// <summary>Plain shuffled batches for the baselines.</summary>
    /// <param name="count">The number of images n.</param>
    /// <param name="batchSize">Images per batch B ≥ 1.</param>
    /// <param name="seed">The run's seed.</param>
    /// <param name="epoch">The epoch.</param>
    /// <param name="iterations">None: one pass over a seeded shuffle, ceil(n / B) batches, the last may be partial.
    /// Some k: exactly k batches of B images each, cut from consecutive seeded reshuffles (every image is used once
    /// before any is used again), so a baseline can run as many steps per epoch as BAKE (the
    /// equal-steps comparison, docs/official-code.md).</param>
    [<CompiledName("ShuffledBatches")>]
    let shuffledBatches (count: int, batchSize: int, seed: int, epoch: int, iterations: int option) : int[][] =
        if count < 0 then invalidArg "count" $"count must be >= 0, got {count}"
        if batchSize < 1 then invalidArg "batchSize" $"batch size must be >= 1, got {batchSize}"
        let random = SeededRandom.Derive(int64 seed, int64 epoch, shuffledStream)
        match iterations with
        | None -> anchorSlices (permutation random count) batchSize
        | Some k when k < 0 -> invalidArg "iterations" $"iterations must be >= 0, got {k}"
        | Some _ when count = 0 -> invalidArg "count" "a fixed number of iterations needs at least one image"
        | Some k ->
            let stream = Collections.Generic.Queue<int>()
            Array.init k (fun _ ->
                Array.init batchSize (fun _ ->
                    if stream.Count = 0 then permutation random count |> Array.iter stream.Enqueue
                    stream.Dequeue()))

    /// <summary>CS-KD's pair batches (docs/official-code.md, <c>PairBatchSampler</c>): a seeded shuffle cut into
    /// ceil(n / B) groups of B anchors (the last may be partial), then for each anchor one uniformly drawn image of
    /// its class, which may be the anchor itself. A batch is [anchors…, partners…], 2B indices.</summary>
    [<CompiledName("PairBatches")>]
    let pairBatches (labels: int[], batchSize: int, seed: int, epoch: int) : int[][] =
        let byClass = indicesByClass labels
        if batchSize < 1 then invalidArg "batchSize" $"batch size must be >= 1, got {batchSize}"
        let random = SeededRandom.Derive(int64 seed, int64 epoch, pairStream)
        anchorSlices (permutation random labels.Length) batchSize
        |> Array.map (fun group ->
            let partners =
                group
                |> Array.map (fun anchor ->
                    let members = byClass[labels[anchor]]
                    members[random.NextInt members.Length])
            Array.append group partners)

    /// <summary>DLB's batches (Shen et al. 2022): each epoch's seeded shuffle is cut into ceil(n / h) halves of h new
    /// images (the last may be partial), and batch k is [half k − 1…, half k…], so that the first part of every batch
    /// repeats the new images of the batch before it (loaded again, so freshly augmented). The first batch of an epoch
    /// repeats the last half of the previous epoch, whose shuffle is recomputed here, so every epoch's plan is a pure
    /// function of (seed, epoch) and a resumed run draws the same batches; the run's very first batch (epoch 0) has
    /// no repeated part.</summary>
    /// <param name="count">The number of images n.</param>
    /// <param name="half">h ≥ 1, new images per batch (N / 2).</param>
    /// <param name="seed">The run's seed.</param>
    /// <param name="epoch">The epoch.</param>
    [<CompiledName("LastHalfBatches")>]
    let lastHalfBatches (count: int, half: int, seed: int, epoch: int) : int[][] =
        if count < 0 then invalidArg "count" $"count must be >= 0, got {count}"
        if half < 1 then invalidArg "half" $"half must be >= 1, got {half}"
        let halves e = anchorSlices (permutation (SeededRandom.Derive(int64 seed, int64 e, lastHalfStream)) count) half
        let current = halves epoch
        let carried = if epoch = 0 then [||] else Array.tryLast (halves (epoch - 1)) |> Option.defaultValue [||]
        current |> Array.mapi (fun k fresh -> Array.append (if k = 0 then carried else current[k - 1]) fresh)
