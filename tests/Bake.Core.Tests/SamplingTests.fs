module Bake.Core.Tests.SamplingTests

open Expecto
open FsCheck
open FsCheck.FSharp
open Bake.Core
open Bake.Core.Tests.TestUtil

let config = { FsCheckConfig.defaultConfig with maxTest = 200 }

/// A generated sampling problem: labels of n images over K classes (some classes may be small or single-image),
/// N̂ anchors, M positives, seed and epoch.
type Problem =
    { Labels: int[]
      Anchors: int
      Positives: int
      Seed: int
      Epoch: int }

    override this.ToString() =
        let labels = this.Labels |> Array.map string |> String.concat ","
        $"Problem(n={this.Labels.Length}, N̂={this.Anchors}, M={this.Positives}, seed={this.Seed}, epoch={this.Epoch}, labels={labels})"

let problems =
    gen {
        let! n = Gen.choose (1, 60)
        let! classes = Gen.choose (1, 8)
        let! labels = Gen.arrayOfLength n (Gen.choose (0, classes - 1))
        let! anchors = Gen.choose (1, 12)
        let! positives = Gen.choose (0, 5)
        let! seed = Gen.choose (-1000, 1000)
        let! epoch = Gen.choose (0, 300)
        return { Labels = labels; Anchors = anchors; Positives = positives; Seed = seed; Epoch = epoch }
    }
    |> Arb.fromGen

let property name (check: Problem -> unit) =
    testPropertyWithConfig config name (Prop.forAll problems check)

let batchesOf (p: Problem) = Sampling.bakeBatches (p.Labels, p.Anchors, p.Positives, p.Seed, p.Epoch)

/// The anchors of a batch of N̂'·(M+1) images.
let split (p: Problem) (batch: int[]) =
    let groups = batch.Length / (p.Positives + 1)
    Array.sub batch 0 groups, Array.init groups (fun g -> Array.sub batch (groups + g * p.Positives) p.Positives)

let classSize (labels: int[]) label = labels |> Array.filter ((=) label) |> Array.length

[<Tests>]
let tests =
    testList "Sampling" [
        testList "bakeBatches" [
            property "ceil(n/N̂) batches of N̂·(M+1) images, the last possibly partial" (fun p ->
                let batches = batchesOf p
                let n = p.Labels.Length
                Expect.equal batches.Length ((n + p.Anchors - 1) / p.Anchors) "ceil(n/N̂) batches"
                batches
                |> Array.iteri (fun i batch ->
                    let anchorsHere = if i < batches.Length - 1 then p.Anchors else n - p.Anchors * (batches.Length - 1)
                    Expect.equal batch.Length (anchorsHere * (p.Positives + 1)) $"batch {i} size"))

            property "every image is an anchor exactly once per epoch" (fun p ->
                let anchors = batchesOf p |> Array.collect (fun batch -> fst (split p batch))
                Expect.sequenceEqual (Array.sort anchors) (Array.init p.Labels.Length id) "anchors = a permutation of all indices")

            property "each anchor is followed by M positives of its own class" (fun p ->
                for batch in batchesOf p do
                    let anchors, positives = split p batch
                    Array.iter2
                        (fun anchor (group: int[]) ->
                            for positive in group do
                                Expect.equal p.Labels[positive] p.Labels[anchor] $"positive {positive} of anchor {anchor}")
                        anchors positives)

            property "no anchor is its own positive when its class has another image" (fun p ->
                for batch in batchesOf p do
                    let anchors, positives = split p batch
                    Array.iter2
                        (fun anchor (group: int[]) ->
                            if classSize p.Labels p.Labels[anchor] > 1 then
                                Expect.isFalse (Array.contains anchor group) $"anchor {anchor} among its positives")
                        anchors positives)

            property "positives are distinct when the class has at least M other images" (fun p ->
                for batch in batchesOf p do
                    let anchors, positives = split p batch
                    Array.iter2
                        (fun anchor (group: int[]) ->
                            if classSize p.Labels p.Labels[anchor] - 1 >= p.Positives then
                                Expect.equal (Array.distinct group).Length group.Length $"distinct positives of {anchor}")
                        anchors positives)

            property "a single-image class repeats its anchor as its positives (documented fallback)" (fun p ->
                let singletons = Sampling.singletonClasses p.Labels |> Set.ofArray
                for batch in batchesOf p do
                    let anchors, positives = split p batch
                    Array.iter2
                        (fun anchor (group: int[]) ->
                            if singletons.Contains p.Labels[anchor] then
                                Expect.isTrue (group |> Array.forall ((=) anchor)) "anchor repeated")
                        anchors positives)

            property "deterministic per (seed, epoch); another epoch reshuffles" (fun p ->
                Expect.equal (batchesOf p) (batchesOf p) "same (seed, epoch) → same batches"
                if p.Labels.Length >= 12 then
                    let next = batchesOf { p with Epoch = p.Epoch + 1 }
                    let anchorsOf batches = batches |> Array.collect (fun b -> fst (split p b))
                    Expect.notEqual (anchorsOf next) (anchorsOf (batchesOf p)) "a new epoch, a new shuffle")

            test "M = 0 gives plain batches of N̂ anchors" {
                let labels = Array.init 10 (fun i -> i % 3)
                let batches = Sampling.bakeBatches (labels, 4, 0, 1, 0)
                Expect.sequenceEqual (batches |> Array.map Array.length) [| 4; 4; 2 |] "sizes"
            }

            test "CIFAR-100 shape: 50,000 images, N̂ = 32, M = 3 gives 1563 batches, the last of 16 anchors / 64 images" {
                let labels = Array.init 50000 (fun i -> i % 100)
                let batches = Sampling.bakeBatches (labels, 32, 3, 0, 0)
                Expect.equal batches.Length 1563 "ceil(50000/32)"
                Expect.equal batches[0].Length 128 "N = N̂(M+1)"
                Expect.equal (Array.last batches).Length 64 "16 anchors × 4"
                Expect.equal (Sampling.iterationsPerEpoch (50000, 32)) 1563 "iterationsPerEpoch"
            }

            test "singletonClasses lists the classes with exactly one image" {
                Expect.sequenceEqual (Sampling.singletonClasses [| 0; 1; 1; 3; 2; 2 |]) [| 0; 3 |] "classes 0 and 3"
            }

            test "invalid arguments are rejected with their value" {
                let e = throwsWith<System.ArgumentException> (fun () -> Sampling.bakeBatches ([| 0; -2 |], 1, 1, 0, 0) |> ignore)
                Expect.stringContains e.Message "-2" "names the label"
                let e = throwsWith<System.ArgumentException> (fun () -> Sampling.bakeBatches ([| 0 |], 0, 1, 0, 0) |> ignore)
                Expect.stringContains e.Message "got 0" "names N̂"
            }
        ]

        testList "shuffledBatches" [
            testPropertyWithConfig config "one pass: a permutation cut into ceil(n/B) batches" (fun (NonNegativeInt n) (PositiveInt b) (seed: int) (epoch: int) ->
                let batches = Sampling.shuffledBatches (n, b, seed, epoch, None)
                Expect.equal batches.Length ((n + b - 1) / b) "ceil(n/B)"
                Expect.sequenceEqual (Array.concat batches |> Array.sort) (Array.init n id) "every index once"
                Expect.equal (Sampling.shuffledBatches (n, b, seed, epoch, None)) batches "deterministic")

            testPropertyWithConfig config "equal steps: exactly k full batches, no index reused before all are used" (fun (PositiveInt n) (PositiveInt b) (NonNegativeInt k) (seed: int) ->
                let n, b, k = n % 50 + 1, b % 20 + 1, k % 30
                let batches = Sampling.shuffledBatches (n, b, seed, 3, Some k)
                Expect.equal batches.Length k "k batches"
                Expect.isTrue (batches |> Array.forall (fun batch -> batch.Length = b)) "all full"
                let stream = Array.concat batches
                for pass in Array.chunkBySize n stream do
                    Expect.equal (Array.distinct pass).Length pass.Length "each pass is part of one permutation"
                Expect.equal (Sampling.shuffledBatches (n, b, seed, 3, Some k)) batches "deterministic")
        ]

        testList "lastHalfBatches" [
            testPropertyWithConfig config "each epoch's new halves are a permutation; every batch begins with the batch before's new half"
                (fun (PositiveInt n) (PositiveInt h) (seed: int) (NonNegativeInt epoch) ->
                    let n, h, epoch = n % 60 + 1, h % 16 + 1, epoch % 4
                    let batches = Sampling.lastHalfBatches (n, h, seed, epoch)
                    let previous = if epoch = 0 then [||] else Sampling.lastHalfBatches (n, h, seed, epoch - 1)
                    Expect.equal batches.Length ((n + h - 1) / h) "ceil(n/h) batches"
                    // Reconstruct: the new images of batch k are its last |half k| indices, the repeated ones the rest.
                    let halfLengths = Array.init batches.Length (fun k -> if k = batches.Length - 1 then n - h * k else h)
                    let news = batches |> Array.mapi (fun k batch -> Array.sub batch (batch.Length - halfLengths[k]) halfLengths[k])
                    Expect.sequenceEqual (Array.concat news |> Array.sort) (Array.init n id) "every image new once per epoch"
                    for k in 1 .. batches.Length - 1 do
                        Expect.sequenceEqual (Array.sub batches[k] 0 (batches[k].Length - halfLengths[k])) news[k - 1] "repeats the last new half"
                    let carried = Array.sub batches[0] 0 (batches[0].Length - halfLengths[0])
                    if epoch = 0 then Expect.isEmpty carried "the run's first batch repeats nothing"
                    else
                        let lastNew = n - h * (previous.Length - 1)
                        let last = Array.last previous
                        Expect.sequenceEqual carried (Array.sub last (last.Length - lastNew) lastNew) "epoch boundary: the previous epoch's last new half"
                    Expect.equal (Sampling.lastHalfBatches (n, h, seed, epoch)) batches "deterministic")
        ]

        testList "pairBatches" [
            property "B anchors (every image once per epoch) then one same-class partner each" (fun p ->
                let batches = Sampling.pairBatches (p.Labels, p.Anchors, p.Seed, p.Epoch)
                Expect.equal batches.Length ((p.Labels.Length + p.Anchors - 1) / p.Anchors) "ceil(n/B)"
                let anchors =
                    batches
                    |> Array.collect (fun batch ->
                        let half = batch.Length / 2
                        Expect.equal batch.Length (2 * half) "2B indices"
                        for i in 0 .. half - 1 do
                            Expect.equal p.Labels[batch[half + i]] p.Labels[batch[i]] "partner of the same class"
                        Array.sub batch 0 half)
                Expect.sequenceEqual (Array.sort anchors) (Array.init p.Labels.Length id) "every image once as anchor"
                Expect.equal (Sampling.pairBatches (p.Labels, p.Anchors, p.Seed, p.Epoch)) batches "deterministic")
        ]

        testList "SeededRandom" [
            test "NextInt is uniform enough and in range" {
                let random = SeededRandom.Derive(7L)
                let counts = Array.zeroCreate 10
                for _ in 1 .. 100000 do
                    let x = random.NextInt 10
                    counts[x] <- counts[x] + 1
                for c in counts do
                    Expect.isTrue (abs (c - 10000) < 500) $"bucket count {c} within 5 percent of 10000"
            }

            test "Beta(1,1) has mean 1/2 and Beta(2,5) mean 2/7" {
                let random = SeededRandom.Derive(11L)
                let mean a b = Array.init 40000 (fun _ -> random.Beta(a, b)) |> Array.average
                Expect.isTrue (abs (mean 1.0 1.0 - 0.5) < 0.01) "Beta(1,1)"
                Expect.isTrue (abs (mean 2.0 5.0 - 2.0 / 7.0) < 0.01) "Beta(2,5)"
                Expect.isTrue (abs (mean 0.4 0.4 - 0.5) < 0.01) "Beta(0.4,0.4) (shape < 1 path)"
            }

            test "Derive depends on every key and its order" {
                let first (r: SeededRandom) = r.NextUInt64()
                Expect.notEqual (first (SeededRandom.Derive(1L, 2L))) (first (SeededRandom.Derive(2L, 1L))) "order"
                Expect.equal (first (SeededRandom.Derive(1L, 2L))) (first (SeededRandom.Derive(1L, 2L))) "deterministic"
            }
        ]
    ]
